"""A scripted Windows guest agent for the lab: what `update windows` meets in a guest.

Nothing runs. The state below stands for the Windows inside VM 102: its build
and boot time, the updates Windows Update offers, what installing them does,
what runs (a game, Windows servicing, a Steam download) and the GPU's state.
Each packaged script nixmox runs through the agent (decoded from the
``-EncodedCommand`` of the wrapper that runs it, see :mod:`tests.windows_exec`)
is answered with the JSON line the real script prints for that state, and
running it changes the state as Windows would:
installing consumes the offered updates and may leave a reboot pending;
``shutdown.exe /r /t 5`` makes the agent go away for a few calls and come back
with a new boot time and the next batch of updates.

Where Windows' answer depends on what the script asks, it is read from the
script text nixmox wrote into the guest (its ``file-write``), as Windows would
run it: the search criteria (``BrowseOnly=0`` leaves optional updates out),
whether updates that ``CanRequestUserInput`` are skipped, and whether the boot
time is formatted with the invariant culture or the guest's own time separator.

What real Windows does that the lab models:

- optional (``browse_only``) updates, found only by a search without
  ``BrowseOnly=0``; updates that may ask for input (``input``), which block an
  install in session 0 unless skipped;
- a failed download (``fail_downloads``): nothing installed, result code 4;
  an aborted install where some updates installed (``install_codes`` as
  ``(code, [per-update codes])``);
- ``PendingFileRenameOperations`` that stays set across reboots
  (``file_renames``);
- servicing still busy after a boot (``settling_prechecks``: that many
  prechecks after each reboot see TiWorker and CBS RebootPending);
- a localized time separator (``time_separator``), a UTF-8 BOM before the
  output (``bom``), and PowerShell in ConstrainedLanguage mode
  (``language_mode``, Smart App Control);
- nixmox's folder as a standard user may have left it (``folders``: created
  first by someone else, or by an older nixmox without cutting inheritance),
  and a script rewritten after nixmox wrote it (``folders.swapped``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from fakepve import PveError

from nixmox.windows.scripts import script_in_guest, script_text
from tests.windows_exec import Folders, decode

FIRST_BOOT = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)


def update(
    kb: str,
    title: str | None = None,
    *,
    reboot: bool = True,
    browse_only: bool = False,
    asks_input: bool = False,
) -> dict[str, Any]:
    """One update as Windows Update holds it (``browse_only``: optional; ``asks_input``:
    its InstallationBehavior.CanRequestUserInput)."""
    found: dict[str, Any] = {
        "kb": kb,
        "title": title or f"2026-11 Cumulative Update for Windows 11 Version 24H2 ({kb})",
        "size_mb": 812.0,
        "reboot": reboot,
    }
    if browse_only:
        found["browse_only"] = True
    if asks_input:
        found["input"] = True
    return found


def _listed(u: dict[str, Any]) -> dict[str, Any]:
    """An update as the scripts print it (without the lab's own flags)."""
    return {k: v for k, v in u.items() if k not in ("browse_only", "input")}


def _iso(at: dt.datetime, separator: str = ":") -> str:
    return at.astimezone(dt.UTC).strftime(f"%Y-%m-%dT%H{separator}%M{separator}%SZ")


@dataclass
class WindowsAgent:
    """The scripted state of one Windows guest (see the module docstring)."""

    build: str = "10.0.26100.2314"
    boot_time: dt.datetime = field(
        default_factory=lambda: dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
    )
    #: What Windows Update offers now, and the batches it offers after each later reboot.
    available: list[dict[str, Any]] = field(default_factory=list)
    after_reboot: list[list[dict[str, Any]]] = field(default_factory=list)
    #: Installing leaves a reboot pending.
    reboot_required: bool = True
    #: ResultCodes of the next installs (2 succeeded, 3 with errors, 4 failed, 5 aborted),
    #: or (code, per-update codes); then 2. A code-4 install leaves nothing installed.
    install_codes: list[int | tuple[int, list[int]]] = field(default_factory=list)
    #: The next installs that fail while downloading (nothing installed).
    fail_downloads: int = 0
    reboot_pending: bool = False
    #: PendingFileRenameOperations set (by antivirus, say): it survives reboots.
    file_renames: bool = False
    #: Prechecks after each reboot that still see servicing busy (TiWorker, CBS pending).
    settling_prechecks: int = 0
    settling_left: int = 0
    #: The guest culture's time separator (Finnish: ".").
    time_separator: str = ":"
    #: Output starts with a UTF-8 byte order mark (the "Beta: UTF-8 worldwide" setting).
    bom: bool = False
    language_mode: str = "FullLanguage"
    #: Processes running in the guest (precheck reports those nixmox asked about).
    processes: list[str] = field(default_factory=list)
    servicing: list[str] = field(default_factory=list)
    steam_downloading: bool = False
    free_gb: float = 141.7
    #: The GPU's problem code now, and the one it has after the next install (43: driver gave up).
    gpu_problem: int = 0
    gpu_problem_after_install: int | None = None
    rust_state_flags: int | None = 4
    #: Agent calls answered "not running" after a reboot starts; None: it never comes back.
    away_calls: int | None = 3
    away_left: int = 0
    gone: bool = False
    reboots: int = 0
    #: What ran, in order: script names (``update-scan``), ``shutdown``, or the joined argv.
    ran: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    folders: Folders = field(default_factory=Folders)

    @classmethod
    def demo(cls) -> WindowsAgent:
        """The lab's default: two updates waiting, one needs a reboot, nobody playing."""
        return cls(
            available=[
                update("KB5046617"),
                update(
                    "KB890830",
                    "Windows Malicious Software Removal Tool x64 - v5.130 (KB890830)",
                    reboot=False,
                ),
            ]
        )

    # -------------------------------------------------------------- agent API

    def respond(self, command: str, values: dict[str, Any], argv: list[str] | None) -> Any:
        """A lab agent responder (``Lab.agent_responders``): the API's data, or None to let
        fakepve's answer (or another responder's) stand.

        fakepve has already recorded the call and handed out the exec pid; the
        command runs here when its status is asked (the first exited answer is
        the only one, as with PVE).
        """
        if self.gone or self.away_left:
            # Rebooting: every call fails, and each one brings the agent nearer.
            self.away_left = max(0, self.away_left - 1)
            raise PveError(500, "QEMU guest agent is not running")
        if command == "exec-status" and argv is not None:
            status = self._run(argv)
            if status is not None and _is_shutdown(argv) and "/r" in argv:
                # `shutdown /r /t 5` returns at once; Windows goes down a few seconds later.
                self._reboot()
            return status
        if command == "file-write":
            path = str(values["file"])
            if not self.folders.exists(path.rsplit("\\", 1)[0]):
                # The agent opens the file but cannot create its directory.
                raise PveError(500, f"Agent error: failed to open file '{path}' (error: 3)")
            self.files[path] = str(values.get("content", ""))
            return None
        if command == "file-read" and str(values["file"]) in self.files:
            return {"content": self.files[str(values["file"])], "truncated": False}
        return None

    def _run(self, argv: list[str]) -> dict[str, Any] | None:
        decoded = decode(argv)
        if decoded is not None:
            name, values = decoded
            if name == "guest-folder":
                # Not counted in `ran`: it only prepares the upload.
                report = self.folders.guest_folder(values, script_text(name))
                return _exited(0 if report["ok"] else 1, json.dumps(report) + "\r\n")
            verified = self.folders.run_verified(values, self.files)
            if isinstance(verified, dict):
                self.ran.append("refused")
                return verified
            name, params = verified
            if not name.startswith("update-"):
                return None  # another feature's script
            self.ran.append(name)
            report = self._script(name, params)
            out = ("\ufeff" if self.bom else "") + json.dumps(report) + "\r\n"
            return _exited(0 if report.get("ok", True) else 1, out)
        if _is_shutdown(argv):
            self.ran.append("shutdown")
            return _exited(0, "")
        return None

    def _script_says(self, name: str, text: str) -> bool:
        """Whether the script nixmox wrote for ``name`` contains ``text``."""
        return text in self.files.get(script_in_guest(name), "")

    def _boot(self, name: str) -> str:
        invariant = self._script_says(name, "InvariantCulture")
        return _iso(self.boot_time, ":" if invariant else self.time_separator)

    def _search(self, name: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        """(what the script installs, what it skips) of the updates Windows offers."""
        optional = "IncludeOptional" in params or not self._script_says(name, "BrowseOnly=0")
        found = [u for u in self.available if optional or not u.get("browse_only")]
        if not self._script_says(name, "CanRequestUserInput"):
            return found, []
        skipped = [
            {"kb": u["kb"], "title": u["title"], "reason": "may ask for input"}
            for u in found
            if u.get("input")
        ]
        return [u for u in found if not u.get("input")], skipped

    def _reboot(self) -> None:
        self.reboots += 1
        self.reboot_pending = False
        self.settling_left = self.settling_prechecks
        self.boot_time = self.boot_time + dt.timedelta(hours=1, minutes=self.reboots)
        self.available = self.after_reboot.pop(0) if self.after_reboot else []
        if self.away_calls is None:
            self.gone = True
        else:
            self.away_left = self.away_calls

    # ---------------------------------------------------------------- scripts

    def _script(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        if name == "update-precheck":
            asked = [p for p in params.get("BusyProcesses", "").split(",") if p]
            running = {p.lower() for p in self.processes}
            reasons = ["WindowsUpdate RebootRequired"] if self.reboot_pending else []
            servicing = list(self.servicing)
            if self.settling_left:
                # Just booted: servicing finishes what the updates staged.
                self.settling_left -= 1
                servicing.append("TiWorker")
                reasons.insert(0, "CBS RebootPending")
            return {
                "ok": True,
                "build": self.build,
                "boot_time": self._boot(name),
                "reboot_pending": bool(reasons),
                "reboot_reasons": reasons,
                "pending_file_renames": self.file_renames,
                "servicing": servicing,
                "free_gb": self.free_gb,
                "busy": [p for p in asked if p.lower() in running],
                "steam_downloading": self.steam_downloading,
                "language_mode": self.language_mode,
            }
        if name == "update-scan":
            found, skipped = self._search(name, params)
            listed = [_listed(u) for u in found]
            return {"ok": True, "count": len(listed), "updates": listed, "skipped": skipped}
        if name == "update-install":
            done, skipped = self._search(name, params)
            if not done:
                return {"ok": True, "stage": "install", "result_code": 2, "hresult": 0,
                        "reboot_required": False, "updates": [], "skipped": skipped}  # fmt: skip
            if self.fail_downloads:
                self.fail_downloads -= 1
                # WU_E_PT_HTTP_STATUS_NOT_FOUND-like: the download failed, nothing installed.
                return {"ok": True, "stage": "download", "result_code": 4,
                        "hresult": -2145844844, "reboot_required": False, "updates": [],
                        "skipped": skipped}  # fmt: skip
            planned = self.install_codes.pop(0) if self.install_codes else 2
            code, each = planned if isinstance(planned, tuple) else (planned, [planned] * len(done))
            installed = [u for u, c in zip(done, each, strict=False) if c in (2, 3)]
            self.available = [u for u in self.available if u not in installed]
            if installed:
                self.reboot_pending = self.reboot_pending or self.reboot_required
            if self.gpu_problem_after_install is not None:
                self.gpu_problem = self.gpu_problem_after_install
            return {
                "ok": True,
                "stage": "install",
                "result_code": code,
                "hresult": 0 if code == 2 else -2145124329,
                "reboot_required": bool(installed) and self.reboot_required,
                "updates": [
                    {"kb": u["kb"], "title": u["title"], "result_code": c}
                    for u, c in zip(done, each, strict=False)
                ],
                "skipped": skipped,
            }
        if name == "update-postcheck":
            gpu = {
                "name": "NVIDIA GeForce RTX 3060",
                "instance_id": "PCI\\VEN_10DE&DEV_2504&SUBSYS_397D1458&REV_A1\\4&1B5F2E2C&0&0008",
                "status": "OK" if self.gpu_problem == 0 else "Error",
                "problem_code": self.gpu_problem,
                "msi": True,
            }
            rust: dict[str, Any] = {"installed": False, "state_flags": None}
            if self.rust_state_flags is not None:
                rust = {
                    "installed": self.rust_state_flags == 4,
                    "state_flags": self.rust_state_flags,
                    "manifest": "C:\\Program Files (x86)\\Steam\\steamapps\\appmanifest_252490.acf",
                }
            return {"ok": True, "boot_time": self._boot(name), "gpus": [gpu], "rust": rust}
        return {"ok": False, "error": f"the lab's Windows agent has no answer for {name}.ps1"}


def _is_shutdown(argv: list[str]) -> bool:
    return argv[0].lower().rsplit("\\", 1)[-1] in ("shutdown", "shutdown.exe")


def _exited(code: int, out: str) -> dict[str, Any]:
    return {"exited": 1, "exitcode": code, "out-data": out, "err-data": ""}
