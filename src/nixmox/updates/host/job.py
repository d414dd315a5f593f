"""`nixmox update host`: the Proxmox nodes, one at a time, snapshot first.

Per node: preflight (quorum, node online, no vzdump running on it, no
migration anywhere, no guest locked by either; a declared ``root_dataset``);
``apt update`` through the API (a task) and the list of upgrades; when there
are any, a ZFS snapshot of the root dataset, then ``apt-get dist-upgrade``
run non-interactively on the node (over SSH as ``ssh_user@address``, or here
when nixmox runs on the node), keeping changed config files. Then whether a
reboot is needed (a newer kernel than the running one, ``/run/reboot-required``)
and whether the node's policy allows one now. A reboot moves the running
guests away first (see :mod:`nixmox.updates.host.rollout`), waits for the node to
come back with quorum, and moves them back before the next node's turn.

A failed upgrade stops the rollout and keeps the snapshot; nixmox never rolls
back a root file system itself: the report says how to boot into it.
``--dry-run`` reads only: it lists the upgrades PVE already knows of (its
daily ``pve-daily-update`` refreshes that list; a dry run does not start an
``apt update`` task) and says what would happen.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path, guest_status, read_guests
from nixmox.adapters.proxmox.tasks import wait
from nixmox.adapters.runner import Remote, Runner, node_remote, split_remote
from nixmox.adapters.zfs import Zfs, ZfsError
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import (
    CommandError,
    CommandNotFound,
    CommandTimeout,
    NixmoxError,
    ProxmoxError,
)
from nixmox.core.progress import SILENT, Progress
from nixmox.core.words import plural
from nixmox.inventory.model import Guest, Inventory, Node
from nixmox.updates.guest_snapshots import DEFAULT_KEEP, snapshots_to_prune, update_snapshot_name
from nixmox.updates.host.preflight import busy, cluster_nodes, problems, quorate
from nixmox.updates.host.reboot_needed import (
    PROBE,
    BootFacts,
    RebootNeed,
    is_kernel_package,
    parse_facts,
    reboot_needed,
)
from nixmox.updates.host.rollout import (
    Evacuation,
    Move,
    RunningGuest,
    Stop,
    plan_evacuation,
    rollout_order,
)
from nixmox.updates.nodes import nixmox_runs_on, this_host
from nixmox.updates.outcome import UpdateOutcome
from nixmox.updates.reboot_policy import node_reboot

log = logging.getLogger(__name__)

# Proxmox's own advice: dist-upgrade (full-upgrade), never plain upgrade. Keep
# the config files the admin changed (confold) and take the maintainer's where
# nobody did (confdef), so no prompt can ever wait for an answer.
UPGRADE = (
    "apt-get",
    "-y",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
    "dist-upgrade",
)
UPGRADE_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}


class HostUpdateError(NixmoxError):
    """A step of one node's update failed; ``recover``: the report says how to boot
    into the pre-upgrade snapshot (the upgrade failed, or the node did not come back)."""

    def __init__(self, message: str, *, recover: bool = False) -> None:
        super().__init__(message)
        self.recover = recover


@dataclass(frozen=True)
class Timing:
    """How long each step may take, in seconds."""

    upgrade: float = 3600.0  # apt-get dist-upgrade
    task: float = 1800.0  # apt update, a migration, a guest shutdown task
    shutdown: int = 180  # PVE's timeout for a guest's clean shutdown
    reboot: float = 900.0  # for the node to come back with quorum
    poll_max: float = 5.0


@dataclass(frozen=True)
class Upgrade:
    """One package the node's repositories offer a newer version of."""

    package: str
    new: str
    old: str | None = None

    def __str__(self) -> str:
        if self.old:
            return f"{self.package} {self.old} -> {self.new}"
        return f"{self.package} {self.new}"


def upgrades_of(rows: Sequence[Mapping[str, Any]]) -> list[Upgrade]:
    """``GET /nodes/{node}/apt/update`` as upgrades, by package name."""
    found = [
        Upgrade(str(r["Package"]), str(r.get("Version", "")), r.get("OldVersion") or None)
        for r in rows
        if r.get("Package")
    ]
    return sorted(found, key=lambda u: u.package)


