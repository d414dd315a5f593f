"""A Windows guest for the lab's agent: answers nixmox's provisioning scripts from its state.

Registered as a responder on the lab (``Lab.agent_responders``), it answers
``exec-status`` for the packaged scripts with the JSON report each script
prints, for ``SteamSetup.exe /S`` and steamcmd by changing its state (so the
next check finds Steam or the server installed), and ``file-read`` from its
files. Everything nixmox asked stays in fakepve's ``vm.agent_execs`` and
``vm.agent_requests``. It models the scripts' contract, not Windows: the
scripts themselves are only parsed (tests/test_pwsh_syntax.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nixmox.windows.keyvalues import dumps
from nixmox.windows.provision import STEAM_SETUP
from nixmox.windows.scripts import POWERSHELL

STEAM_DIR = "C:\\Program Files (x86)\\Steam"
STEAM_EXE = f"{STEAM_DIR}\\steam.exe"
NVIDIA = "PCI\\VEN_10DE&DEV_2503&SUBSYS_397D1462&REV_A1\\4&1D4B3C2F&0&0008"
NVIDIA_AUDIO = "PCI\\VEN_10DE&DEV_228E&SUBSYS_397D1462&REV_A1\\4&1D4B3C2F&0&0108"


def manifest(appid: int, name: str, flags: int, buildid: str = "19254891") -> str:
    """An appmanifest_*.acf as Steam writes it."""
    return dumps(
        {
            "AppState": {
                "appid": str(appid),
                "Universe": "1",
                "name": name,
                "StateFlags": str(flags),
                "installdir": name.replace(" ", ""),
                "buildid": buildid,
                "InstalledDepots": {"252494": {"manifest": "6349238427093840541", "size": "1"}},
            }
        }
    )


def libraryfolders(paths: dict[str, list[int]]) -> str:
    """A libraryfolders.vdf listing ``paths`` (library -> app ids)."""
    return dumps(
        {
            "libraryfolders": {
                str(n): {"path": path, "label": "", "apps": {str(a): "1" for a in apps}}
                for n, (path, apps) in enumerate(paths.items())
            }
        }
    )


def script_call(argv: list[str]) -> tuple[str, dict[str, str | bool]] | None:
    """(script name, parameters) when ``argv`` runs a packaged script."""
    if argv[: len(POWERSHELL)] != POWERSHELL:
        return None
    path, rest = argv[len(POWERSHELL)], argv[len(POWERSHELL) + 1 :]
    name = path.rsplit("\\", 1)[-1].removesuffix(".ps1")
    params: dict[str, str | bool] = {}
    i = 0
    while i < len(rest):
        key = rest[i].lstrip("-")
        if i + 1 < len(rest) and not rest[i + 1].startswith("-"):
            params[key] = rest[i + 1]
            i += 2
        else:
            params[key] = True
            i += 1
    return name, params


@dataclass
class WindowsGuest:
    """The state a provisioning run reads and changes."""

    drivers: dict[str, list[str]] = field(
        default_factory=lambda: {
            "net": ["Red Hat VirtIO Ethernet Adapter"],
            "storage": ["Red Hat VirtIO SCSI pass-through controller"],
            "balloon": [],
        }
    )
    agent_service: str = "Running"
    steam_dir: str | None = None
    task: dict[str, str] | None = None
    download_error: str | None = None
    steamcmd: bool = False
    msi: dict[str, bool] = field(default_factory=lambda: {NVIDIA: False, NVIDIA_AUDIO: False})
    gpu_code: int = 0
    files: dict[str, str] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)

    @classmethod
    def provisioned(cls) -> WindowsGuest:
        """Everything in place: Steam, its logon task, Rust in a second library, MSI on."""
        guest = cls(
            steam_dir=STEAM_DIR,
            task={"user": "WIN11\\gamer", "logon_type": "Interactive", "execute": STEAM_EXE},
            msi={NVIDIA: True, NVIDIA_AUDIO: True},
        )
        guest.files[f"{STEAM_DIR}\\steamapps\\libraryfolders.vdf"] = libraryfolders(
            {STEAM_DIR: [228980], "D:\\SteamLibrary": [252490]}
        )
        guest.files["D:\\SteamLibrary\\steamapps\\appmanifest_252490.acf"] = manifest(
            252490, "Rust", 4
        )
        return guest

    # -------------------------------------------------------------- responder

    def __call__(self, command: str, values: dict[str, Any], argv: list[str] | None) -> Any:
        if command == "file-read":
            found = self.files.get(values["file"])
            return None if found is None else {"content": found, "truncated": False}
        if command != "exec-status" or argv is None:
            return None
        call = script_call(argv)
        if call is not None:
            report = getattr(self, call[0].replace("-", "_"))(**call[1])
            return _exited(0 if report["ok"] else 1, json.dumps(report) + "\n")
        if argv == [STEAM_SETUP, "/S"]:
            self.steam_dir = STEAM_DIR
            return _exited(0, "")
        if argv[0].endswith("\\steamcmd.exe"):
            return self._steamcmd(argv)
        return None

    # ---------------------------------------------------------------- scripts

    def provision_drivers(self, **_: Any) -> dict[str, Any]:
        return _report(
            "drivers", drivers=self.drivers, agent_service=self.agent_service, detail="virtio"
        )

    def provision_steam(self, TaskName: str, **_: Any) -> dict[str, Any]:
        assert TaskName == "nixmox-steam"
        return _report(
            "steam",
            installed=self.steam_dir is not None,
            install_path=self.steam_dir,
            task=self.task,
        )

    def provision_download(self, Url: str, OutFile: str, CheckOnly: bool = False) -> Any:
        assert not CheckOnly
        self.downloads.append(Url)
        if self.download_error:
            return {**_report("download", detail=f"{Url}: {self.download_error}"), "ok": False}
        return _report("download", changed=True, detail=f"downloaded {Url}")

    def provision_steam_task(self, User: str, SteamExe: str, TaskName: str, **kw: Any) -> Any:
        assert not kw.get("CheckOnly")
        self.task = {"user": f"WIN11\\{User}", "logon_type": "Interactive", "execute": SteamExe}
        return _report("steam-task", changed=True, detail=f"registered {TaskName}")

    def provision_steamcmd(self, Dir: str, Url: str, CheckOnly: bool = False) -> Any:
        if self.steamcmd:
            return _report("steamcmd", present=True)
        if CheckOnly:
            return _report("steamcmd", present=False, changed=True)
        self.downloads.append(Url)
        if self.download_error:
            return {**_report("steamcmd", detail=f"{Url}: {self.download_error}"), "ok": False}
        self.steamcmd = True
        return _report("steamcmd", present=True, changed=True)

    def provision_msi(self, CheckOnly: bool = False) -> dict[str, Any]:
        functions = [
            {
                "id": i,
                "name": "NVIDIA GeForce RTX 3060" if i == NVIDIA else "NVIDIA HD Audio",
                "msi": on,
            }
            for i, on in self.msi.items()
        ]
        changed = not CheckOnly and not all(self.msi.values())
        if not CheckOnly:
            self.msi = dict.fromkeys(self.msi, True)
        return _report("msi", functions=functions, changed=changed)

    def provision_postcheck(self, **_: Any) -> dict[str, Any]:
        gpu = {
            "name": "NVIDIA GeForce RTX 3060",
            "id": NVIDIA,
            "status": "OK" if self.gpu_code == 0 else "Error",
            "code": self.gpu_code,
        }
        return _report("postcheck", gpus=[gpu])

    # ------------------------------------------------------------ installers

    def _steamcmd(self, argv: list[str]) -> dict[str, Any]:
        # steamcmd honours +force_install_dir only before +login: after it, the app goes
        # to steamcmd's own steamapps folder, not where nixmox looks.
        where = argv.index("+force_install_dir")
        directory = argv[where + 1] if where < argv.index("+login") else argv[0].rsplit("\\", 1)[0]
        app = argv[argv.index("+app_update") + 1]
        self.files[f"{directory}\\steamapps\\appmanifest_{app}.acf"] = manifest(
            int(app), "rust_dedicated", 4
        )
        return _exited(0, f"Success! App '{app}' fully installed.\n")


def _report(step: str, **fields: Any) -> dict[str, Any]:
    return {"step": step, "ok": True, "changed": False, "detail": "", **fields}


def _exited(code: int, out: str) -> dict[str, Any]:
    return {"exited": True, "exitcode": code, "out-data": out, "err-data": ""}
