"""Apply a plan through the API: storages, then bridges (one reload), then guests.

- One failing guest never stops the others; each outcome is recorded.
- Concurrency is bounded per node, and one full clone per storage at a time
  (parallel clones are what makes Proxmox answer "can't lock file").
- Config writes carry the ``digest`` read with the config, so a concurrent
  edit is refused instead of overwritten.
- A guest locked by another operation is waited for with a bound; nixmox
  never removes someone else's lock.
- Disruptive changes run only where the guest's reboot policy allows them;
  otherwise needs-reboot changes stay pending and everything held is reported.
- ``--dry-run`` prints the API calls it would make and makes none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.client import Proxmox, Unreachable
from nixmox.adapters.proxmox.cluster import current_row, guest_path, guest_status, read_guests
from nixmox.adapters.proxmox.fanout import NodeLimits
from nixmox.adapters.proxmox.tasks import wait
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.inventory.model import Guest, Inventory
from nixmox.provision.actual import read_guest
from nixmox.provision.desired import DesiredGuest, creation, desired_guest
from nixmox.provision.diff import ActualGuest, Change, GuestPlan, ObjectPlan, Plan, diff_guest

log = logging.getLogger("nixmox.apply")

#: Config calls per node at once, and full clones per storage at once.
PER_NODE = 2
CLONES_PER_STORAGE = 1


@dataclass
class ApplyOutcome:
    """What apply did for one object."""

    kind: str
    name: str
    result: str = "ok"  # ok | failed | held | skipped
    done: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    error: str | None = None


class ApplyError(NixmoxError):
    """Something in apply failed for one object (the others go on)."""


class Applier:
    """Makes one plan so. ``passthrough_blockers(guest)`` lists FAILing passthrough checks."""

    def __init__(
        self,
        api: Proxmox,
        inv: Inventory,
        *,
        dry_run: bool = False,
        lock_wait: float = 120.0,
        network_confirm: float = 30.0,
        passthrough_blockers: Callable[[Guest], list[str]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        progress: Progress = SILENT,
    ) -> None:
        self.api = api
        self.inv = inv
        self.dry_run = dry_run
        self.lock_wait = lock_wait
        self.network_confirm = network_confirm
        self.blockers = passthrough_blockers or (lambda guest: [])
        self.clock = clock
        self.calls: list[str] = []  # what --dry-run would send (and, for real, what was sent)
        self.network_diffs: dict[str, str] = {}
        self._calls_lock = threading.Lock()
        self.node_limits = NodeLimits(PER_NODE)
        self.clone_limits = NodeLimits(CLONES_PER_STORAGE)
        self.progress = progress
        # The object this thread is applying: its task waits are told under that name.
        self._current = threading.local()

    # -- progress ----------------------------------------------------------------------
    def _begin(self, key: str, text: str) -> None:
        self._current.key = key
        self.progress.start(key, text)

    def _finish(self, key: str, outcome: ApplyOutcome) -> None:
        self._current.key = None
        said = "; ".join([*outcome.done, *([outcome.error] if outcome.error else [])])
        self.progress.end(key, f"{key}: {outcome.result}" + (f" ({said})" if said else ""))

    def _news(self, news: str | None = None) -> None:
        key = getattr(self._current, "key", None)
        if key is not None:
            self.progress.update(key, news)

    # -- writes ------------------------------------------------------------------
    def write(
        self,
        method: str,
        path: str,
        what: str,
        params: dict[str, Any] | None = None,
        done: Callable[[], bool] | None = None,
    ) -> Any:
        params = params or {}
        shown = " ".join(f"{k}={v}" for k, v in params.items() if v is not None)
        with self._calls_lock:
            self.calls.append(f"{method} {path}" + (f" {shown}" if shown else ""))
        if self.dry_run:
            return None
        call = {"POST": self.api.post, "PUT": self.api.put, "DELETE": self.api.delete}[method]
        result = call(path, done=done, **params)
        if isinstance(result, str) and result.startswith("UPID:"):
            self._news(f"waiting for Proxmox to {what}")
            wait(self.api, result, what=what, clock=self.clock, watch=self._news)
        return result

    # -- the whole run ----------------------------------------------------------------
    def apply(self, plan: Plan) -> list[ApplyOutcome]:
        outcomes = [self._storage(s) for s in plan.storages if s.action != "none"]
        outcomes += [self._backup_job(j) for j in plan.jobs if j.action != "none"]
        by_node: dict[str, list[ObjectPlan]] = {}
        for bridge in plan.bridges:
            if bridge.action != "none":
                by_node.setdefault(bridge.node or "", []).append(bridge)
        for node, bridges in sorted(by_node.items()):
            outcomes += self._bridges(node, bridges)
        todo = [g for g in plan.guests if g.action != "none"]
        guests = {g.name: g for g in self.inv.guests}
        results: dict[str, ApplyOutcome] = {}

        def one(gp: GuestPlan) -> None:
            outcome = ApplyOutcome("guest", gp.name)
            if interrupt.stopping():
                # No guest is started after a stop request; the ones in flight finish.
                outcome.result = "skipped"
                outcome.error = f"not started: interrupted by {interrupt.signal_name()}"
                results[gp.name] = outcome
                return
            try:
                with self.node_limits(gp.node):
                    self._begin(gp.name, f"{_verb(gp.action)} {gp.name}")
                    self._guest(guests[gp.name], gp, outcome)
            except interrupt.Interrupted as exc:
                # Stopped before its next write: what is in `done` was made, the rest was not.
                outcome.result, outcome.error = "skipped", str(exc)
            except NixmoxError as exc:
                outcome.result, outcome.error = "failed", str(exc)
            self._finish(gp.name, outcome)
            results[gp.name] = outcome

        if todo:
            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                list(pool.map(one, todo))
        return outcomes + [results[g.name] for g in todo]

    # -- storages ------------------------------------------------------------------------
    def _storage(self, sp: ObjectPlan) -> ApplyOutcome:
        outcome = ApplyOutcome("storage", sp.name)
        self._begin(sp.name, f"{_verb(sp.action)} storage {sp.name}")
        try:
            if sp.action == "error":
                raise ApplyError(sp.error or "cannot plan")
            if sp.action == "create":
                self._post_created(
                    outcome, "/storage", f"storage {sp.name}", {"storage": sp.name, **sp.options}
                )
            else:
                live = {c.key: c.new for c in sp.changes if c.label == "live"}
                outcome.held += [f"{c.key}: {c.note}" for c in sp.changes if c.label != "live"]
                if live:
                    self.write("PUT", f"/storage/{sp.name}", f"update storage {sp.name}", live)
                    outcome.done += [f"{k}={v}" for k, v in live.items()]
                if outcome.held:
                    outcome.result = "held"
        except NixmoxError as exc:
            outcome.result, outcome.error = "failed", str(exc)
        self._finish(sp.name, outcome)
        return outcome

    def _post_created(
        self, outcome: ApplyOutcome, path: str, what: str, params: dict[str, Any]
    ) -> None:
        self.write("POST", path, f"create {what}", params)
        outcome.done.append("created")

    def _backup_job(self, jp: ObjectPlan) -> ApplyOutcome:
        """The /cluster/backup job Proxmox runs (scheduler = "proxmox")."""
        outcome = ApplyOutcome("backup job", jp.name)
        self._begin(jp.name, f"{_verb(jp.action)} backup job {jp.name}")
        try:
            if jp.action == "create":
                what = f"backup job {jp.name}"
                self._post_created(outcome, "/cluster/backup", what, {"id": jp.name, **jp.options})
            else:
                changed = {c.key: c.new for c in jp.changes}
                self.write(
                    "PUT", f"/cluster/backup/{jp.name}", f"update backup job {jp.name}", changed
                )
                outcome.done += list(changed)
        except NixmoxError as exc:
            outcome.result, outcome.error = "failed", str(exc)
        self._finish(jp.name, outcome)
        return outcome

    # -- bridges: staged, one reload, confirmed or reverted ------------------------------
    def _bridges(self, node: str, bridges: list[ObjectPlan]) -> list[ApplyOutcome]:
        outcomes = [ApplyOutcome("bridge", f"{b.name} on {node}") for b in bridges]
        key = f"network of {node}"
        names = ", ".join(b.name for b in bridges)
        self._begin(key, f"changing the network of {node} ({names})")
        try:
            for bridge in bridges:
                if bridge.action == "error":
                    raise ApplyError(f"{bridge.name}: {bridge.error}")
            before = (
                {}
                if self.dry_run
                else {i["iface"]: i for i in self.api.get(f"/nodes/{node}/network") or []}
            )
            for bridge, outcome in zip(bridges, outcomes, strict=True):
                params = {k: v for k, v in bridge.options.items() if v != ""}
                if bridge.action == "create":
                    self.write(
                        "POST",
                        f"/nodes/{node}/network",
                        f"stage {bridge.name}",
                        {"iface": bridge.name, **params},
                    )
                else:
                    self.write(
                        "PUT",
                        f"/nodes/{node}/network/{bridge.name}",
                        f"stage {bridge.name}",
                        params,
                    )
                outcome.done.append("staged")
            if not self.dry_run:
                staged = self.api.request("GET", f"/nodes/{node}/network", whole=True)
                diff = staged.get("changes") if isinstance(staged, dict) else None
                # What /etc/network/interfaces.new will change, before the reload.
                self.network_diffs[node] = str(diff or "(Proxmox showed no diff)")
            self.write("PUT", f"/nodes/{node}/network", f"reload the network of {node}")
            self._news(f"reloaded; waiting up to {self.network_confirm:g} s for the API to answer")
            if not self.dry_run and not self._api_answers(node):
                self._revert_network(node, bridges, before)
                raise ApplyError(
                    f"the API did not answer within {self.network_confirm:g} s after the network "
                    f"reload on {node}; the bridge changes were reverted"
                )
            for outcome in outcomes:
                outcome.done.append("applied (one reload)")
        except NixmoxError as exc:
            for outcome in outcomes:
                outcome.result, outcome.error = "failed", str(exc)
        self._finish(key, outcomes[0])
        return outcomes

    def _api_answers(self, node: str) -> bool:
        deadline = self.clock.monotonic() + self.network_confirm
        while True:
            try:
                self.api.request("GET", f"/nodes/{node}/network")
                return True
            except NixmoxError:
                if self.clock.monotonic() >= deadline:
                    return False
                self._news()
                self.clock.sleep(min(1.0, max(self.network_confirm / 10, 0.05)))

    def _revert_network(self, node: str, bridges: list[ObjectPlan], before: dict[str, Any]) -> None:
        """Put the interfaces back as they were and reload once more."""
        for bridge in bridges:
            old = before.get(bridge.name)
            try:
                if old is None:
                    self.api.delete(f"/nodes/{node}/network/{bridge.name}", done=lambda: False)
                else:
                    keep = {k: v for k, v in old.items() if k in bridge.options}
                    self.api.put(f"/nodes/{node}/network/{bridge.name}", **keep)
                upid = self.api.put(f"/nodes/{node}/network", done=lambda: False)
                if isinstance(upid, str):
                    wait(self.api, upid, what=f"revert the network of {node}", clock=self.clock)
            except (NixmoxError, Unreachable) as exc:
                log.error("could not revert %s on %s: %s", bridge.name, node, exc)

    # -- guests ---------------------------------------------------------------------
    def _guest(self, guest: Guest, gp: GuestPlan, outcome: ApplyOutcome) -> None:
        if gp.action == "error":
            raise ApplyError(gp.error or "cannot plan")
        want = desired_guest(guest)
        if gp.action == "create":
            self._create(want, outcome)
            if self.dry_run:
                return
            # A clone brings the template's settings: converge them now.
            have = self._read(guest)
            gp = diff_guest(want, have)
            if gp.action == "none":
                return
            self._update(want, gp, outcome, have)
            return
        self._update(want, gp, outcome)

    def _read(self, guest: Guest) -> ActualGuest:
        return read_guest(
            self.api, current_row(self.api, guest.node, guest.pve_type, guest.vmid), digest=True
        )

    def _exists(self, guest: Guest) -> Callable[[], bool]:
        def check() -> bool:
            try:
                guest_status(self.api, guest.node, guest.pve_type, guest.vmid)
                return True
            except NixmoxError:
                return False

        return check

    def _create(self, want: DesiredGuest, outcome: ApplyOutcome) -> None:
        guest = want.guest
        blockers = self.blockers(guest) if guest.hostpci and guest.stage != "install" else []
        if blockers:
            raise ApplyError(
                "refusing to create a passthrough VM while `nixmox doctor --only "
                f"passthrough` fails: {', '.join(blockers)}"
            )
        if want.type == "lxc":
            # What plan listed under the create, and nothing else.
            params: dict[str, Any] = {"vmid": guest.vmid, **creation(want)}
            self.write(
                "POST",
                f"/nodes/{guest.node}/lxc",
                f"create {guest.name}",
                params,
                done=self._exists(guest),
            )
            outcome.done.append("created from " + want.create["ostemplate"])
            return
        if "clone" in want.create:
            self._clone(want, outcome)
            return
        params = {"vmid": guest.vmid, **want.scalars}
        params.update({k: props.render(k, v) for k, v in want.options.items()})
        params.update({k: v.create_value(k) for k, v in want.volumes.items()})
        self.write(
            "POST",
            f"/nodes/{guest.node}/qemu",
            f"create {guest.name}",
            params,
            done=self._exists(guest),
        )
        outcome.done.append("created" + (f" (stage {guest.stage})" if guest.stage else ""))

    def _clone(self, want: DesiredGuest, outcome: ApplyOutcome) -> None:
        guest = want.guest
        source = want.create["clone"]
        rows = read_guests(self.api).values()
        match = [r for r in rows if str(r.vmid) == source or r.name == source]
        templates = [r for r in match if r.template]
        if not templates:
            raise ApplyError(f"clone source {source!r} is not a template VM on the cluster")
        src = templates[0]
        storage = next(iter(want.volumes.values())).storage if want.volumes else None
        with self.clone_limits(storage or src.node):
            clone = {
                "newid": guest.vmid,
                "name": guest.name,
                "full": 1,
                "target": guest.node,
                "storage": storage,
            }
            self.write(
                "POST",
                f"{guest_path(src.node, 'qemu', src.vmid)}/clone",
                f"clone {guest.name}",
                clone,
                done=self._exists(guest),
            )
        outcome.done.append(f"full clone of {src.vmid}")

    def _config_took(self, want: DesiredGuest, guest: Guest) -> Callable[[], bool]:
        """Re-read the guest before repeating a config write: done if nothing is left
        to change but what waits for a reboot (so a retry never applies twice)."""

        def check() -> bool:
            fresh = diff_guest(want, self._read(guest))
            return all(c.via == "none" or c.label == "replace" for c in fresh.changes)

        return check

    def _wait_unlocked(self, guest: Guest, have: ActualGuest | None = None) -> ActualGuest:
        """``have`` (a fresh read, if the caller just made one) or a re-read, once unlocked."""
        deadline = self.clock.monotonic() + self.lock_wait
        while True:
            have = have or self._read(guest)
            if not have.lock:
                return have
            interrupt.raise_if_stopping(
                f"gave up waiting for {guest.name}'s lock ({have.lock}); nothing more written"
            )
            if self.clock.monotonic() >= deadline:
                raise ApplyError(
                    f"locked ({have.lock}) by another operation; waited {self.lock_wait:g} s. "
                    "nixmox never removes someone else's lock: run apply again when it is done"
                )
            log.info("%s is locked (%s); waiting", guest.name, have.lock)
            self._news(f"waiting for its lock ({have.lock})")
            have = None
            self.clock.sleep(min(2.0, max(self.lock_wait / 20, 0.05)))

    def _update(
        self,
        want: DesiredGuest,
        gp: GuestPlan,
        outcome: ApplyOutcome,
        fresh: ActualGuest | None = None,
    ) -> None:
        guest = want.guest
        path = guest_path(guest.node, want.type, guest.vmid)
        have = None
        if not self.dry_run:
            have = self._wait_unlocked(guest, fresh)
            gp = diff_guest(want, have)  # fresh: the lock holder may have changed things
        allowed = guest.reboot.policy == "allowed"
        running = gp.running
        now: list[Change] = []
        for change in gp.changes:
            if change.label == "replace":
                outcome.held.append(f"{change.key}: {change.note or 'cannot change in place'}")
            elif change.label == "needs-stop" and not allowed:
                outcome.held.append(
                    f"{change.key}: needs the guest stopped; reboot policy "
                    f"{guest.reboot.policy!r} does not allow it"
                )
            else:
                now.append(change)
        stop_first = running and allowed and any(c.label == "needs-stop" for c in now)
        if stop_first:
            self.write("POST", f"{path}/status/shutdown", f"shut down {guest.name}")
        config = [c for c in now if c.via == "config"]
        if config:
            params: dict[str, Any] = {c.key: c.new for c in config if c.new is not None}
            deletions = [c.key for c in config if c.new is None]
            if deletions:
                params["delete"] = ",".join(deletions)
            if have is not None and have.digest:
                params["digest"] = have.digest
            self.write(
                "PUT",
                f"{path}/config",
                f"configure {guest.name}",
                params,
                done=self._config_took(want, guest),
            )
            outcome.done += [f"{c.key}" for c in config]
        for change in (c for c in now if c.via == "resize"):
            self.write(
                "PUT",
                f"{path}/resize",
                f"grow {change.key} of {guest.name}",
                {"disk": change.key, "size": change.new},
            )
            outcome.done.append(f"{change.key} grown to {change.new}")
        if stop_first:
            self.write("POST", f"{path}/status/start", f"start {guest.name}")
        pending = [c for c in now if c.label == "needs-reboot"]
        if running and pending and not stop_first:
            if allowed:
                blockers = self.blockers(guest) if guest.hostpci else []
                if blockers:
                    outcome.held.append(
                        "reboot refused while passthrough checks fail: " + ", ".join(blockers)
                    )
                else:
                    self.write("POST", f"{path}/status/reboot", f"reboot {guest.name}")
                    outcome.done.append("rebooted to apply " + ", ".join(c.key for c in pending))
            else:
                outcome.held.append(
                    "pending until the next reboot (reboot policy "
                    f"{guest.reboot.policy!r}): " + ", ".join(c.key for c in pending)
                )
        if outcome.held and outcome.result == "ok":
            outcome.result = "held"


def _verb(action: str) -> str:
    """What an object's progress line says apply does to it (Terraform's words)."""
    return {"create": "creating", "update": "updating"}.get(action, "applying")
