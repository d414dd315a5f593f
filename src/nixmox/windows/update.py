"""`nixmox update windows`: Windows Update through the guest agent, one transaction per guest.

precheck (the VM runs, its agent answers within 5 minutes, Windows is not
servicing, C: has room) → disk-only Proxmox snapshot → rounds of scan →
install → reboot inside the guest when the reboot policy allows it (then wait
for the agent to go, come back three pings in a row, and report a new boot
time) → postcheck (no GPU with problem code 43) → the snapshot deleted (or
kept) and old update snapshots pruned. A failed install or a broken GPU rolls
the snapshot back and the run exits 1 naming it. A reboot the policy forbids
ends the run "reboot pending, held" with the snapshot kept. nixmox never
stops or resets the VM itself: a guest that does not come back is reported,
not forced.

The decisions (the reboot policy's verdict, what an install's result codes
mean, what the postcheck finds wrong, when the rounds stop) are pure
functions below; :class:`WindowsUpdate` is the transaction that acts on them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal, Protocol

from nixmox.calendar import window_open
from nixmox.errors import NixmoxError
from nixmox.inventory.model import Guest, RebootPolicy, UpdateSettings
from nixmox.proxmox.agent import AgentError, GuestAgent
from nixmox.retention import Keep
from nixmox.updates.guest_snapshots import DEFAULT_KEEP, update_snapshot_name
from nixmox.updates.outcome import Outcome, Result
from nixmox.windows.scripts import ScriptError, ensure_guest_dir, run_script

#: Processes that keep a reboot away under ``when-idle`` when the guest lists none.
DEFAULT_BUSY: tuple[str, ...] = ("RustClient.exe",)
#: Below this much free space on C: an update is not started.
MIN_FREE_GB = 10.0
SHUTDOWN = ("shutdown", "/r", "/t", "5")

# -- the guest's reports, as plain data ----------------------------------------


@dataclass(frozen=True)
class Precheck:
    """What update-precheck.ps1 reported."""

    build: str
    boot_time: str
    reboot_pending: bool = False
    reboot_reasons: tuple[str, ...] = ()
    servicing: tuple[str, ...] = ()
    free_gb: float | None = None
    busy: tuple[str, ...] = ()
    steam_downloading: bool = False

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> Precheck:
        free = report.get("free_gb")
        return cls(
            build=str(report.get("build", "?")),
            boot_time=str(report.get("boot_time", "")),
            reboot_pending=bool(report.get("reboot_pending")),
            reboot_reasons=tuple(str(r) for r in report.get("reboot_reasons") or ()),
            servicing=tuple(str(p) for p in report.get("servicing") or ()),
            free_gb=None if free is None else float(free),
            busy=tuple(str(p) for p in report.get("busy") or ()),
            steam_downloading=bool(report.get("steam_downloading")),
        )


@dataclass(frozen=True)
class WindowsUpdateItem:
    """One update Windows Update offers."""

    kb: str
    title: str
    reboot: bool = False

    @classmethod
    def from_report(cls, item: Mapping[str, Any]) -> WindowsUpdateItem:
        return cls(str(item.get("kb") or "-"), str(item.get("title", "")), bool(item.get("reboot")))


def offered(report: Mapping[str, Any]) -> list[WindowsUpdateItem]:
    """The updates update-scan.ps1 found."""
    return [WindowsUpdateItem.from_report(u) for u in report.get("updates") or ()]


# -- decisions -------------------------------------------------------------------

#: IUpdateInstaller ResultCode (OperationResultCode).
RESULT_CODES = {
    0: "not started",
    1: "in progress",
    2: "succeeded",
    3: "succeeded with errors",
    4: "failed",
    5: "aborted",
}


@dataclass(frozen=True)
class InstallVerdict:
    """What one install round means for the transaction."""

    failed: bool
    reboot_required: bool
    message: str
    installed: tuple[str, ...] = ()


def interpret_install(report: Mapping[str, Any]) -> InstallVerdict:
    """Read update-install.ps1's report: 2 and 3 installed (3 with some updates failing),
    anything else failed; a reboot is required only after something installed."""
    code = int(report.get("result_code", -1))
    stage = str(report.get("stage", "install"))
    items = report.get("updates") or ()
    ok_kbs = tuple(str(u.get("kb")) for u in items if int(u.get("result_code", code)) in (2, 3))
    bad_kbs = [str(u.get("kb")) for u in items if int(u.get("result_code", code)) not in (2, 3)]
    words = RESULT_CODES.get(code, f"result code {code}")
    if code not in (2, 3):
        what = "download" if stage == "download" else "install"
        hresult = report.get("hresult")
        detail = f" (HRESULT 0x{int(hresult) & 0xFFFFFFFF:08X})" if hresult else ""
        return InstallVerdict(True, False, f"{what} {words}{detail}")
    message = f"installed {len(ok_kbs)} update{'s' * (len(ok_kbs) != 1)}"
    if bad_kbs:
        message += f" ({', '.join(bad_kbs)} failed)"
    return InstallVerdict(False, bool(report.get("reboot_required")), message, ok_kbs)


@dataclass(frozen=True)
class RebootVerdict:
    """Whether the guest may be rebooted now, and why (not)."""

    allowed: bool
    reason: str


def reboot_verdict(
    policy: RebootPolicy,
    *,
    now: datetime,
    zone: tzinfo,
    busy: Sequence[str],
    steam_downloading: bool,
) -> RebootVerdict:
    """May the guest reboot now? ``busy``: the busy processes found running."""
    if policy.policy == "never":
        return RebootVerdict(False, "the reboot policy is never")
    if policy.policy == "allowed":
        return RebootVerdict(True, "the reboot policy allows it")
    if policy.policy == "window":
        if policy.window is None:
            return RebootVerdict(False, "the reboot policy is window, but no window is set")
        if window_open(policy.window, now, zone):
            return RebootVerdict(True, f"inside the reboot window {policy.window}")
        return RebootVerdict(False, f"outside the reboot window {policy.window}")
    # when-idle
    if busy:
        return RebootVerdict(False, f"{', '.join(busy)} running")
    if steam_downloading:
        return RebootVerdict(False, "Steam is downloading")
    return RebootVerdict(True, "the guest is idle")


def busy_processes(settings: UpdateSettings | None) -> list[str]:
    """The processes that make the guest busy (the guest's list, else RustClient.exe)."""
    return (
        list(settings.busy_processes) if settings and settings.busy_processes else [*DEFAULT_BUSY]
    )


def precheck_blocker(pre: Precheck, min_free_gb: float = MIN_FREE_GB) -> tuple[Result, str] | None:
    """Why an update must not start now, as (result, message); None when it may."""
    if pre.servicing:
        return "held", f"Windows is servicing ({', '.join(pre.servicing)} running): held"
    if pre.free_gb is not None and pre.free_gb < min_free_gb:
        return "failed", f"only {pre.free_gb:g} GB free on C: (needs {min_free_gb:g})"
    return None


def postcheck_problems(report: Mapping[str, Any]) -> list[str]:
    """What update-postcheck.ps1 found broken: a GPU with problem code 43."""
    problems = []
    for gpu in report.get("gpus") or ():
        if int(gpu.get("problem_code") or 0) == 43:
            problems.append(f"GPU {gpu.get('name', '?')} reports problem code 43")
    return problems


Step = Literal["install", "done", "limit"]


def after_scan(rounds_done: int, max_rounds: int, found: int) -> Step:
    """After a scan: install another round, stop because nothing is left, or at the limit."""
    if found == 0:
        return "done"
    return "install" if rounds_done < max_rounds else "limit"


# -- the transaction -------------------------------------------------------------


class Clock(Protocol):
    """Time as the transaction sees it (injected in tests)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)


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

    @property
    def settings(self) -> UpdateSettings | None:
        return self.target.guest.update

    def run(self) -> Outcome:
        guest = self.target.guest
        outcome = Outcome(guest.name, guest.vmid)
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

    def _script(self, name: str, timeout: float, **params: str) -> dict[str, Any]:
        agent = self.target.agent
        if not self._uploaded:
            ensure_guest_dir(agent)
        report = run_script(agent, name, params, timeout=timeout, upload=name not in self._uploaded)
        self._uploaded.add(name)
        if report.get("ok") is False:
            raise ScriptError(f"{name}.ps1: {report.get('error', 'failed')}")
        return report

    def _precheck(self) -> Precheck:
        busy = ",".join(busy_processes(self.settings))
        return Precheck.from_report(
            self._script("update-precheck", self.timing.script, BusyProcesses=busy)
        )

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

    def _transaction(self, outcome: Outcome) -> None:
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
        name = update_snapshot_name(self.clock.now())
        target.snapshots.take(name)
        outcome.snapshot = name
        outcome.step(f"snapshot {name} taken (disk only)")
        self._rounds(outcome, pre)

    def _plan(self, outcome: Outcome, pre: Precheck) -> None:
        found = offered(self._script("update-scan", self.timing.scan))
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
        outcome.message = (
            f"would install {len(found)} update{'s' * (len(found) != 1)} ({kbs}); {reboot}"
        )

    def _held(self, outcome: Outcome, verdict: RebootVerdict, *, before: bool = False) -> None:
        outcome.result = "held"
        outcome.message = f"reboot pending, held: {verdict.reason}"
        outcome.pending = 1
        if outcome.snapshot:
            outcome.step(f"snapshot {outcome.snapshot} kept until the guest has rebooted")
        elif before:
            outcome.step("a reboot was already pending: nothing installed, no snapshot taken")
        raise _Stop

    def _rounds(self, outcome: Outcome, pre: Precheck) -> None:
        settings = self.settings
        max_rounds = settings.max_rounds if settings else 3
        rounds = reboots = 0
        installed: list[str] = []
        need_reboot = pre.reboot_pending
        left = 0
        while True:
            if need_reboot:
                pre = self._precheck()
                verdict = self._verdict(pre)
                if not verdict.allowed:
                    self._held(outcome, verdict)
                self._reboot(outcome, pre, verdict)
                reboots += 1
                need_reboot = False
            found = offered(self._script("update-scan", self.timing.scan))
            step = after_scan(rounds, max_rounds, len(found))
            if step == "done":
                break
            if step == "limit":
                left = len(found)
                outcome.step(f"{left} more offered after {max_rounds} rounds (update.max_rounds)")
                break
            rounds += 1
            outcome.step(f"round {rounds}: {', '.join(i.kb for i in found)}")
            report = self._script("update-install", self.timing.install)
            result = interpret_install(report)
            outcome.step(f"round {rounds}: {result.message}")
            if result.failed:
                self._rollback(outcome, f"round {rounds}: {result.message}")
            installed += result.installed
            need_reboot = result.reboot_required
        if rounds == 0 and reboots == 0:
            outcome.result = "unchanged"
            outcome.message = "no updates offered"
            self._drop_snapshot(outcome)
            raise _Stop
        self._postcheck(outcome)
        outcome.result = "ok"
        outcome.pending = left
        if rounds == 0:
            outcome.message = "rebooted to finish the pending updates; nothing else offered"
        else:
            parts = [f"installed {len(installed)} update{'s' * (len(installed) != 1)}"]
            parts.append(f"{rounds} round{'s' * (rounds != 1)}")
            parts.append(f"{reboots} reboot{'s' * (reboots != 1)}")
            outcome.message = ", ".join(parts) + (f"; {left} more offered" if left else "")
        self._drop_snapshot(outcome)
        self._prune(outcome)

    def _reboot(self, outcome: Outcome, pre: Precheck, verdict: RebootVerdict) -> None:
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

    def _postcheck(self, outcome: Outcome) -> None:
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
            self._rollback(outcome, "; ".join(problems))

    def _rollback(self, outcome: Outcome, why: str) -> None:
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

    def _drop_snapshot(self, outcome: Outcome) -> None:
        name = outcome.snapshot
        if name is None:
            return
        if self.settings and self.settings.keep_snapshot:
            outcome.step(f"snapshot {name} kept (update.keep_snapshot)")
            return
        self.target.snapshots.delete(name)
        outcome.step(f"snapshot {name} deleted")
        outcome.snapshot = None

    def _prune(self, outcome: Outcome) -> None:
        settings = self.settings
        keep = settings.snapshots.rule() if settings and settings.snapshots else DEFAULT_KEEP
        try:
            gone = self.target.snapshots.prune(keep, self.zone)
        except NixmoxError as exc:
            outcome.step(f"pruning old update snapshots failed: {exc}")
            return
        for name in gone:
            outcome.step(f"old update snapshot {name} pruned")
