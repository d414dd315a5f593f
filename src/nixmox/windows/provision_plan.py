"""Pure decisions of `nixmox windows provision`: what each step found, what it must do.

The job (:mod:`nixmox.windows.provision`) reads facts in the guest through
check scripts, asks these functions what to do, acts, and reports one
:class:`StepResult` per step. Nothing here talks to a guest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nixmox.inventory.model import WindowsSettings
from nixmox.windows.guest_folder import folder_refusal, signature_problem
from nixmox.windows.keyvalues import AppManifest

STEAM_SETUP_URL = "https://cdn.cloudflare.steamstatic.com/client/installer/SteamSetup.exe"
STEAMCMD_URL = "https://steamcdn-a.akamaihd.net/client/installer/steamcmd.zip"
RUST_CLIENT = 252490
RUST_SERVER = 258550
STEAM_TASK = "nixmox-steam"
#: The logon task's priority: normal CPU, I/O and memory priority (the default, 7, is
#: below normal, and what Steam starts may inherit it).
TASK_PRIORITY = 4
#: steamcmd ``app_update ... validate`` runs before the server counts as not installable:
#: a first large download often ends "state is 0x602 after update job" and succeeds on retry.
STEAMCMD_ATTEMPTS = 3
#: Emulated display adapters' PCI vendors (virtio-gpu, QXL, bochs/std VGA, VMware,
#: Hyper-V): a disabled one next to a passed-through GPU is normal.
EMULATED_VENDORS = frozenset({"1AF4", "1B36", "1234", "15AD", "1414"})

STEPS = ("precheck", "drivers", "steam", "rust", "msi", "postcheck")


@dataclass(frozen=True)
class StepResult:
    """One step's outcome: the JSON line nixmox prints for it."""

    step: str
    ok: bool
    changed: bool
    detail: str
    skipped: bool = False
    #: A manual step is left to the user (not a failure).
    pending: bool = False
    #: The change takes effect after a reboot nixmox did not do.
    reboot: bool = False

    @property
    def outcome(self) -> str:
        """One word for the table: ok, changed, pending, skipped, failed."""
        if self.skipped:
            return "skipped"
        if not self.ok:
            return "failed"
        if self.pending:
            return "pending"
        return "changed" if self.changed else "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def depends_on(step: str, settings: WindowsSettings) -> tuple[str, ...]:
    """The earlier steps ``step`` needs to have succeeded."""
    if step == "precheck":
        return ()
    if step == "rust" and settings.rust == "client" and settings.steam:
        return ("precheck", "steam")
    return ("precheck",)


def blocked_by(step: str, settings: WindowsSettings, done: Sequence[StepResult]) -> str | None:
    """The first needed step that failed or was skipped, or None when ``step`` may run."""
    by_name = {r.step: r for r in done}
    for need in depends_on(step, settings):
        found = by_name.get(need)
        if found is None or not found.ok or found.skipped:
            return need
    return None


def skipped(step: str, because: str) -> StepResult:
    return StepResult(step, ok=False, changed=False, detail=f"{because} step failed", skipped=True)


def exit_code(results: Sequence[StepResult]) -> int:
    """0 when every step is ok (pending manual steps included), 1 otherwise."""
    return 0 if all(r.ok and not r.skipped for r in results) else 1


# ----------------------------------------------------------------- precheck


def precheck(status: str, osinfo: Mapping[str, Any]) -> StepResult:
    """The VM runs and its agent says Windows."""
    if status != "running":
        return StepResult("precheck", False, False, f"the VM is {status}: start it first")
    if osinfo.get("id") != "mswindows":
        name = osinfo.get("pretty-name") or osinfo.get("name") or "unknown"
        return StepResult("precheck", False, False, f"the guest runs {name}, not Windows")
    name = osinfo.get("pretty-name") or osinfo.get("name") or "Windows"
    build = osinfo.get("kernel-release")
    return StepResult(
        "precheck",
        True,
        False,
        f"{name}" + (f" build {build}" if build else "") + ", agent answers",
    )


# ------------------------------------------------------------------ drivers

VIRTIO_MEDIA = (
    "install them from the virtio-win ISO (virtio-win-gt-x64.msi and "
    "virtio-win-guest-tools.exe); nixmox has no driver media to install them"
)


