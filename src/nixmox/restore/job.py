"""Restore one guest from a vzdump archive, step by step, each step timed.

In place (the guest's own VMID): refuse while the guest is locked, ask, stop
it, keep what is there first, restore over it (``force=1``), converge it to
the inventory through apply's own code, start it if it is declared to run
(``onboot``), and wait until it runs and its agent answers. What is there is
kept as a *protected backup* on the backup storage, never as a snapshot: an
in-place restore destroys the guest's volumes, and their snapshots with them,
on every storage type; a protected archive survives that and retention.

As a new guest (``--as VMID``): restore with fresh MACs, then take away what
the original owns (:mod:`nixmox.backup.copies`: passthrough devices,
autostart, the hook script; every NIC down), check the node's memory, and
only then start it (when the original is declared to run).

``dry_run`` reads what it needs and lists every write it would make
(:attr:`RestoreResult.calls`) instead of making it. A stop request
(SIGINT/SIGTERM) lets the step in flight finish and starts no other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import (
    GuestRow,
    current_row,
    guest_path,
    guest_status,
    read_guests,
)
from nixmox.adapters.proxmox.tasks import task_log, wait
from nixmox.backup.copies import config_memory, copy_changes, memory_problem
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.confirm import Confirm
from nixmox.core.errors import NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.words import plural
from nixmox.inventory.model import Backups, Guest, Inventory
from nixmox.provision.actual import read_guest
from nixmox.provision.apply import Applier
from nixmox.provision.desired import desired_guest
from nixmox.provision.diff import Plan, diff_guest
from nixmox.restore.choose import Candidate, human_age

log = logging.getLogger("nixmox.restore")

Mode = Literal["in place", "as new"]


class Refused(NixmoxError):
    """The restore was not started: the guest is locked, the VMID taken, no yes."""


@dataclass
class Step:
    """One step of a restore and how long it took."""

    name: str
    result: str = "ok"  # ok | failed | skipped | planned
    seconds: float = 0.0
    detail: str = ""


@dataclass
class RestoreResult:
    """What one restore did."""

    guest: str
    vmid: int
    target: int
    mode: Mode
    archive: str | None = None
    archive_time: datetime | None = None
    kept: str | None = None  # the protected backup of what was there
    removed: list[str] = field(default_factory=list)  # taken from a copy
    steps: list[Step] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # the writes (planned, with --dry-run)
    health: str = ""
    ok: bool = False
    message: str = ""

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


@dataclass
class RestoreOptions:
    """How a restore runs."""

    as_vmid: int | None = None
    dry_run: bool = False
    timeout: float = 600.0
    #: Converge the guest to the inventory after the restore (apply's code path).
    converge: bool = True
    #: Tell the keep's vzdump not to prune (``prune-backups=keep-all=1``, which takes
    #: Datastore.Allocate): only where the storage would prune by itself
    #: (:func:`nixmox.backup.privileges.vzdump_prunes`), as ``backup`` does.
    keep_all_param: bool = True


class Restorer:
    """Restore ``guest`` from ``candidate`` (see the module's docstring)."""

    def __init__(
        self,
        api: Proxmox,
        inv: Inventory,
        guest: Guest,
        settings: Backups,
        options: RestoreOptions,
        *,
        confirm: Confirm | None = None,
        clock: Clock = SYSTEM_CLOCK,
        progress: Progress = SILENT,
        on_restored: Callable[[RestoreResult], None] | None = None,
    ) -> None:
        self.api = api
        self.inv = inv
        self.guest = guest
        self.settings = settings
        self.options = options
        self.confirm = confirm
        self.clock = clock
        #: Hears each step's start and end.
        self.progress = progress
        self._key: str | None = None  # the step running now, as the reporter knows it
        #: Called once the guest exists again (a rebuild records its progress there).
        self.on_restored = on_restored
        self.kind = guest.pve_type
        self.target = options.as_vmid or guest.vmid
        self.in_place = options.as_vmid is None or options.as_vmid == guest.vmid
        self.path = guest_path(guest.node, self.kind, self.target)

    # -- writes --------------------------------------------------------------------
    def _write(
        self, result: RestoreResult, method: str, path: str, what: str, **params: Any
    ) -> Any:
        shown = " ".join(f"{k}={v}" for k, v in params.items() if v is not None)
        result.calls.append(f"{method} {path}" + (f" {shown}" if shown else ""))
        if self.options.dry_run:
            return None
        call = {"POST": self.api.post, "PUT": self.api.put, "DELETE": self.api.delete}[method]
        answer = call(path, **params)
        if isinstance(answer, str) and answer.startswith("UPID:"):
            wait(
                self.api,
                answer,
                what=what,
                timeout=self.options.timeout,
                clock=self.clock,
                watch=self._tick,
            )
        return answer

    def _tick(self) -> None:
        """A look at something still going: after a quiet while, the reporter says so."""
        if self._key is not None:
            self.progress.update(self._key)

    def _step(self, result: RestoreResult, name: str, work: Callable[[Step], None]) -> None:
        interrupt.raise_if_stopping(f"{name} not started")
        step = Step(name, result="planned" if self.options.dry_run else "ok")
        result.steps.append(step)
        started = self.clock.monotonic()
        key = f"{self.guest.name} {name}"
        self._key = key
        self.progress.start(key, f"{self.guest.name}: {name}")
        try:
            work(step)
        except NixmoxError:
            step.result = "failed"
            raise
        finally:
            self._key = None
            step.seconds = self.clock.monotonic() - started
            done = f"{self.guest.name}: {name} {step.result} ({step.seconds:.1f} s)"
            self.progress.end(key, f"{done} {step.detail}".rstrip())

    # -- the whole restore -----------------------------------------------------------
    def run(self, candidate: Candidate, row: GuestRow | None) -> RestoreResult:
        """Restore; ``row`` is the guest now at the target VMID (``None``: none).

        Raises :class:`Refused` before anything changed; later failures are
        reported in the result (``ok`` false, the failed step named).
        """
        mode: Mode = "in place" if self.in_place else "as new"
        result = RestoreResult(self.guest.name, self.guest.vmid, self.target, mode)
        result.archive, result.archive_time = candidate.archive.volid, candidate.archive.time
        self.check(row)
        age = human_age(self.clock.now() - candidate.archive.time)
        if self.in_place and row is not None and self.confirm is not None:
            question = (
                f"Restore {self.guest.name} ({self.target}) in place from "
                f"{candidate.archive.volid} ({age} old)? It is stopped and what is there now "
                f"is kept first as a protected backup on {self.settings.storage}."
            )
            refusal = "refusing to restore in place without --yes (no terminal to ask)"
            if not self.options.dry_run and not self.confirm(question, refusal):
                raise Refused("not restored: not confirmed")

        def steps() -> None:
            if self.in_place and row is not None:
                if row.status == "running":
                    self._step(result, "stop", lambda s: self._stop(result, s))
                self._step(result, "keep", lambda s: self._keep(result, s))
            self._step(result, "restore", lambda s: self._restore(result, s, candidate, row))
            if self.on_restored is not None and not self.options.dry_run:
                self.on_restored(result)
            if not self.in_place:
                self._step(result, "isolate", lambda s: self._isolate(result, s))
            self._bring_up(result)

        return _reported(result, steps)

    def bring_up(self, result: RestoreResult) -> RestoreResult:
        """Only converge, start and wait (the guest is there already: created from its
        template, or restored by an earlier, interrupted rebuild)."""
        return _reported(result, lambda: self._bring_up(result))

    def _bring_up(self, result: RestoreResult) -> None:
        if self.in_place and self.options.converge and _provisioned(self.guest):
            self._step(result, "converge", lambda s: self._converge(result, s))
        if self.guest.onboot:
            self._step(result, "start", lambda s: self._start(result, s))
            self._step(result, "wait", lambda s: self._wait(result, s))
            result.health = "running" if not self.options.dry_run else ""
        else:
            result.health = "stopped (not declared to run)"
        result.ok = True
        result.message = (
            "would restore" if self.options.dry_run else f"done in {result.seconds:.1f} s"
        )

    def create(self, result: RestoreResult, applier: Applier) -> RestoreResult:
        """Create the guest from its template as apply would (no archive), then bring it up."""

        def make(step: Step) -> None:
            gp = diff_guest(desired_guest(self.guest), None)
            outcomes = applier.apply(Plan(guests=(gp,), bridges=(), storages=(), unmanaged=()))
            failed = [o for o in outcomes if o.result == "failed"]
            if failed:
                raise NixmoxError(str(failed[0].error))
            step.detail = "; ".join(d for o in outcomes for d in o.done) or "created"

        try:
            self._step(result, "create", make)
            if self.options.dry_run:
                result.ok, result.message = True, "would create from its template"
                return result
            if self.on_restored is not None:
                self.on_restored(result)
            self._bring_up(result)
        except interrupt.Interrupted as exc:
            result.message = str(exc)
        except NixmoxError as exc:
            result.message = _failure(result, exc)
        return result

    def check(self, row: GuestRow | None) -> None:
        if row is None:
            return
        if not self.in_place:
            raise Refused(f"VMID {self.target} is taken ({row.type} {row.name or '-'})")
        if row.type != self.kind or row.node != self.guest.node:
            raise Refused(
                f"VMID {self.target} is a {row.type} on {row.node}, the inventory says "
                f"{self.kind} on {self.guest.node}: not restored over it"
            )
        if row.lock:
            raise Refused(
                f"{self.guest.name} ({self.target}) is locked ({row.lock}); not restored "
                "(nixmox never removes someone else's lock: try again when it is done)"
            )

    def _stop(self, result: RestoreResult, step: Step) -> None:
        self._write(
            result,
            "POST",
            f"{self.path}/status/shutdown",
            f"shut down {self.guest.name}",
            forceStop=1,
            timeout=120,
        )
        step.detail = "shut down (stopped after 120 s)"

    def _keep(self, result: RestoreResult, step: Step) -> None:
        storage = self.settings.storage
        upid = self._write(
            result,
            "POST",
            f"/nodes/{self.guest.node}/vzdump",
            f"keep {self.guest.name} before the restore",
            vmid=self.target,
            storage=storage,
            mode="stop",
            compress=self.settings.compress,
            protected=1,
            **{
                "notes-template": f"nixmox: {{{{guestname}}}} as it was before restoring "
                f"{result.archive}",
                "prune-backups": "keep-all=1" if self.options.keep_all_param else None,
            },
        )
        kept = None
        if isinstance(upid, str):
            for line in task_log(self.api, upid):
                if "creating vzdump archive '" in line:
                    kept = f"{storage}:backup/{line.split(chr(39), 2)[1].rsplit('/', 1)[-1]}"
        result.kept = kept or ("(the new protected backup)" if self.options.dry_run else None)
        if not self.options.dry_run and kept is None:
            raise NixmoxError("the backup of what was there did not name its archive")
        step.detail = f"protected backup {result.kept}"

    def _restore(
        self, result: RestoreResult, step: Step, candidate: Candidate, row: GuestRow | None
    ) -> None:
        params: dict[str, Any] = {"vmid": self.target}
        if self.kind == "lxc":
            params.update(ostemplate=candidate.archive.volid, restore=1)
            if self.guest.rootfs is not None:
                params["storage"] = self.guest.rootfs.storage
        else:
            params["archive"] = candidate.archive.volid
        if row is not None:
            params["force"] = 1
        if not self.in_place:
            params["unique"] = 1  # new MACs: the copy must not clash with the original
        self._write(
            result,
            "POST",
            f"/nodes/{self.guest.node}/{self.kind}",
            f"restore {candidate.archive.volid} to {self.target}",
            **params,
        )
        step.detail = f"{candidate.archive.volid} to {self.target}"

    def _isolate(self, result: RestoreResult, step: Step) -> None:
        if self.options.dry_run:
            result.calls.append(
                f"PUT {self.path}/config delete=hostpci*,usb*,onboot,startup,hookscript "
                "net*=...,link_down=1 (what the restored config has of them)"
            )
            step.detail = "passthrough devices, autostart and hook script removed, NICs down"
            return
        config = self.api.get(f"{self.path}/config") or {}
        changes = copy_changes(config)
        if changes.set:
            down: dict[str, Any] = dict(changes.set)
            self._write(result, "PUT", f"{self.path}/config", "links down", **down)
        if changes.delete:
            try:
                self._write(result, "PUT", f"{self.path}/config", "isolate", **changes.removals)
            except NixmoxError as exc:
                raise NixmoxError(
                    f"cannot remove {', '.join(changes.removed)} from the copy ({exc}); "
                    f"it is not started: remove them by hand or restore as root@pam"
                ) from None
        result.removed = changes.removed
        downs = len(changes.set)
        step.detail = (
            f"removed {', '.join(changes.removed) or 'nothing'}; "
            f"{plural(downs, 'NIC')} set link_down"
        )
        if self.guest.onboot:
            status = self.api.get(f"/nodes/{self.guest.node}/status") or {}
            short = memory_problem(config_memory(config), status, self.guest.node)
            if short:
                raise NixmoxError(f"not started: {short}")

    def _converge(self, result: RestoreResult, step: Step) -> None:
        if self.options.dry_run:
            step.detail = "the plan for this guest, read once it is restored, applied"
            return
        row = current_row(self.api, self.guest.node, self.kind, self.target)
        gp = diff_guest(desired_guest(self.guest), read_guest(self.api, row, digest=True))
        if gp.action == "none":
            step.detail = "already as the inventory says"
            return
        applier = Applier(self.api, self.inv, clock=self.clock)
        outcomes = applier.apply(Plan(guests=(gp,), bridges=(), storages=(), unmanaged=()))
        result.calls += applier.calls
        failed = [o for o in outcomes if o.result == "failed"]
        if failed:
            raise NixmoxError(f"converge: {failed[0].error}")
        done = [d for o in outcomes for d in o.done]
        held = [h for o in outcomes for h in o.held]
        step.detail = "set " + ", ".join(done) if done else "nothing to set"
        if held:
            step.detail += "; held: " + "; ".join(held)

    def _start(self, result: RestoreResult, step: Step) -> None:
        self._write(result, "POST", f"{self.path}/status/start", f"start {self.target}")
        step.detail = "declared to run (onboot)"

    def _wait(self, result: RestoreResult, step: Step) -> None:
        if self.options.dry_run:
            step.detail = "until it runs (and its guest agent answers)"
            return
        deadline = self.clock.monotonic() + self.options.timeout
        node = self.guest.node
        while guest_status(self.api, node, self.kind, self.target).get("status") != "running":
            interrupt.raise_if_stopping("gave up waiting")
            if self.clock.monotonic() >= deadline:
                raise NixmoxError(
                    f"{self.target} did not reach running in {self.options.timeout:g} s"
                )
            self._tick()
            self.clock.sleep(1.0)
        config = self.api.get(f"{self.path}/config") or {}
        agent = str(config.get("agent", "0")).split(",", 1)[0] in ("1", "enabled=1")
        if self.kind == "qemu" and agent:
            while True:
                try:
                    self.api.post(f"{self.path}/agent/ping")
                    break
                except NixmoxError as exc:
                    interrupt.raise_if_stopping("gave up waiting for the guest agent")
                    if self.clock.monotonic() >= deadline:
                        raise NixmoxError(f"the guest agent did not answer: {exc}") from None
                    self._tick()
                    self.clock.sleep(2.0)
            step.detail = "running, the guest agent answers"
        else:
            step.detail = "running"


def _reported(result: RestoreResult, steps: Callable[[], None]) -> RestoreResult:
    """``result`` after ``steps``: a failure or a stop request is its message, not a raise."""
    try:
        steps()
    except interrupt.Interrupted as exc:
        result.message = str(exc)
    except NixmoxError as exc:
        result.message = _failure(result, exc)
    return result


def _failure(result: RestoreResult, exc: NixmoxError) -> str:
    failed = next((s.name for s in result.steps if s.result == "failed"), "restore")
    return f"{failed}: {exc}"


def _provisioned(guest: Guest) -> bool:
    """Whether the inventory declares more than the guest's identity (apply manages it)."""
    return desired_guest(guest).provisioned


def target_row(api: Proxmox, vmid: int) -> GuestRow | None:
    """The guest at ``vmid`` now, if any."""
    return read_guests(api).get(vmid)
