"""Pure decisions of `nixmox update windows`, on the plain data the guest's scripts report.

The reports as data (:class:`Precheck`, offered updates), what an install's
result codes mean, the reboot policy's verdict, what the postcheck finds
wrong, and when the rounds stop; :mod:`nixmox.windows.update` acts on them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from nixmox.core.words import plural
from nixmox.inventory.model import RebootPolicy, UpdateSettings
from nixmox.rules.window import window_open
from nixmox.updates.outcome import UpdateResult

#: Processes that keep a reboot away under ``when-idle`` when the guest lists none.
DEFAULT_BUSY: tuple[str, ...] = ("RustClient.exe",)
#: Below this much free space on C: an update is not started.
MIN_FREE_GB = 10.0
#: By full path: a ``shutdown.exe`` earlier on SYSTEM's PATH must not be the one that runs.
SHUTDOWN = ("C:\\Windows\\System32\\shutdown.exe", "/r", "/t", "5")
#: The one pending-reboot flag that also means Windows is still servicing after a boot.
CBS_PENDING = "CBS RebootPending"
#: PowerShell's language mode under Smart App Control or App Control for Business.
CONSTRAINED = "ConstrainedLanguage"

# A culture's own time separator (``06.00.00``) in place of ``:``, as an older
# script formatting with the current culture printed it.
_BOOT_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2})\D(\d{2})\D(\d{2})Z")


def boot_time_text(text: str) -> str:
    """A reported boot time as ``YYYY-MM-DDTHH:MM:SSZ`` whatever time separator it came with."""
    m = _BOOT_TIME.fullmatch(text.strip())
    return f"{m[1]}T{m[2]}:{m[3]}:{m[4]}Z" if m else text.strip()


# -- the guest's reports, as plain data ----------------------------------------


@dataclass(frozen=True)
class Precheck:
    """What update-precheck.ps1 reported.

    ``reboot_pending`` counts only CBS ``RebootPending``, Windows Update's
    ``RebootRequired`` and ``SystemInfo.RebootRequired``; ``file_renames``
    (``PendingFileRenameOperations``) is information only: antivirus, browsers
    and drivers fill it, and it can survive reboots.
    """

    build: str
    boot_time: str
    reboot_pending: bool = False
    reboot_reasons: tuple[str, ...] = ()
    servicing: tuple[str, ...] = ()
    free_gb: float | None = None
    busy: tuple[str, ...] = ()
    steam_downloading: bool = False
    file_renames: bool = False
    language_mode: str | None = None

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> Precheck:
        free = report.get("free_gb")
        mode = report.get("language_mode")
        return cls(
            build=str(report.get("build", "?")),
            boot_time=boot_time_text(str(report.get("boot_time", ""))),
            reboot_pending=bool(report.get("reboot_pending")),
            reboot_reasons=tuple(str(r) for r in report.get("reboot_reasons") or ()),
            servicing=tuple(str(p) for p in report.get("servicing") or ()),
            free_gb=None if free is None else float(free),
            busy=tuple(str(p) for p in report.get("busy") or ()),
            steam_downloading=bool(report.get("steam_downloading")),
            file_renames=bool(report.get("pending_file_renames")),
            language_mode=None if mode is None else str(mode),
        )


@dataclass(frozen=True)
class WindowsUpdateItem:
    """One update Windows Update offers."""

    kb: str
    title: str
    reboot: bool = False
    #: Why the scripts leave it alone (``may ask for input``), for a skipped one.
    reason: str = ""

    @classmethod
    def from_report(cls, item: Mapping[str, Any]) -> WindowsUpdateItem:
        return cls(
            str(item.get("kb") or "-"),
            str(item.get("title", "")),
            bool(item.get("reboot")),
            str(item.get("reason") or ""),
        )


def offered(report: Mapping[str, Any]) -> list[WindowsUpdateItem]:
    """The updates update-scan.ps1 found and update-install.ps1 would install."""
    return [WindowsUpdateItem.from_report(u) for u in report.get("updates") or ()]


def skipped(report: Mapping[str, Any]) -> list[WindowsUpdateItem]:
    """The updates the scripts leave alone: those that may ask for input in session 0,
    where nobody answers."""
    return [WindowsUpdateItem.from_report(u) for u in report.get("skipped") or ()]


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
    #: Whether the guest may have changed: something installed, or a failed install
    #: that does not say per update what it did. A failed download changed nothing.
    touched: bool = False


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
        # Windows undoes an update whose own install failed; one that reports 2 or 3
        # stays, and an answer without per-update codes may have left anything.
        touched = what == "install" and (bool(ok_kbs) or not items)
        if ok_kbs:
            detail += f" after {', '.join(ok_kbs)} installed"
        return InstallVerdict(True, False, f"{what} {words}{detail}", ok_kbs, touched)
    message = f"installed {plural(len(ok_kbs), 'update')}"
    if bad_kbs:
        message += f" ({', '.join(bad_kbs)} failed)"
    return InstallVerdict(False, bool(report.get("reboot_required")), message, ok_kbs, True)


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


def precheck_blocker(
    pre: Precheck, min_free_gb: float = MIN_FREE_GB
) -> tuple[UpdateResult, str] | None:
    """Why an update must not start now, as (result, message); None when it may."""
    if pre.language_mode == CONSTRAINED:
        return "failed", (
            "PowerShell runs in ConstrainedLanguage mode in the guest (Smart App Control or "
            "App Control for Business): the Windows Update COM objects cannot be used; "
            "nothing changed"
        )
    if pre.servicing:
        return "held", f"Windows is servicing ({', '.join(pre.servicing)} running): held"
    if pre.free_gb is not None and pre.free_gb < min_free_gb:
        return "failed", f"only {pre.free_gb:g} GB free on C: (needs {min_free_gb:g})"
    return None


def still_servicing(pre: Precheck) -> str | None:
    """What keeps Windows busy after a boot (servicing processes, CBS still pending), or None.

    Scanning or installing then fails, so the rounds wait for it to settle.
    """
    busy = list(pre.servicing)
    if CBS_PENDING in pre.reboot_reasons:
        busy.append(CBS_PENDING)
    return ", ".join(busy) or None


@dataclass(frozen=True)
class AfterFailure:
    """What a failed install round or postcheck does with the pre-update snapshot."""

    rollback: bool
    keep_snapshot: bool
    reason: str


def after_failure(
    *, touched: bool, earlier: bool, running: bool, verdict: RebootVerdict | None
) -> AfterFailure:
    """Roll back only when the failure changed the guest, and never stop a running VM
    the reboot policy protects: PVE rolls a running VM back by stopping it hard.

    ``touched``: the failing round installed something (or the postcheck failed);
    ``earlier``: earlier rounds of this run installed updates; ``verdict``: the
    reboot policy's verdict now (None when it could not be asked).
    """
    if not touched:
        if earlier:
            return AfterFailure(
                False, True, "nothing installed in this round, no rollback of the earlier rounds"
            )
        return AfterFailure(False, False, "nothing was installed, no rollback")
    if not running:
        return AfterFailure(True, True, "the VM is not running")
    if verdict is not None and verdict.allowed:
        return AfterFailure(True, True, f"the rollback stops the VM: {verdict.reason}")
    why = verdict.reason if verdict is not None else "the reboot policy could not be asked"
    return AfterFailure(False, True, f"not rolled back: that stops the running VM and {why}")


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
