"""`nixmox update windows`: Windows Update through the guest agent, one transaction per guest.

precheck (the VM runs, its agent answers within 5 minutes, Windows is not
servicing, C: has room, PowerShell is not constrained) → disk-only Proxmox
snapshot → rounds of scan → install → reboot inside the guest when the reboot
policy allows it (then wait for the agent to go, come back three pings in a
row, and report a new boot time, and for servicing to settle) → postcheck (no
GPU with problem code 43) → the snapshot deleted (or kept) and old update
snapshots pruned. An install that changed the guest and failed, or a broken
GPU, rolls the snapshot back and the run exits 1 naming it; a failed download
changed nothing and rolls nothing back. Rolling back a running VM stops it
hard, so the reboot policy is asked first: when it forbids that now, the
snapshot is kept and the run says how to roll back. A reboot the policy
forbids ends the run "reboot pending, held" with the snapshot kept. nixmox
never stops or resets the VM otherwise: a guest that does not come back is
reported, not forced.

The decisions (the reboot policy's verdict, what an install's result codes
mean, what the postcheck finds wrong, when the rounds stop) are pure
functions in :mod:`nixmox.windows.update_decisions`; :class:`WindowsUpdate` is
the transaction that acts on them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Protocol

from nixmox.adapters.guest_agent import AgentError, GuestAgent
from nixmox.core import interrupt
from nixmox.core.clock import Clock, SystemClock
from nixmox.core.errors import NixmoxError
from nixmox.core.words import plural
from nixmox.inventory.model import Guest, UpdateSettings
from nixmox.rules.retention import Keep
from nixmox.updates.guest_snapshots import DEFAULT_KEEP, update_snapshot_name
from nixmox.updates.outcome import UpdateOutcome
from nixmox.windows.scripts import ScriptError, prepare_guest_folder, run_script
from nixmox.windows.update_decisions import (
    SHUTDOWN,
    Precheck,
    RebootVerdict,
    WindowsUpdateItem,
    after_failure,
    after_scan,
    busy_processes,
    interpret_install,
    offered,
    postcheck_problems,
    precheck_blocker,
    reboot_verdict,
    skipped,
    still_servicing,
)

# -- the transaction -------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """How long each wait may last (seconds)."""

    agent_wait: float = 300.0  # the agent must answer within this at the start
    reboot_wait: float = 3600.0  # "Working on updates" can take long
    ping_every: float = 5.0
    pings_in_a_row: int = 3
    script: float = 300.0
    scan: float = 1800.0
    install: float = 4 * 3600.0
    settle_wait: float = 1800.0  # servicing finishes after a boot ("Working on updates")
    settle_every: float = 30.0


class Snapshots(Protocol):
    """A guest's Proxmox snapshots (through the API, or `qm` on the host)."""

    def take(self, name: str, *, description: str = ...) -> None: ...

    def rollback(self, name: str, *, start: bool = True) -> None: ...

    def delete(self, name: str) -> None: ...

    def prune(self, keep: Keep, zone: tzinfo, *, dry_run: bool = False) -> list[str]: ...


@dataclass
class Target:
    """One Windows guest and the doors to it."""

    guest: Guest
    agent: GuestAgent
    snapshots: Snapshots
    running: Callable[[], bool]
    via: str = "the API"


class _Stop(Exception):
    """Ends the transaction with the outcome already filled in."""