def recovery_hint(dataset: str, snapshot: str) -> str:
    """How to get the node back to the snapshot taken before the upgrade, in words."""
    pool = dataset.split("/", 1)[0]
    full = f"{dataset}@{snapshot}"
    return (
        f"The snapshot {full} is kept; nixmox does not roll back a root file system itself. "
        "Often `dpkg --configure -a` and `apt-get -f install` on the node finish a half-done "
        "upgrade. To return to the snapshot instead, boot a rescue system with ZFS (the "
        f"Proxmox VE ISO's Rescue Boot, or any live system), `zpool import -f -R /mnt {pool}`, "
        f"`zfs rollback -r {full}` (this destroys snapshots of {dataset} taken after it), "
        "then chroot into /mnt (with /dev, /proc and /sys bound) and run "
        "`proxmox-boot-tool refresh` so the boot partitions hold the restored system's "
        f"kernels, leave the chroot, `zpool export {pool}` and reboot."
    )


@dataclass
class NodeTurn:
    """One node's turn: how to reach it, and what the cluster looked like."""

    node: Node
    local: bool
    remote: Remote | None
    clustered: bool
    targets: list[str] = field(default_factory=list)


class HostUpdate:
    """The rollout over the nodes; one instance per run."""

    def __init__(
        self,
        inv: Inventory,
        api: Proxmox,
        runner: Runner,
        zone: tzinfo,
        *,
        hostname: str | None = None,
        timing: Timing | None = None,
        probe_root: str = "/",
        clock: Clock = SYSTEM_CLOCK,
        progress: Progress = SILENT,
    ) -> None:
        self.inv = inv
        self.api = api
        self.runner = runner
        self.zone = zone
        self.hostname = hostname or this_host()
        self.timing = timing or Timing()
        self.probe_root = probe_root
        self.clock = clock
        #: Hears each node's start, steps, waits and end.
        self.progress = progress
        self._node: UpdateOutcome | None = None  # the node updating now
        self.dry_run = runner.dry_run
        self.declared: dict[int, Guest] = {g.vmid: g for g in inv.guests}
        #: The node nixmox runs on, when it is to be rebooted after the report.
        self.self_reboot: str | None = None
        #: The upgrades each node's API listed (before upgrading).
        self.upgrades: dict[str, list[Upgrade]] = {}

    # -- the rollout -------------------------------------------------------------

    def run(self, nodes: Sequence[Node]) -> list[UpdateOutcome]:
        """Update ``nodes`` one at a time; the outcome of each, in the order they ran."""
        local = next((n.name for n in nodes if nixmox_runs_on(n, self.hostname)), None)
        outcomes: list[UpdateOutcome] = []
        stopped_at: str | None = None
        for node in rollout_order(nodes, local):
            out = UpdateOutcome(node.name, None, progress=self.progress)
            outcomes.append(out)
            if stopped_at is not None:
                out.result = "skipped"
                out.message = f"not started: the rollout stopped at {stopped_at}"
                out.finish()
                continue
            if interrupt.stopping():
                out.result = "skipped"
                out.message = f"not started: interrupted by {interrupt.signal_name()}"
                out.finish()
                continue
            out.begin(f"updating {node.name}")
            self._node = out
            try:
                go_on = self._update(node, out)
            except NixmoxError as exc:
                out.result = "failed"
                out.message = str(exc)
                if out.snapshot and node.root_dataset:
                    if isinstance(exc, HostUpdateError) and exc.recover:
                        out.message += ". " + recovery_hint(node.root_dataset, out.snapshot)
                    else:
                        out.message += f"; the snapshot {node.root_dataset}@{out.snapshot} is kept"
                # Nothing changed before the snapshot: the next node may still go.
                go_on = out.snapshot is None
            self._node = None
            out.finish()
            log.debug("%s: %s%s", node.name, out.result, f": {out.message}" if out.message else "")
            if not go_on:
                stopped_at = node.name
        return outcomes

    def reboot_self(self) -> str | None:
        """Reboot the node nixmox runs on (after the run is journaled), if that is due.

        Returns why it did not after all: a backup or a migration that started
        since the preflight (the reboot would kill it); None otherwise.
        """
        if self.self_reboot is None or self.dry_run:
            return None
        name = self.self_reboot
        found = busy(name, self.api.get("/cluster/tasks") or [])
        if found:
            return (
                f"{name}: reboot held after all: {'; '.join(found)}; "
                "run `nixmox update host` again once it has finished"
            )
        self.progress.step(f"{name}: rebooting this node now")
        self.api.post(f"/nodes/{name}/status", command="reboot")
        return None

    def _update(self, node: Node, out: UpdateOutcome) -> bool:
        """One node's turn; False stops the rollout."""
        local = nixmox_runs_on(node, self.hostname)
        if local is None:
            out.result = "failed"
            out.message = (
                f"nixmox cannot reach node {node.name}: set nodes.address (SSH as "
                f"{node.ssh_user}), or run nixmox on the node itself"
            )
            return True
        status = self.api.get("/cluster/status") or []
        online = cluster_nodes(status)
        turn = NodeTurn(
            node,
            local,
            None if local else node_remote(node),
            clustered=len(online) > 1,
            targets=self._targets(node.name, online),
        )
        found = self._preflight(node, status)
        if found:
            out.result = "failed"
            out.message = "preflight: " + "; ".join(found) + "; nothing changed"
            return True
        out.step("preflight passed")

        upgrades = self._refresh(node.name)
        self.upgrades[node.name] = upgrades
        listed = ", ".join(str(u) for u in upgrades)
        log.debug(
            "%s: %s%s", node.name, plural(len(upgrades), "upgrade"), f": {listed}" if listed else ""
        )
        out.pending = len(upgrades)
        out.step(f"{plural(len(upgrades), 'upgrade')} listed by the API")
        for u in upgrades:
            out.step(f"upgrade {u}")
        if self.dry_run:
            try:
                need, unread = reboot_needed(self._probe(turn)), None
            except NixmoxError as exc:  # the plan still shows; the real run would fail here
                need, unread = None, str(exc)
            self._dry_run(turn, upgrades, need, out)
            if unread is not None:
                out.result = "dry-run"
                out.message += f"; cannot read the node to check for a reboot: {unread}"
            return True
        if upgrades:
            assert node.root_dataset is not None  # preflight
            out.snapshot = self._snapshot(turn, node.root_dataset)
            out.step(f"snapshot {node.root_dataset}@{out.snapshot}")
            self._upgrade(turn, out)
            left = self._listed(node.name)
            out.pending = len(left)
            out.step(f"{plural(len(upgrades) - len(left), 'package')} upgraded, {len(left)} left")
            self._prune(turn, node.root_dataset, out)
        # Also with nothing installed now: a reboot held by an earlier run is still due.
        need = reboot_needed(self._probe(turn))
        upgraded = plural(len(upgrades) - out.pending, "package")
        done = f"{upgraded} upgraded" if upgrades else "up to date"
        if need is None:
            out.result = "ok" if upgrades else "unchanged"
            out.message = f"{done}; no reboot needed"
            return True
        out.step(f"reboot needed: {need}")
        return self._reboot(turn, need, done, out)

    # -- preflight ---------------------------------------------------------------

    def _targets(self, name: str, online: Mapping[str, bool]) -> list[str]:
        """The other online nodes: declared ones in inventory order, then the rest."""
        declared = [n.name for n in self.inv.nodes if online.get(n.name) and n.name != name]
        rest = sorted(n for n, up in online.items() if up and n != name and n not in declared)
        return declared + rest

    def _preflight(self, node: Node, status: Sequence[Mapping[str, Any]]) -> list[str]:
        tasks = self.api.get("/cluster/tasks") or []
        found = problems(node.name, status, tasks, read_guests(self.api).values())
        if node.root_dataset is None:
            found.append(
                f"node {node.name} declares no root_dataset: nixmox snapshots the root file "
                "system before it upgrades (set it, e.g. rpool/ROOT/pve-1)"
            )
        return found

    # -- apt ---------------------------------------------------------------------

    def _tick(self) -> None:
        """A wait goes on: after a quiet while, the reporter says ``Still updating ...``."""
        if self._node is not None:
            self._node.tick()

    def _listed(self, name: str) -> list[Upgrade]:
        return upgrades_of(self.api.get(f"/nodes/{name}/apt/update") or [])

    def _refresh(self, name: str) -> list[Upgrade]:
        """``apt update`` on the node (a task), then its list; a dry run reads the cached list."""
        if not self.dry_run:
            self._task(f"/nodes/{name}/apt/update", f"apt update on {name}")
        return self._listed(name)

    def _task(self, path: str, what: str, **params: Any) -> None:
        """POST ``path`` and follow the task it starts to its end."""
        upid = self.api.post(path, **params)
        wait(
            self.api,
            str(upid),
            what=what,
            timeout=self.timing.task,
            clock=self.clock,
            watch=self._tick,
        )

    def _zfs(self, turn: NodeTurn) -> Zfs:
        """``[zfs] command`` on the node: as configured when nixmox runs there; over ssh
        to the node otherwise, running the program the command names (without its own ssh)."""
        if turn.local:
            return Zfs(self.runner.on(None), self.inv.zfs.command)
        _, program = split_remote(self.inv.zfs.command)
        return Zfs(self.runner.on(turn.remote), program)

    def _snapshot(self, turn: NodeTurn, dataset: str) -> str:
        name = update_snapshot_name(self.clock.now())
        zfs = self._zfs(turn)
        try:
            zfs.snapshot(dataset, name, recursive=False)
        except ZfsError as exc:
            raise HostUpdateError(f"{exc}; nothing upgraded") from None
        return name

    def _prune(self, turn: NodeTurn, dataset: str, out: UpdateOutcome) -> None:
        """Keep the newest three of nixmox's update snapshots of the root dataset."""
        zfs = self._zfs(turn)
        try:
            names = [s.name for s in zfs.list_snapshots(dataset, recursive=False)]
            doomed = snapshots_to_prune(names, DEFAULT_KEEP, self.zone)
            failed = zfs.destroy_snapshots(dataset, doomed) if doomed else []
        except ZfsError as exc:
            log.warning("%s: could not prune old update snapshots: %s", turn.node.name, exc)
            return
        for name in doomed:
            if name not in {f for f, _ in failed}:
                out.step(f"pruned snapshot {dataset}@{name}")
        for name, error in failed:
            log.warning("%s: kept %s@%s: %s", turn.node.name, dataset, name, error)

    def _upgrade(self, turn: NodeTurn, out: UpdateOutcome) -> None:
        where = "here" if turn.local else f"on {turn.remote.destination}" if turn.remote else ""
        self.progress.step(f"{turn.node.name}: apt-get dist-upgrade {where}".rstrip())
        try:
            self.runner.run(
                UPGRADE,
                remote=turn.remote,
                env=UPGRADE_ENV,
                timeout=self.timing.upgrade,
            )
        except (CommandError, CommandNotFound, CommandTimeout) as exc:
            raise HostUpdateError(f"apt-get dist-upgrade failed: {exc}", recover=True) from None
        out.step("apt-get dist-upgrade finished")

    def _probe(self, turn: NodeTurn) -> BootFacts:
        root = self.probe_root if turn.local else "/"
        result = self.runner.run(["sh", "-c", PROBE, "sh", root], remote=turn.remote, changes=False)
        return parse_facts(result.stdout)

    # -- reboot ------------------------------------------------------------------

    def _reboot(self, turn: NodeTurn, need: RebootNeed, done: str, out: UpdateOutcome) -> bool:
        node = turn.node
        verdict = node_reboot(node, self.clock.now(), self.zone)
        held: str | None = None
        evac = Evacuation()
        if not verdict.allowed:
            held = f"held by policy: {verdict.reason}"
        elif turn.local and turn.clustered:
            held = (
                "held: nixmox runs on this node and could not move its guests back after "
                f"its own reboot; run `nixmox update host --node {node.name}` from another node"
            )
        else:
            evac = self._evacuation(turn)
            if evac.holds:
                held = "held: " + "; ".join(evac.holds)
        if held is not None:
            out.result = "held"
            out.pending += 1
            out.message = f"{done}; reboot pending ({need}), {held}"
            return True
        out.step(f"reboot allowed: {verdict.reason}")
        if turn.local:
            # Waiting for our own reboot is impossible: the CLI reboots once the
            # run is journaled. PVE stops the guests and starts the onboot ones.
            self.self_reboot = node.name
            out.result = "ok"
            out.message = f"{done}; rebooting now ({need}), right after this report"
            return False
        late = self._cycle(turn, evac, out)
        if late is not None:
            out.result = "held"
            out.pending += 1
            out.message = f"{done}; reboot pending ({need}), held: {late}"
            return True
        out.result = "ok"
        away = [str(m.vmid) for m in evac.moves]
        stopped = [str(s.vmid) for s in evac.stops]
        moved = f"; moved away and back: {', '.join(away)}" if away else ""
        moved += f"; shut down and started again: {', '.join(stopped)}" if stopped else ""
        out.message = f"{done}; rebooted ({need}){moved}{self._booted_check(turn, need, out)}"
        return True

    def _booted_check(self, turn: NodeTurn, need: RebootNeed, out: UpdateOutcome) -> str:
        """After the reboot: does the node run the kernel it was rebooted for?"""
        if need.kernel is None:
            return ""
        try:
            running = self._probe(turn).running
        except NixmoxError as exc:
            return f"; could not check the running kernel: {exc}"
        if running == need.kernel:
            out.step(f"running kernel {running}")
            return ""
        out.pending += 1
        return (
            f"; but it still runs kernel {running}, not {need.kernel}: check the boot "
            "loader (`proxmox-boot-tool status`, `proxmox-boot-tool kernel list`)"
        )

    def _running_guests(self, name: str, *, self_reboot: bool) -> list[RunningGuest]:
        """The node's running guests, with what decides how each may leave it."""
        found = []
        for r in read_guests(self.api).values():
            if r.node != name or r.status != "running" or r.template:
                continue
            # Only the node's own boot starts guests after a self-reboot: only then
            # does onboot matter (one config read per guest).
            onboot = not self_reboot or _onboot(self.api.get(f"{r.path}/config") or {})
            if r.type == "qemu":
                check = self.api.get(f"{r.path}/migrate") or {}
                allowed = check.get("allowed_nodes")
                local_disks = bool(check.get("local_disks"))
                found.append(
                    RunningGuest(
                        r.vmid,
                        "qemu",
                        r.name or str(r.vmid),
                        tuple(str(x) for x in check.get("local_resources") or ()),
                        local_disks,
                        None if allowed is None else tuple(str(x) for x in allowed),
                        has_snapshots=local_disks and self._has_snapshots(r.path),
                        onboot=onboot,
                    )
                )
            else:
                found.append(RunningGuest(r.vmid, "lxc", r.name or str(r.vmid), onboot=onboot))
        return found

    def _has_snapshots(self, path: str) -> bool:
        """Whether the guest has Proxmox snapshots (the list always holds "current")."""
        rows = self.api.get(f"{path}/snapshot") or []
        return any(isinstance(r, Mapping) and r.get("name") != "current" for r in rows)

    def _evacuation(self, turn: NodeTurn) -> Evacuation:
        guests = self._running_guests(turn.node.name, self_reboot=turn.local)
        if turn.local:
            # The node's own shutdown stops its guests: only their policies and
            # onboot count.
            return plan_evacuation(
                guests, [], self.declared, self.clock.now(), self.zone, self_reboot=True
            )
        return plan_evacuation(guests, turn.targets, self.declared, self.clock.now(), self.zone)

    def _cycle(self, turn: NodeTurn, evac: Evacuation, out: UpdateOutcome) -> str | None:
        """Guests away, reboot, wait for the node and quorum, guests back.

        Returns why the reboot was held after all (the guests are back then),
        None once it rebooted.
        """
        name = turn.node.name
        moved: list[Move] = []
        stopped: list[Stop] = []
        try:
            for move in evac.moves:
                self._migrate(name, move.vmid, move.kind, move.target, move.with_local_disks)
                moved.append(move)
                out.step(f"migrated {move.kind} {move.vmid} to {move.target}")
            for stop in evac.stops:
                self._shutdown(name, stop)
                stopped.append(stop)
                out.step(f"shut down {stop.kind} {stop.vmid} ({stop.why})")
        except ProxmoxError as exc:
            undone = self._back(name, moved, stopped, out)
            raise HostUpdateError(
                f"moving the guests away failed ({exc}); not rebooted{undone}"
            ) from None
        # A PVE backup job may have started since the preflight (the guests took
        # a while to move): the reboot would kill it.
        late = busy(name, self.api.get("/cluster/tasks") or [])
        if late:
            undone = self._back(name, moved, stopped, out)
            if undone:
                raise HostUpdateError(f"not rebooted: {'; '.join(late)}{undone}")
            return "; ".join(late) + ("; the guests are back" if moved or stopped else "")
        requested = self.clock.now().timestamp()
        self.progress.step(f"{name}: rebooting")
        try:
            self.api.post(f"/nodes/{name}/status", command="reboot")
        except ProxmoxError as exc:
            undone = self._back(name, moved, stopped, out)
            raise HostUpdateError(f"the reboot request failed ({exc}){undone}") from None
        out.step("reboot requested")
        if not self._wait_back(name, requested):
            where = ", ".join(f"{m.vmid} on {m.target}" for m in moved)
            raise HostUpdateError(
                f"node {name} did not come back with quorum within {self.timing.reboot:g} s"
                + (f"; its guests stay where they went: {where}" if where else ""),
                recover=True,
            )
        out.step("node back, cluster quorate")
        trouble = self._back(name, moved, stopped, out)
        if trouble:
            raise HostUpdateError(f"rebooted, but{trouble}")
        return None

    def _migrate(self, source: str, vmid: int, kind: str, target: str, local_disks: bool) -> None:
        params: dict[str, Any] = {"target": target}
        if kind == "qemu":
            params["online"] = 1
            if local_disks:
                params["with-local-disks"] = 1
        else:
            params["restart"] = 1
            params["timeout"] = self.timing.shutdown
        self.progress.step(f"{source} -> {target}: migrating {kind} {vmid}")
        what = f"migration of {vmid} to {target}"
        self._task(f"{guest_path(source, kind, vmid)}/migrate", what, **params)
        self._settle(vmid, target, "running", what)

    def _shutdown(self, node: str, stop: Stop) -> None:
        self.progress.step(f"{node}: shutting down {stop.kind} {stop.vmid} ({stop.why})")
        self._task(
            f"{guest_path(node, stop.kind, stop.vmid)}/status/shutdown",
            f"shutdown of {stop.vmid}",
            timeout=self.timing.shutdown,
        )
        self._settle(stop.vmid, node, "stopped", f"shutdown of {stop.vmid}")

    def _start(self, node: str, kind: str, vmid: int) -> None:
        if guest_status(self.api, node, kind, vmid).get("status") == "running":
            return  # onboot started it already
        self._task(f"{guest_path(node, kind, vmid)}/status/start", f"start of {vmid}")
        self._settle(vmid, node, "running", f"start of {vmid}")

    def _settle(self, vmid: int, node: str, status: str, what: str) -> None:
        """Wait until the guest really is ``status`` on ``node``.

        For an HA resource the API's migrate/shutdown/start only queue a request
        with the HA manager: the task (hamigrate, hastop, hastart) ends at once
        (PVE::API2::Qemu migrate_vm and vm_start/vm_shutdown fork a worker that
        runs `ha-manager migrate|set`), and the CRM acts later. Rebooting before
        it did would take the guest down with the node. For any other guest the
        task's end is the change, and the first look confirms it.
        """
        deadline = self.clock.monotonic() + self.timing.task
        delay = 0.25
        while True:
            row = read_guests(self.api).get(vmid)
            if row is not None and row.node == node and row.status == status:
                return
            if self.clock.monotonic() >= deadline:
                where = "gone" if row is None else f"{row.status} on {row.node}"
                raise ProxmoxError(
                    f"{what}: guest {vmid} is {where}, not {status} on {node}, "
                    f"{self.timing.task:g} s after the task ended"
                    + (f" (HA state {row.hastate})" if row is not None and row.hastate else "")
                )
            self._tick()
            self.clock.sleep(delay)
            delay = min(delay * 1.5, self.timing.poll_max)

    def _back(
        self, name: str, moved: Sequence[Move], stopped: Sequence[Stop], out: UpdateOutcome
    ) -> str:
        """Move the guests back, start the stopped ones; what failed, in words ('' if none)."""
        failed: list[str] = []
        for move in moved:
            try:
                self._migrate(move.target, move.vmid, move.kind, name, move.with_local_disks)
                out.step(f"migrated {move.kind} {move.vmid} back from {move.target}")
            except ProxmoxError as exc:
                failed.append(f"{move.vmid} stays on {move.target} ({exc})")
        for stop in stopped:
            try:
                self._start(name, stop.kind, stop.vmid)
                out.step(f"started {stop.kind} {stop.vmid}")
            except ProxmoxError as exc:
                failed.append(f"{stop.vmid} is not running ({exc})")
        return f"; {'; '.join(failed)}" if failed else ""

    def _wait_back(self, name: str, requested: float) -> bool:
        """Poll until the node booted after ``requested`` and the cluster is quorate."""
        deadline = self.clock.monotonic() + self.timing.reboot
        delay = 0.25
        while not self._is_back(name, requested):
            if self.clock.monotonic() >= deadline:
                return False
            self._tick()
            self.clock.sleep(delay)
            delay = min(delay * 1.5, self.timing.poll_max)
        return True

    def _is_back(self, name: str, requested: float) -> bool:
        try:
            # One request each, no retries: "not yet" is an answer here.
            status = self.api.request("GET", f"/nodes/{name}/status") or {}
            booted = self.clock.now().timestamp() - float(status.get("uptime", 0))
            # uptime is whole seconds, so booted errs late; allow for that.
            if booted < requested - 2:
                return False
            cluster = self.api.request("GET", "/cluster/status") or []
        except ProxmoxError:
            return False
        return cluster_nodes(cluster).get(name, False) and quorate(cluster)

    # -- dry run -----------------------------------------------------------------

    def _dry_run(
        self,
        turn: NodeTurn,
        upgrades: Sequence[Upgrade],
        need: RebootNeed | None,
        out: UpdateOutcome,
    ) -> None:
        node = turn.node
        kernels = [u.package for u in upgrades if is_kernel_package(u.package)]
        if not upgrades and need is None:
            out.result = "unchanged"
            out.message = "up to date (PVE's cached package list; a dry run does not refresh it)"
            return
        out.result = "dry-run"
        said = []
        if upgrades:
            said.append(
                f"would snapshot {node.root_dataset} and upgrade {plural(len(upgrades), 'package')}"
            )
        if need is None and not kernels:
            said.append("no reboot expected")
        else:
            why = str(need) if need is not None else f"kernel upgrade: {', '.join(kernels)}"
            verdict = node_reboot(node, self.clock.now(), self.zone)
            if not verdict.allowed:
                said.append(f"a reboot ({why}) would be held by policy: {verdict.reason}")
                out.pending += 1
            elif turn.local and turn.clustered:
                said.append(f"a reboot ({why}) would be held: nixmox runs on this node")
                out.pending += 1
            else:
                evac = self._evacuation(turn)
                if evac.holds:
                    said.append(f"a reboot ({why}) would be held: " + "; ".join(evac.holds))
                    out.pending += 1
                else:
                    plan = f", {_plan(evac)}" if evac.moves or evac.stops else ""
                    said.append(f"would reboot ({why}){plan}")
        out.message = "; ".join(said)


def _onboot(config: Mapping[str, Any]) -> bool:
    """A guest config's ``onboot`` flag (PVE's default is off)."""
    return str(config.get("onboot", "0")) in ("1", "true")


def _plan(evac: Evacuation) -> str:
    parts = [f"move {m.kind} {m.vmid} to {m.target}" for m in evac.moves]
    parts += [f"shut down {s.kind} {s.vmid} ({s.why})" for s in evac.stops]
    return ", ".join(parts)