def drivers(report: Mapping[str, Any]) -> StepResult:
    """virtio net and storage drivers present and the QEMU-GA service running.

    The balloon driver is only reported: a VM with a passed-through GPU pins
    all its memory, so ballooning does nothing there.
    """
    found = report.get("drivers") or {}
    missing = [kind for kind in ("net", "storage") if not found.get(kind)]
    service = str(report.get("agent_service") or "missing")
    problems = [f"no virtio {kind} driver" for kind in missing]
    if service.lower() != "running":
        problems.append(f"QEMU-GA service {service.lower()}")
    have = ", ".join(f"{kind}: {', '.join(found[kind])}" for kind in sorted(found) if found[kind])
    if problems:
        return StepResult("drivers", False, False, "; ".join(problems) + f"; {VIRTIO_MEDIA}")
    balloon = "" if found.get("balloon") else "; no balloon driver (unused with passthrough)"
    return StepResult("drivers", True, False, f"{have}; QEMU-GA running{balloon}")


# -------------------------------------------------------------------- steam


@dataclass(frozen=True)
class SteamFacts:
    """What ``provision-steam.ps1`` found."""

    installed: bool
    install_path: str | None
    task_user: str | None
    task_logon_type: str | None
    task_execute: str | None
    task_priority: int | None = None

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> SteamFacts:
        task = report.get("task") or {}
        priority = task.get("priority")
        return cls(
            installed=bool(report.get("installed")),
            install_path=report.get("install_path") or None,
            task_user=task.get("user") or None,
            task_logon_type=task.get("logon_type") or None,
            task_execute=task.get("execute") or None,
            task_priority=None if priority is None else int(priority),
        )

    @property
    def steam_exe(self) -> str | None:
        return f"{self.install_path}\\steam.exe" if self.install_path else None


def same_user(a: str | None, b: str | None) -> bool:
    """Windows account names compare without case and without a ``PC\\`` prefix."""
    if not a or not b:
        return False
    return a.rsplit("\\", 1)[-1].casefold() == b.rsplit("\\", 1)[-1].casefold()


def task_ok(facts: SteamFacts, user: str) -> bool:
    """The logon task starts Steam for ``user`` in their session (not as SYSTEM), at
    normal priority."""
    return (
        same_user(facts.task_user, user)
        and (facts.task_logon_type or "").casefold() == "interactive"
        and bool(facts.task_execute)
        and (facts.task_execute or "").casefold() == (facts.steam_exe or "").casefold()
        and facts.task_priority == TASK_PRIORITY
    )


def steam_actions(facts: SteamFacts, user: str) -> list[str]:
    """What the Steam step must do: ``install`` and/or ``task``."""
    actions = [] if facts.installed else ["install"]
    if not facts.installed or not task_ok(facts, user):
        actions.append("task")
    return actions


def describe_steam(actions: Sequence[str], user: str) -> str:
    words = {
        "install": "download SteamSetup.exe afresh and, signed by Valve, run it with /S "
        "(waiting for that installer only)",
        "task": f"register logon task {STEAM_TASK} starting Steam for {user}",
    }
    return "; ".join(words[a] for a in actions)


# --------------------------------------------------------------------- rust


def rust_client(manifest: AppManifest | None, user: str) -> StepResult:
    """The client is the user's to install: nixmox only reports where it stands."""
    if manifest is not None and manifest.fully_installed:
        return StepResult("rust", True, False, f"Rust client installed (build {manifest.buildid})")
    how = (
        f"sign in to Steam as {user} and install Rust (steam://install/{RUST_CLIENT}); "
        "nixmox cannot sign in to Steam as the user"
    )
    if manifest is None:
        return StepResult("rust", True, False, f"Rust client not installed: {how}", pending=True)
    return StepResult(
        "rust",
        True,
        False,
        f"Rust client {manifest.state()} (StateFlags {manifest.state_flags}): "
        "Steam finishes it while the user is signed in",
        pending=True,
    )


def steamcmd_update_argv(steamcmd_dir: str) -> list[str]:
    """steamcmd updating itself and nothing else.

    A fresh steamcmd updates itself on its first run and exits (often with code 7)
    before it reaches ``+app_update``: this run takes that first run.
    """
    return [f"{steamcmd_dir}\\steamcmd.exe", "+quit"]