@dataclass
class WindowsUpdate:
    """The update transaction for one guest."""

    target: Target
    zone: tzinfo
    clock: Clock = field(default_factory=SystemClock)
    timing: Timing = field(default_factory=Timing)
    dry_run: bool = False
    _uploaded: set[str] = field(default_factory=set)
    _last: Precheck | None = None
    _left_alone: dict[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> UpdateSettings | None:
        return self.target.guest.update

    def run(self) -> UpdateOutcome:
        guest = self.target.guest
        outcome = UpdateOutcome(guest.name, guest.vmid)
        try:
            self._transaction(outcome)
        except _Stop:
            pass
        except NixmoxError as exc:
            outcome.result = "failed"
            kept = f"; snapshot {outcome.snapshot} kept" if outcome.snapshot else ""
            outcome.message = f"{exc}{kept}"
        return outcome

    # -- steps -----------------------------------------------------------------

    def _script(self, name: str, timeout: float, **params: str | bool) -> dict[str, Any]:
        agent = self.target.agent
        if not self._uploaded:
            prepare_guest_folder(agent)
        report = run_script(agent, name, params, timeout=timeout, upload=name not in self._uploaded)
        self._uploaded.add(name)
        if report.get("ok") is False:
            raise ScriptError(f"{name}.ps1: {report.get('error', 'failed')}")
        return report

    def _precheck(self) -> Precheck:
        busy = ",".join(busy_processes(self.settings))
        pre = Precheck.from_report(
            self._script("update-precheck", self.timing.script, BusyProcesses=busy)
        )
        self._last = pre
        return pre

    def _scan(self, outcome: UpdateOutcome) -> list[WindowsUpdateItem]:
        """What Windows Update offers; what the scripts leave alone is noted, not installed."""
        report = self._script("update-scan", self.timing.scan, **self._selection())
        for item in skipped(report):
            if item.kb not in self._left_alone:
                outcome.step(f"skipped {item.kb}: {item.title} ({item.reason or 'left alone'})")
            self._left_alone[item.kb] = item.reason or "left alone"
        return offered(report)

    def _skipped_note(self) -> str:
        """``; KB1 skipped (may ask for input)`` for the run's message, or nothing."""
        if not self._left_alone:
            return ""
        reasons = sorted(set(self._left_alone.values()))
        return f"; {', '.join(self._left_alone)} skipped ({', '.join(reasons)})"

    def _selection(self) -> dict[str, str | bool]:
        """Parameters that choose the updates (the same for the scan and the install)."""
        optional = bool(self.settings and self.settings.optional_updates)
        return {"IncludeOptional": True} if optional else {}

    def _wait_for_agent(self) -> bool:
        deadline = self.clock.monotonic() + self.timing.agent_wait
        while True:
            try:
                self.target.agent.ping()
                return True
            except AgentError:
                if self.clock.monotonic() >= deadline:
                    return False
            self.clock.sleep(self.timing.ping_every)

    def _verdict(self, pre: Precheck) -> RebootVerdict:
        return reboot_verdict(
            self.target.guest.reboot,
            now=self.clock.now(),
            zone=self.zone,
            busy=pre.busy,
            steam_downloading=pre.steam_downloading,
        )

    def _transaction(self, outcome: UpdateOutcome) -> None:
        target = self.target
        if not target.running():
            outcome.result = "skipped"
            outcome.message = "not running: Windows Update needs the VM up"
            raise _Stop
        if not self._wait_for_agent():
            outcome.result = "failed"
            outcome.message = (
                f"the guest agent did not answer within {self.timing.agent_wait:g} s; "
                "nothing changed"
            )
            raise _Stop
        pre = self._precheck()
        outcome.step(
            f"Windows {pre.build}, booted {pre.boot_time}, {pre.free_gb} GB free on C: "
            f"(via {target.via})"
        )
        if pre.file_renames:
            outcome.step(
                "PendingFileRenameOperations is set (antivirus, drivers or browsers; "
                "not counted as a pending reboot)"
            )
        blocker = precheck_blocker(pre)
        if blocker is not None:
            outcome.result, outcome.message = blocker
            raise _Stop
        if self.dry_run:
            self._plan(outcome, pre)
            raise _Stop
        if pre.reboot_pending:
            verdict = self._verdict(pre)
            if not verdict.allowed:
                self._held(outcome, verdict, before=True)
        if interrupt.stopping():
            outcome.result = "skipped"
            outcome.message = f"not started: interrupted by {interrupt.signal_name()}"
            raise _Stop
        name = update_snapshot_name(self.clock.now())
        target.snapshots.take(name)
        outcome.snapshot = name
        outcome.step(f"snapshot {name} taken (disk only)")
        self._rounds(outcome, pre)

    def _plan(self, outcome: UpdateOutcome, pre: Precheck) -> None:
        found = self._scan(outcome)
        verdict = self._verdict(pre)
        outcome.result = "dry-run"
        outcome.pending = len(found)
        for item in found:
            outcome.step(f"would install {item.kb}: {item.title}")
        reboot = (
            f"a reboot would be allowed now ({verdict.reason})"
            if verdict.allowed
            else f"a reboot would be held now ({verdict.reason})"
        )
        if not found:
            outcome.message = "nothing to install" + (
                f"; a reboot is pending and {reboot}" if pre.reboot_pending else ""
            )
            return
        kbs = ", ".join(i.kb for i in found)
        outcome.message = f"would install {plural(len(found), 'update')} ({kbs}); {reboot}"

    def _held(
        self, outcome: UpdateOutcome, verdict: RebootVerdict, *, before: bool = False
    ) -> None:
        outcome.result = "held"
        outcome.message = f"reboot pending, held: {verdict.reason}"
        outcome.pending = 1
        if outcome.snapshot:
            outcome.step(f"snapshot {outcome.snapshot} kept until the guest has rebooted")
        elif before:
            outcome.step("a reboot was already pending: nothing installed, no snapshot taken")
        raise _Stop

    def _rounds(self, outcome: UpdateOutcome, pre: Precheck) -> None:
        settings = self.settings
        max_rounds = settings.max_rounds if settings else 3
        rounds = reboots = 0
        installed: list[str] = []
        need_reboot = pre.reboot_pending
        left = 0
        while True:
            if interrupt.stopping():
                self._stopped(outcome, rounds, installed, need_reboot)
            if need_reboot:
                pre = self._precheck()
                verdict = self._verdict(pre)
                if not verdict.allowed:
                    self._held(outcome, verdict)
                self._reboot(outcome, pre, verdict)
                reboots += 1
                need_reboot = False
            found = self._scan(outcome)
            step = after_scan(rounds, max_rounds, len(found))
            if step == "done":
                break
            if step == "limit":
                left = len(found)
                outcome.step(f"{left} more offered after {max_rounds} rounds (update.max_rounds)")
                break
            rounds += 1
            outcome.step(f"round {rounds}: {', '.join(i.kb for i in found)}")
            report = self._script("update-install", self.timing.install, **self._selection())
            result = interpret_install(report)
            outcome.step(f"round {rounds}: {result.message}")
            if result.failed:
                self._failed(
                    outcome,
                    f"round {rounds}: {result.message}",
                    touched=result.touched,
                    earlier=bool(installed) or reboots > 0,
                )
            installed += result.installed
            need_reboot = result.reboot_required
        if rounds == 0 and reboots == 0:
            outcome.result = "unchanged"
            outcome.message = "no updates offered" + self._skipped_note()
            self._drop_snapshot(outcome)
            raise _Stop
        self._postcheck(outcome)
        outcome.result = "ok"
        outcome.pending = left
        if rounds == 0:
            outcome.message = "rebooted to finish the pending updates; nothing else offered"
        else:
            parts = [f"installed {plural(len(installed), 'update')}"]
            parts.append(f"{rounds} round{'s' * (rounds != 1)}")
            parts.append(f"{reboots} reboot{'s' * (reboots != 1)}")
            outcome.message = ", ".join(parts) + (f"; {left} more offered" if left else "")
        outcome.message += self._skipped_note()
        self._drop_snapshot(outcome)
        self._prune(outcome)

    def _stopped(
        self, outcome: UpdateOutcome, rounds: int, installed: list[str], need_reboot: bool
    ) -> None:
        """A stop request between two steps: no new round and no reboot; what was
        installed stays, and so does the snapshot (the next run takes it from there)."""
        why = f"interrupted by {interrupt.signal_name()}"
        outcome.result = "held" if installed or need_reboot else "skipped"
        outcome.pending = 1 if need_reboot else 0
        if installed:
            done = ", ".join(installed)
            outcome.message = f"{why} after {plural(rounds, 'round')}: installed {done}"
        else:
            outcome.message = f"{why} before any install"
        if need_reboot:
            outcome.message += "; a reboot is pending"
        outcome.message += f"; snapshot {outcome.snapshot} kept"
        outcome.step(outcome.message)
        raise _Stop

    def _reboot(self, outcome: UpdateOutcome, pre: Precheck, verdict: RebootVerdict) -> None:
        outcome.step(f"reboot ({verdict.reason}), booted {pre.boot_time} before")
        # The agent may go away before it reports the shutdown command's exit.
        with contextlib.suppress(AgentError):
            self.target.agent.exec(list(SHUTDOWN), timeout=self.timing.script)
        back = self._wait_back(pre.boot_time)
        if back is None:
            outcome.result = "failed"
            outcome.message = (
                f"the guest did not come back within {self.timing.reboot_wait:g} s of the reboot; "
                f"snapshot {outcome.snapshot} kept, nothing forced"
            )
            raise _Stop
        outcome.step(f"back after the reboot, booted {back.boot_time}")
        self._settle(outcome, back)

    def _settle(self, outcome: UpdateOutcome, pre: Precheck) -> None:
        """Wait (bounded) until servicing is idle and CBS is no longer pending after a boot."""
        deadline = self.clock.monotonic() + self.timing.settle_wait
        busy = still_servicing(pre)
        if busy is None:
            return
        outcome.step(f"waiting for Windows to finish servicing ({busy})")
        while busy is not None:
            if self.clock.monotonic() >= deadline:
                outcome.result = "held"
                outcome.pending = 1
                outcome.message = (
                    f"Windows still servicing {self.timing.settle_wait:g} s after the reboot "
                    f"({busy}): held; snapshot {outcome.snapshot} kept"
                )
                raise _Stop
            self.clock.sleep(self.timing.settle_every)
            with contextlib.suppress(AgentError, ScriptError):
                busy = still_servicing(self._precheck())
        outcome.step("servicing finished")

    def _wait_back(self, old_boot: str) -> Precheck | None:
        """Wait for the agent to answer three pings in a row with a new boot time."""
        deadline = self.clock.monotonic() + self.timing.reboot_wait
        streak = 0
        while self.clock.monotonic() < deadline:
            try:
                self.target.agent.ping()
                streak += 1
            except AgentError:
                streak = 0
            if streak >= self.timing.pings_in_a_row:
                try:
                    pre = self._precheck()
                except (AgentError, ScriptError):
                    pre = None
                if pre is not None and pre.boot_time != old_boot:
                    return pre
                streak = 0  # not gone down yet, or not fully up
            self.clock.sleep(self.timing.ping_every)
        return None

    def _postcheck(self, outcome: UpdateOutcome) -> None:
        report = self._script("update-postcheck", self.timing.script)
        for gpu in report.get("gpus") or ():
            msi = {True: "MSI on", False: "MSI off"}.get(gpu.get("msi"), "MSI unknown")
            outcome.step(f"GPU {gpu.get('name')}: problem code {gpu.get('problem_code')}, {msi}")
        rust = report.get("rust") or {}
        if rust.get("state_flags") is not None:
            state = "installed" if rust.get("installed") else "not fully installed"
            outcome.step(f"Rust: {state} (StateFlags {rust.get('state_flags')})")
        problems = postcheck_problems(report)
        if problems:
            self._failed(outcome, "; ".join(problems), touched=True, earlier=True)

    def _failed(self, outcome: UpdateOutcome, why: str, *, touched: bool, earlier: bool) -> None:
        """A failed round or postcheck: roll back only what the rules in
        :func:`~nixmox.windows.update_decisions.after_failure` allow."""
        running = self.target.running() if touched else True
        verdict = None
        if touched and running:
            pre = self._last
            with contextlib.suppress(AgentError, ScriptError):
                pre = self._precheck()  # what runs now decides a when-idle policy
            if pre is not None:
                verdict = self._verdict(pre)
        action = after_failure(touched=touched, earlier=earlier, running=running, verdict=verdict)
        if action.rollback:
            outcome.step(f"rolling back: {action.reason}")
            self._rollback(outcome, why)
        outcome.result = "failed"
        name = outcome.snapshot
        if not action.keep_snapshot and name is not None:
            self.target.snapshots.delete(name)
            outcome.step(f"snapshot {name} deleted")
            outcome.snapshot = None
            outcome.message = f"{why}; {action.reason}; snapshot {name} deleted"
        else:
            how = f" (roll back by hand: qm rollback {self.target.guest.vmid} {name})"
            outcome.message = f"{why}; {action.reason}; snapshot {name} kept" + (
                how if touched else ""
            )
        raise _Stop

    def _rollback(self, outcome: UpdateOutcome, why: str) -> None:
        name = outcome.snapshot
        assert name is not None
        try:
            self.target.snapshots.rollback(name)
        except NixmoxError as exc:
            outcome.result = "failed"
            outcome.message = f"{why}; rollback to snapshot {name} failed: {exc}"
            raise _Stop from None
        outcome.result = "rolled-back"
        outcome.rolled_back = True
        outcome.rollback = f"Proxmox snapshot {name} of VM {self.target.guest.vmid}"
        outcome.message = why
        outcome.step(f"rolled back to snapshot {name}")
        raise _Stop

    def _drop_snapshot(self, outcome: UpdateOutcome) -> None:
        name = outcome.snapshot
        if name is None:
            return
        if self.settings and self.settings.keep_snapshot:
            outcome.step(f"snapshot {name} kept (update.keep_snapshot)")
            return
        self.target.snapshots.delete(name)
        outcome.step(f"snapshot {name} deleted")
        outcome.snapshot = None

    def _prune(self, outcome: UpdateOutcome) -> None:
        settings = self.settings
        keep = settings.snapshots.rule() if settings and settings.snapshots else DEFAULT_KEEP
        try:
            gone = self.target.snapshots.prune(keep, self.zone)
        except NixmoxError as exc:
            outcome.step(f"pruning old update snapshots failed: {exc}")
            return
        for name in gone:
            outcome.step(f"old update snapshot {name} pruned")
