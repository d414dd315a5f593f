"""A Windows guest for the lab's agent: answers nixmox's provisioning scripts from its state.

Registered as a responder on the lab (``Lab.agent_responders``), it answers
``exec-status`` for the packaged scripts with the JSON report each script
prints, for the Steam installer and steamcmd by changing its state (so the
next check finds Steam or the server installed), and ``file-read`` from its
files. Everything nixmox asked stays in fakepve's ``vm.agent_execs`` and
``vm.agent_requests``. The scripts themselves are only parsed
(tests/test_pwsh_syntax.py); where Windows' answer depends on what a script
does, the guest reads that from the script text nixmox wrote (its
``file-write``).

What real Windows (and Steam) does that it models:

- a fresh steamcmd updates itself on its first run and exits with code 7
  before it reaches any ``+app_update``; a large ``app_update`` can end
  "state is 0x602 after update job" and succeed when run again
  (``app_update_failures``);
- ``SteamSetup.exe /S`` leaves Steam running as SYSTEM (``system_steam``):
  run straight through the agent, that keeps the exec open;
- a scheduled task registered without a priority runs at 7 (below normal); a
  bare user name that equals the computer name resolves to the computer;
- the Microsoft Basic Display Adapter on the emulated VGA, disabled (code 22)
  next to a passed-through GPU (``basic_display_code``);
- PCI functions by bus and device (``pci``): an Intel iGPU at 00:02.0 shares
  vendor and parent with every Intel device on the root bus.

And what a standard user in the guest can do, so the tests show nixmox refusing:
a folder created first under ``C:\\ProgramData`` or ``C:\\`` (``folders``, see
:mod:`tests.windows_exec`), a file planted in one (``binaries``: executables
and their signatures), a download that is not signed by Valve (``signatures``
by URL), and a script rewritten after nixmox wrote it (``folders.swapped``).
Every program that ran is listed in ``executed``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from fakepve import PveError

from nixmox.windows.keyvalues import dumps
from nixmox.windows.scripts import GUEST_DIR
from tests.windows_exec import VALVE_SIGNED, Folders, decode, guest_dir_written

STEAM_DIR = "C:\\Program Files (x86)\\Steam"
STEAMCMD_DIR = "C:\\Program Files\\steamcmd"
STEAM_EXE = f"{STEAM_DIR}\\steam.exe"
NVIDIA = "PCI\\VEN_10DE&DEV_2503&SUBSYS_397D1462&REV_A1\\4&1D4B3C2F&0&0008"
NVIDIA_AUDIO = "PCI\\VEN_10DE&DEV_228E&SUBSYS_397D1462&REV_A1\\4&1D4B3C2F&0&0108"
BASIC_DISPLAY = "PCI\\VEN_1234&DEV_1111&SUBSYS_11001AF4&REV_02\\3&267A616A&0&10"
#: PCI functions: instance id -> (name, "bus/device", is a display adapter).
PASSED_GPU = {
    NVIDIA: ("NVIDIA GeForce RTX 3060", "1/0", True),
    NVIDIA_AUDIO: ("NVIDIA High Definition Audio", "1/0", False),
}
INTEL_IGPU = "PCI\\VEN_8086&DEV_A780&SUBSYS_86941043&REV_04\\3&11583659&0&10"
INTEL_ROOT = {
    INTEL_IGPU: ("Intel(R) UHD Graphics 770", "0/2", True),
    "PCI\\VEN_8086&DEV_7AE0&SUBSYS_86941043&REV_11\\3&11583659&0&A0": (
        "Intel(R) USB 3.20 eXtensible Host Controller",
        "0/20",
        False,
    ),
    "PCI\\VEN_8086&DEV_7AE2&SUBSYS_86941043&REV_11\\3&11583659&0&B8": (
        "Intel(R) 600 Series Chipset SATA AHCI Controller",
        "0/23",
        False,
    ),
}


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
    #: steamcmd has updated itself (its first run does only that, and exits 7).
    steamcmd_updated: bool = False
    #: ``app_update`` runs that end "state is 0x602 after update job" before one succeeds.
    app_update_failures: int = 0
    pci: dict[str, tuple[str, str, bool]] = field(default_factory=lambda: dict(PASSED_GPU))
    msi: dict[str, bool] = field(default_factory=lambda: {NVIDIA: False, NVIDIA_AUDIO: False})
    gpu_code: int = 0
    #: The emulated VGA's Microsoft Basic Display Adapter and its problem code (None: absent).
    basic_display_code: int | None = None
    computer_name: str = "WIN11"
    #: Steam clients running as SYSTEM (left by SteamSetup.exe /S).
    system_steam: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    #: The scripts nixmox wrote into the guest, by path.
    scripts: dict[str, str] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    folders: Folders = field(default_factory=Folders)
    #: Executables in the guest and their signatures (``tests.windows_exec.VALVE_SIGNED``).
    binaries: dict[str, dict[str, str]] = field(default_factory=dict)
    #: What a download from each URL turns out to be signed by (default: Valve).
    signatures: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Programs that ran (first argument of each), installers from their wrapper too.
    executed: list[str] = field(default_factory=list)
    #: The written scripts that ran (after their hash matched).
    ran_scripts: list[str] = field(default_factory=list)

    def with_steamcmd(self, directory: str = STEAMCMD_DIR) -> WindowsGuest:
        """steamcmd unpacked by nixmox into ``directory`` (protected, Valve-signed)."""
        self.folders.create(directory, protect=True)
        self.binaries[f"{directory}\\steamcmd.exe"] = dict(VALVE_SIGNED)
        return self

    @classmethod
    def provisioned(cls) -> WindowsGuest:
        """Everything in place: Steam, its logon task, Rust in a second library, MSI on."""
        guest = cls(
            steam_dir=STEAM_DIR,
            task={
                "user": "WIN11\\gamer",
                "logon_type": "Interactive",
                "execute": STEAM_EXE,
                "priority": 4,
            },
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
        if command == "file-write":
            path = str(values["file"])
            if guest_dir_written(path) and not self.folders.exists(GUEST_DIR):
                # The agent opens the file but cannot create its folder.
                raise PveError(500, f"Agent error: failed to open file '{path}' (error: 3)")
            self.scripts[path] = str(values.get("content", ""))
            return None
        if command == "file-read":
            found = self.files.get(values["file"])
            return None if found is None else {"content": found, "truncated": False}
        if command != "exec-status" or argv is None:
            return None
        decoded = decode(argv)
        if decoded is not None:
            name, given = decoded
            if name == "guest-folder":
                report = self.folders.guest_folder(given, self._text(name))
                return _exited(0 if report["ok"] else 1, json.dumps(report) + "\n")
            assert name == "run-verified", name
            verified = self.folders.run_verified(given, self.scripts)
            if isinstance(verified, dict):
                return verified  # refused: the file is not what nixmox wrote
            script, params = verified
            self.ran_scripts.append(script)
            report = getattr(self, script.replace("-", "_"))(**params)
            out = json.dumps(report, ensure_ascii=False)
            if not self._script_says(script, "'[^\\x20-\\x7E]'"):
                # Written as is, through the console's OEM code page: what is not ASCII
                # does not come out as the same text.
                out = out.encode("ascii", "replace").decode()
            return _exited(0 if report["ok"] else 1, out + "\n")
        self.executed.append(argv[0])
        if argv[0].lower().rsplit("\\", 1)[-1].startswith("steamsetup") and argv[1:] == ["/S"]:
            # Straight through the agent the Steam it starts as SYSTEM holds the exec's
            # pipes; the lab answers anyway (a real agent would not), and remembers it.
            self.steam_dir = STEAM_DIR
            self.system_steam = ["steam.exe", "steamwebhelper.exe"]
            return _exited(0, "")
        if argv[0].endswith("\\steamcmd.exe"):
            return self._steamcmd(argv)
        return None

    # ---------------------------------------------------------------- scripts

    def _script_says(self, name: str, text: str) -> bool:
        """Whether the script nixmox wrote for ``name`` contains ``text``."""
        return text in self.scripts.get(f"{GUEST_DIR}\\{name}.ps1", "")

    @staticmethod
    def _text(name: str) -> str:
        from nixmox.windows.scripts import script_text

        return script_text(name)

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

    def provision_steam_task(self, User: str, SteamExe: str, TaskName: str, **kw: Any) -> Any:
        assert not kw.get("CheckOnly")
        qualified = "\\" in User or self._script_says("provision-steam-task", "COMPUTERNAME")
        if not qualified and User.casefold() == self.computer_name.casefold():
            # A bare name resolves to the computer's own account first.
            error = "No mapping between account names and security IDs was done."
            return {**_report("steam-task", detail=error), "ok": False}
        account = User if "\\" in User else f"{self.computer_name}\\{User}"
        priority = 4 if self._script_says("provision-steam-task", "-Priority $priority") else 7
        self.task = {
            "user": account,
            "logon_type": "Interactive",
            "execute": SteamExe,
            "priority": priority,
        }
        return _report("steam-task", changed=True, detail=f"registered {TaskName} for {account}")

    def provision_steam_install(
        self, Url: str, Installer: str, Signers: str, **_: Any
    ) -> dict[str, Any]:
        assert Installer.startswith(f"{GUEST_DIR}\\SteamSetup-"), Installer
        base = {"exit_code": None, "stopped": [], "signature": None}
        if Installer in self.binaries:
            error = (
                f"{Installer} exists already: nixmox runs only an installer it has just downloaded"
            )
            return {**_report("steam-install", detail=error, stage="download", **base), "ok": False}
        self.downloads.append(Url)
        if self.download_error:
            detail = f"{Url}: {self.download_error}"
            return {
                **_report("steam-install", detail=detail, stage="download", **base),
                "ok": False,
            }
        signature = self.signatures.get(Url, VALVE_SIGNED)
        verifies = self._script_says("provision-steam-install", "Get-AuthenticodeSignature")
        if verifies and not _valve(signature, Signers):
            detail = f"{Url} is not validly signed by {Signers}: not run"
            failed = _report("steam-install", detail=detail, stage="verify", **base)
            return {**failed, "signature": signature, "ok": False}
        self.executed.append(Installer)
        self.steam_dir = STEAM_DIR
        # The installer started Steam as SYSTEM; the script stops it once the installer exited.
        stopped = [
            {"name": name, "pid": 4100 + n}
            for n, name in enumerate(["steam.exe", "steamwebhelper.exe"])
        ]
        self.system_steam = []
        return _report(
            "steam-install",
            changed=True,
            stage="install",
            exit_code=0,
            stopped=stopped,
            signature=signature,
            detail="SteamSetup.exe /S exited with 0",
        )

    def provision_steamcmd(
        self, Dir: str, Url: str, Stage: str = "", Signers: str = "", CheckOnly: bool = False
    ) -> dict[str, Any]:
        exe = f"{Dir}\\steamcmd.exe"
        facts: dict[str, Any] = {"folder": self.folders.report(Dir), "signature": None}
        if exe in self.binaries:
            facts["signature"] = self.binaries[exe]
            return _report("steamcmd", present=True, detail=f"{exe} present", **facts)
        if CheckOnly:
            return _report("steamcmd", present=False, changed=True, **facts)
        assert Stage.startswith(f"{GUEST_DIR}\\steamcmd-") and Signers, (Stage, Signers)
        self.downloads.append(Url)
        if self.download_error:
            detail = f"{Url}: {self.download_error}"
            return {**_report("steamcmd", detail=detail, present=False, **facts), "ok": False}
        signature = self.signatures.get(Url, VALVE_SIGNED)
        if not _valve(signature, Signers):
            detail = f"steamcmd.exe from {Url} is not validly signed by {Signers}: not installed"
            failed = _report("steamcmd", detail=detail, present=False, **facts)
            return {**failed, "signature": signature, "ok": False}
        if not self.folders.exists(Dir):
            self.folders.create(
                Dir, protect=self._script_says("provision-steamcmd", "/inheritance:r")
            )
        self.binaries[exe] = signature
        return _report(
            "steamcmd",
            present=True,
            changed=True,
            folder=self.folders.report(Dir),
            signature=signature,
            detail=f"unpacked steamcmd into {Dir}",
        )

    def provision_msi(self, CheckOnly: bool = False) -> dict[str, Any]:
        by_slot = self._script_says("provision-msi", "DEVPKEY_Device_LocationInfo")
        chosen: list[str] = []
        for gpu, (_, slot, display) in self.pci.items():
            if not display or _vendor(gpu) in ("1AF4", "1B36", "1234", "15AD", "1414"):
                continue
            # Every function on the root bus shares the parent; bus and device tell cards apart.
            chosen += [
                i
                for i, (_, other, _) in self.pci.items()
                if i not in chosen and (other == slot if by_slot else _vendor(i) == _vendor(gpu))
            ]
        functions = [
            {"id": i, "name": self.pci[i][0], "msi": self.msi.get(i, False), "slot": self.pci[i][1]}
            for i in chosen
        ]
        changed = not CheckOnly and not all(f["msi"] for f in functions)
        if not CheckOnly:
            self.msi.update(dict.fromkeys(chosen, True))
        return _report("msi", functions=functions, changed=changed)

    def provision_postcheck(self, **_: Any) -> dict[str, Any]:
        gpus = [
            {
                "name": "NVIDIA GeForce RTX 3060",
                "id": NVIDIA,
                "status": "OK" if self.gpu_code == 0 else "Error",
                "code": self.gpu_code,
            }
        ]
        leaves_out = self._script_says("provision-postcheck", "$emulated -notcontains")
        if self.basic_display_code is not None and not leaves_out:
            gpus.append(
                {
                    "name": "Microsoft Basic Display Adapter",
                    "id": BASIC_DISPLAY,
                    "status": "OK" if self.basic_display_code == 0 else "Error",
                    "code": self.basic_display_code,
                }
            )
        return _report("postcheck", gpus=gpus)

    # ------------------------------------------------------------ installers

    def _steamcmd(self, argv: list[str]) -> dict[str, Any]:
        if argv[0] not in self.binaries:
            return _exited(9009, "")  # not recognized as a program
        if not self.steamcmd_updated:
            # The first run only updates steamcmd itself, whatever else it was asked.
            self.steamcmd_updated = True
            return _exited(7, "[----] Update complete, launching Steamcmd...\n")
        if "+app_update" not in argv:
            return _exited(0, "")
        # steamcmd honours +force_install_dir only before +login: after it, the app goes
        # to steamcmd's own steamapps folder, not where nixmox looks.
        where = argv.index("+force_install_dir")
        directory = argv[where + 1] if where < argv.index("+login") else argv[0].rsplit("\\", 1)[0]
        app = argv[argv.index("+app_update") + 1]
        path = f"{directory}\\steamapps\\appmanifest_{app}.acf"
        if self.app_update_failures:
            self.app_update_failures -= 1
            self.files[path] = manifest(int(app), "rust_dedicated", 1538)
            return _exited(8, f"Error! App '{app}' state is 0x602 after update job.\n")
        self.files[path] = manifest(int(app), "rust_dedicated", 4)
        return _exited(0, f"Success! App '{app}' fully installed.\n")


def _valve(signature: dict[str, str], signers: str) -> bool:
    """What the scripts' signer check decides (Valid, and CN or O one of ``signers``)."""
    names = re.findall(r"(?:^|,)\s*(?:CN|O)=([^,]*)", signature.get("subject", ""))
    accepted = {n.strip().casefold() for n in signers.split("|")}
    return signature.get("status") == "Valid" and bool(
        {n.strip().casefold() for n in names} & accepted
    )


def _vendor(instance_id: str) -> str:
    return instance_id.upper().partition("VEN_")[2][:4]


def _report(step: str, **fields: Any) -> dict[str, Any]:
    return {"step": step, "ok": True, "changed": False, "detail": "", **fields}


def _exited(code: int, out: str) -> dict[str, Any]:
    return {"exited": True, "exitcode": code, "out-data": out, "err-data": ""}