def steamcmd_argv(steamcmd_dir: str, install_dir: str) -> list[str]:
    """steamcmd installing the dedicated server: ``+force_install_dir`` must precede ``+login``."""
    return [
        f"{steamcmd_dir}\\steamcmd.exe",
        "+force_install_dir",
        install_dir,
        "+login",
        "anonymous",
        "+app_update",
        str(RUST_SERVER),
        "validate",
        "+quit",
    ]


def steamcmd_refusal(directory: str, report: Mapping[str, Any]) -> str | None:
    """Why steamcmd must not run from ``directory`` as ``provision-steamcmd.ps1`` found
    it (another account may write there, or steamcmd.exe is not Valve's), or None."""
    folder = report.get("folder") or {}
    if folder.get("exists"):
        refusal = folder_refusal(directory, folder, purpose="runs steamcmd.exe from it")
        if refusal is not None:
            return refusal
    if report.get("present"):
        return signature_problem(f"{directory}\\steamcmd.exe", report.get("signature"))
    return None


def rust_server_installed(manifest: AppManifest | None) -> StepResult | None:
    """An unchanged result when the dedicated server is there already, else None."""
    if manifest is not None and manifest.fully_installed:
        return StepResult(
            "rust", True, False, f"Rust dedicated server installed (build {manifest.buildid})"
        )
    return None


# ---------------------------------------------------------------------- msi


def msi(report: Mapping[str, Any], *, check_only: bool) -> StepResult:
    """MSI mode on every function of the passed-through GPU (display and HDMI audio).

    ``report`` lists the functions as the script found them, before it acted.
    """
    if not report.get("ok", True):
        return StepResult("msi", False, False, str(report.get("detail") or "could not set MSI"))
    functions = list(report.get("functions") or [])
    if not functions:
        return StepResult("msi", True, False, "no passed-through GPU in the guest")
    off = [f for f in functions if not f.get("msi")]
    if not off:
        return StepResult("msi", True, False, f"MSI on for all {len(functions)} GPU functions")
    names = ", ".join(str(f.get("name") or f.get("id")) for f in off)
    if check_only:
        return StepResult("msi", True, True, f"would enable MSI on {names} (then a reboot)")
    return StepResult(
        "msi", True, True, f"enabled MSI on {names}: reboot needed to take effect", reboot=True
    )


# ---------------------------------------------------------------- postcheck

PROBLEM_CODES = {
    22: "disabled",
    28: "no driver installed",
    31: "driver failed to load",
    43: "code 43: the driver stopped the device (check x-vga, the ROM and the driver)",
}


def emulated(instance_id: str) -> bool:
    """Whether a ``PCI\\VEN_xxxx&...`` instance id is an emulated display adapter."""
    vendor = instance_id.upper().partition("VEN_")[2][:4]
    return vendor in EMULATED_VENDORS


def postcheck(
    gpus: Sequence[Mapping[str, Any]], rust: StepResult | None, *, reboot_pending: bool
) -> StepResult:
    """Passed-through GPU functions without a problem code, and where Rust stands.

    Emulated adapters do not count: the Microsoft Basic Display Adapter on the
    emulated VGA is often disabled (code 22) once the GPU is passed through.
    """
    gpus = [g for g in gpus if not emulated(str(g.get("id") or ""))]
    bad = [g for g in gpus if int(g.get("code") or 0) != 0]
    parts: list[str] = []
    for g in bad:
        code = int(g.get("code") or 0)
        parts.append(f"{g.get('name')}: {PROBLEM_CODES.get(code, f'problem code {code}')}")
    if not gpus:
        parts.append("no display adapter reported")
    elif not bad:
        parts.append(f"{', '.join(str(g.get('name')) for g in gpus)}: working")
    if rust is not None:
        parts.append(rust.detail)
    if reboot_pending:
        parts.append("reboot pending for MSI mode")
    ok = not bad and (rust is None or rust.ok)
    pending = rust is not None and rust.pending
    return StepResult("postcheck", ok, False, "; ".join(parts), pending=pending)
