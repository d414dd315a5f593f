"""Pure decisions of `nixmox update windows`, on the plain data the guest's scripts report.

The reports as data (:class:`Precheck`, offered updates), what an install's
result codes mean, the reboot policy's verdict, what the postcheck finds
wrong, and when the rounds stop; :mod:`nixmox.windows.update` acts on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from nixmox.inventory.model import RebootPolicy, UpdateSettings
from nixmox.rules.window import window_open
from nixmox.updates.outcome import UpdateResult

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


def precheck_blocker(
    pre: Precheck, min_free_gb: float = MIN_FREE_GB
) -> tuple[UpdateResult, str] | None:
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
