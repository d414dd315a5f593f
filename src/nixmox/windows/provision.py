"""`nixmox windows provision`: a Windows guest set up through its agent, idempotently.

Each step reads the guest's state with a packaged check script (or a file
read), lets :mod:`nixmox.windows.provision_plan` decide, and acts only on a
gap. Installers run through the agent as SYSTEM: ``SteamSetup.exe /S`` from a
wrapper script that waits for the installer alone (and stops a Steam it left
running as SYSTEM), ``steamcmd.exe`` directly; what must run as the user (the
Steam client) gets a logon scheduled task instead. With ``dry_run`` only the check
halves run (scripts get ``-CheckOnly``); the scripts themselves are still
written to ``C:\\ProgramData\\nixmox``, nixmox's own folder in the guest.

Nothing another account in the guest could have put there runs as SYSTEM: the
folder is checked first (:func:`~nixmox.windows.scripts.prepare_guest_folder`),
``SteamSetup.exe`` is downloaded afresh under a new name each time and runs only
with a valid signature by Valve, and steamcmd runs only from a folder no one
else may write, with a valid signature by Valve.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nixmox.adapters.guest_agent import AgentError, GuestAgent
from nixmox.adapters.guest_agent.via_api import ApiAgent
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path, guest_status
from nixmox.core.errors import NixmoxError
from nixmox.inventory.model import Guest, WindowsSettings
from nixmox.windows import provision_plan as plan
from nixmox.windows.guest_folder import VALVE, signature_problem
from nixmox.windows.keyvalues import AppManifest, library_of, parse_manifest
from nixmox.windows.provision_plan import StepResult
from nixmox.windows.scripts import GUEST_DIR, prepare_guest_folder, run_script

#: The accepted signers as the scripts take them.
SIGNERS = "|".join(VALVE)
#: Seconds an installer may run through the agent.
STEAM_SETUP_TIMEOUT = 1800.0
STEAMCMD_TIMEOUT = 4 * 3600.0
STEAMCMD_UPDATE_TIMEOUT = 900.0


@dataclass
class ProvisionJob:
    """Provision the Windows VM ``guest`` on ``api``'s host."""

    api: Proxmox
    guest: Guest
    dry_run: bool = False
    agent: GuestAgent | None = None
    _uploaded: set[str] = field(default_factory=set, init=False, repr=False)
    _steam: plan.SteamFacts | None = field(default=None, init=False, repr=False)
    _results: list[StepResult] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.agent is None:
            self.agent = ApiAgent(self.api, self.guest.node, self.guest.vmid)

    @property
    def settings(self) -> WindowsSettings:
        return self.guest.windows or WindowsSettings()

    @property
    def user(self) -> str:
        return self.settings.user or ""

    @property
    def _agent(self) -> GuestAgent:
        assert self.agent is not None
        return self.agent

    def run(self) -> list[StepResult]:
        """Every step in order; a step whose prerequisite failed is skipped."""
        steps: dict[str, Callable[[], StepResult]] = {
            "precheck": self.precheck,
            "drivers": self.drivers,
            "steam": self.steam,
            "rust": self.rust,
            "msi": self.msi,
            "postcheck": self.postcheck,
        }
        results = self._results = []
        for name in plan.STEPS:
            need = plan.blocked_by(name, self.settings, results)
            if need is not None:
                results.append(plan.skipped(name, need))
                continue
            try:
                results.append(steps[name]())
            except NixmoxError as exc:
                results.append(StepResult(name, False, False, str(exc)))
        return results

    # ------------------------------------------------------------- helpers

    def _script(
        self,
        name: str,
        params: dict[str, str | int | bool] | None = None,
        *,
        timeout: float = 600.0,
    ) -> Any:
        report = run_script(
            self._agent, name, params, timeout=timeout, upload=name not in self._uploaded
        )
        self._uploaded.add(name)
        return report

    def _steam_facts(self) -> plan.SteamFacts:
        report = self._script("provision-steam", {"TaskName": plan.STEAM_TASK})
        self._steam = plan.SteamFacts.from_report(report)
        return self._steam

    def _manifest(self, library: str, appid: int) -> AppManifest | None:
        """The app manifest in ``library``, None when there is none."""
        text = self._read(f"{library}\\steamapps\\appmanifest_{appid}.acf")
        return parse_manifest(text) if text else None

    def _read(self, path: str) -> str:
        """A guest file's text, empty when it cannot be read (PVE: the open fails)."""
        try:
            return self._agent.file_read(path)
        except AgentError:
            return ""

    def _client_library(self, install_path: str) -> str:
        folders = self._read(f"{install_path}\\steamapps\\libraryfolders.vdf")
        return (library_of(folders, plan.RUST_CLIENT) if folders else None) or install_path

    # --------------------------------------------------------------- steps

    def precheck(self) -> StepResult:
        node, vmid = self.guest.node, self.guest.vmid
        status = str(guest_status(self.api, node, "qemu", vmid).get("status"))
        if status != "running":
            return plan.precheck(status, {})
        self._agent.ping()
        answer = self.api.get(f"{guest_path(node, 'qemu', vmid)}/agent/get-osinfo") or {}
        result = plan.precheck(status, answer.get("result") or {})
        if result.ok:
            prepare_guest_folder(self._agent)
        return result

    def drivers(self) -> StepResult:
        return plan.drivers(self._script("provision-drivers"))

    def steam(self) -> StepResult:
        if not self.settings.steam:
            return StepResult("steam", True, False, "not asked for (windows.steam = false)")
        facts = self._steam_facts()
        actions = plan.steam_actions(facts, self.user)
        if not actions:
            return StepResult(
                "steam",
                True,
                False,
                f"installed in {facts.install_path}; logon task {plan.STEAM_TASK} for {self.user}",
            )
        if self.dry_run:
            return StepResult(
                "steam", True, True, "would " + plan.describe_steam(actions, self.user)
            )
        done: list[str] = []
        if "install" in actions:
            ran = self._script(
                "provision-steam-install",
                {
                    "Url": plan.STEAM_SETUP_URL,
                    "Installer": fresh_name("SteamSetup", ".exe"),
                    "Signers": SIGNERS,
                    "TimeoutSeconds": int(STEAM_SETUP_TIMEOUT) - 300,
                },
                timeout=STEAM_SETUP_TIMEOUT,
            )
            reason = str(ran.get("detail") or "no reason given")
            if not ran.get("ok") and ran.get("stage") == "download":
                return StepResult(
                    "steam", False, False, f"SteamSetup.exe download failed: {reason}"
                )
            unsigned = signature_problem(
                f"SteamSetup.exe from {plan.STEAM_SETUP_URL}", ran.get("signature")
            )
            if unsigned is not None:
                return StepResult("steam", False, False, unsigned)
            if not ran.get("ok"):
                return StepResult("steam", False, False, reason)
            for found in ran.get("stopped") or ():
                done.append(f"stopped {found.get('name')} (pid {found.get('pid')}) left as SYSTEM")
            facts = self._steam_facts()
            if not facts.installed or not facts.steam_exe:
                return StepResult(
                    "steam", False, True, "SteamSetup.exe /S finished but Steam is not installed"
                )
            done.insert(0, f"installed Steam in {facts.install_path}")
        if not plan.task_ok(facts, self.user):
            assert facts.steam_exe is not None
            task = self._script(
                "provision-steam-task",
                {"User": self.user, "TaskName": plan.STEAM_TASK, "SteamExe": facts.steam_exe},
            )
            if not task.get("ok"):
                reason = task.get("detail") or "no reason given"
                return StepResult(
                    "steam", False, bool(done), f"logon task not registered: {reason}"
                )
            done.append(f"logon task {plan.STEAM_TASK} starts Steam for {self.user}")
        return StepResult("steam", True, True, "; ".join(done))

    def rust(self) -> StepResult:
        kind = self.settings.rust
        if kind == "none":
            return StepResult("rust", True, False, "not asked for (windows.rust = none)")
        if kind == "client":
            return self._rust_client()
        return self._rust_server()

    def _rust_client(self) -> StepResult:
        facts = self._steam if self._steam is not None else self._steam_facts()
        if not facts.installed or not facts.install_path:
            if self.dry_run and self.settings.steam:
                return StepResult(
                    "rust",
                    True,
                    False,
                    f"after Steam: {self.user} installs Rust from Steam",
                    pending=True,
                )
            return StepResult(
                "rust",
                False,
                False,
                "Steam is not installed"
                + ("" if self.settings.steam else " (windows.steam = false: nixmox leaves it)"),
            )
        library = self._client_library(facts.install_path)
        return plan.rust_client(self._manifest(library, plan.RUST_CLIENT), self.user)

    def _rust_server(self) -> StepResult:
        server_dir = self.settings.rust_server_dir
        before = self._manifest(server_dir, plan.RUST_SERVER)
        installed = plan.rust_server_installed(before)
        if installed is not None:
            return installed
        steamcmd_dir = self.settings.steamcmd_dir
        where = {"Dir": steamcmd_dir, "Url": plan.STEAMCMD_URL}
        found = self._script("provision-steamcmd", {**where, "CheckOnly": True})
        if not found.get("ok"):
            return StepResult("rust", False, False, f"steamcmd: {found.get('detail') or 'failed'}")
        refusal = plan.steamcmd_refusal(steamcmd_dir, found)
        if refusal is not None:
            return StepResult("rust", False, False, refusal)
        if self.dry_run:
            first = "" if found.get("present") else "download steamcmd, then "
            return StepResult(
                "rust", True, True, f"would {first}install app {plan.RUST_SERVER} into {server_dir}"
            )
        if not found.get("present"):
            unpacked = self._script(
                "provision-steamcmd",
                {**where, "Stage": fresh_name("steamcmd", ""), "Signers": SIGNERS},
            )
            refusal = plan.steamcmd_refusal(steamcmd_dir, unpacked)
            if refusal is None and unpacked.get("signature") is not None:
                refusal = signature_problem(
                    f"steamcmd.exe from {plan.STEAMCMD_URL}", unpacked.get("signature")
                )
            if refusal is not None:
                return StepResult("rust", False, False, refusal)
            if not unpacked.get("ok"):
                reason = unpacked.get("detail") or "no reason given"
                return StepResult("rust", False, False, f"steamcmd: {reason}")
        # Its own update first: a fresh steamcmd exits after updating itself.
        self._agent.exec(plan.steamcmd_update_argv(steamcmd_dir), timeout=STEAMCMD_UPDATE_TIMEOUT)
        argv = plan.steamcmd_argv(steamcmd_dir, server_dir)
        for attempt in range(1, plan.STEAMCMD_ATTEMPTS + 1):
            ran = self._agent.exec(argv, timeout=STEAMCMD_TIMEOUT)
            after = self._manifest(server_dir, plan.RUST_SERVER)
            if after is not None and after.fully_installed:
                tries = f" (attempt {attempt})" if attempt > 1 else ""
                return StepResult(
                    "rust",
                    True,
                    True,
                    f"installed Rust dedicated server (build {after.buildid}) in {server_dir}"
                    + tries,
                )
        state = after.state() if after is not None else "no appmanifest_258550.acf"
        last = (ran.stdout.strip().splitlines() or [""])[-1]
        return StepResult(
            "rust",
            False,
            True,
            f"steamcmd exited with {ran.returncode} after {plan.STEAMCMD_ATTEMPTS} attempts, "
            f"server {state}" + (f": {last}" if last else ""),
        )

    def msi(self) -> StepResult:
        report = self._script("provision-msi", {"CheckOnly": self.dry_run})
        return plan.msi(report, check_only=self.dry_run)

    def postcheck(self) -> StepResult:
        report = self._script("provision-postcheck")
        done = {r.step: r for r in self._results}
        rust: StepResult | None = None
        ran_rust = done.get("rust")
        if (
            not self.dry_run
            and self.settings.rust != "none"
            and ran_rust is not None
            and not ran_rust.skipped
        ):
            rust = self._rust_state()
        msi = done.get("msi")
        return plan.postcheck(
            list(report.get("gpus") or []), rust, reboot_pending=bool(msi and msi.reboot)
        )

    def _rust_state(self) -> StepResult:
        if self.settings.rust == "client":
            return self._rust_client()
        manifest = self._manifest(self.settings.rust_server_dir, plan.RUST_SERVER)
        if manifest is not None and manifest.fully_installed:
            return StepResult("rust", True, False, "Rust dedicated server fully installed")
        state = manifest.state() if manifest is not None else "not installed"
        return StepResult("rust", False, False, f"Rust dedicated server {state}")


def fresh_name(stem: str, suffix: str) -> str:
    """A name in nixmox's guest folder no run has used: downloads are never reused."""
    return f"{GUEST_DIR}\\{stem}-{secrets.token_hex(8)}{suffix}"


def provision(api: Proxmox, guest: Guest, *, dry_run: bool = False) -> list[StepResult]:
    """Run :class:`ProvisionJob` for ``guest``."""
    return ProvisionJob(api, guest, dry_run=dry_run).run()
