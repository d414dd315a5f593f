"""What the lab's Windows guests read out of nixmox's agent execs, and the folders they hold.

nixmox runs PowerShell from the command line itself (``-EncodedCommand``): the
folder check (``guest-folder.ps1``) and the wrapper that runs a written script
once its hash matches (``run-verified.ps1``). :func:`decode` reads such an argv
back the way powershell.exe would: UTF-16LE base64, a first line setting
``$Nixmox`` from JSON, then the script text, recognised by comparing it with
the packaged scripts.

:class:`Folders` stands for the guest's folders as ``Get-Acl`` reports them
(SDDL), with the permissions real Windows gives: a folder created under
``C:\\ProgramData`` or ``C:\\`` inherits write access for users unless its
inheritance is cut, and one a user created is theirs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from nixmox.windows.scripts import GUEST_DIR, POWERSHELL, PRELUDE, script_text

#: nixmox's folder as guest-folder.ps1 leaves it: SYSTEM and Administrators, protected.
PROTECTED = "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
#: A folder created under C:\ProgramData without cutting inheritance (an older nixmox's
#: `mkdir`): Users may create files and folders in it.
PROGRAMDATA_CHILD = (
    "O:BAG:SYD:AI(A;OICIID;FA;;;SY)(A;OICIID;FA;;;BA)(A;OICIIOID;GA;;;CO)"
    "(A;OICIID;0x1200a9;;;BU)(A;CIID;DCLCRPCR;;;BU)"
)
#: A folder created under C:\ (C:\steamcmd): Authenticated Users may modify it.
ROOT_CHILD = (
    "O:BAG:SYD:AI(A;OICIID;FA;;;BA)(A;OICIID;FA;;;SY)(A;OICIID;0x1200a9;;;BU)"
    "(A;OICIID;0x1301bf;;;AU)"
)
PLAYER = "S-1-5-21-3623811015-3361044348-30300820-1001"
#: A folder a standard user created first, then locked down to look like nixmox's:
#: the user still owns it, so may give themselves write access back at any time.
PLANTED = f"O:{PLAYER}G:{PLAYER}D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
#: Valve's signature as Get-AuthenticodeSignature reports it, and an unsigned file.
VALVE_SIGNED = {"status": "Valid", "subject": "CN=Valve Corp., O=Valve Corp., L=Bellevue, C=US"}
UNSIGNED = {"status": "NotSigned", "subject": ""}


def _packaged() -> dict[str, str]:
    """Every packaged script as nixmox runs it (the prelude in place)."""
    folder = resources.files("nixmox.windows").joinpath("scripts")
    names = [p.name.removesuffix(".ps1") for p in folder.iterdir() if p.name.endswith(".ps1")]
    return {name: script_text(name) for name in names if name != PRELUDE}


def decode(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(packaged script name, ``$Nixmox``) when ``argv`` runs a script from the command line."""
    n = len(POWERSHELL)
    if argv[:n] != POWERSHELL or len(argv) != n + 2 or argv[n] != "-EncodedCommand":
        return None
    text = base64.b64decode(argv[n + 1]).decode("utf-16-le")
    header, _, body = text.partition("\n")
    found = re.fullmatch(r"\$Nixmox = ConvertFrom-Json '(.*)'", header, re.S)
    assert found is not None, header
    values = json.loads(found.group(1).replace("''", "'"))
    name = next((n for n, t in _packaged().items() if t == body), None)
    assert name is not None, "an encoded command that is no packaged script"
    return name, values


def script_call(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(script name, parameters) when ``argv`` runs a written script through run-verified."""
    decoded = decode(argv)
    if decoded is None or decoded[0] != "run-verified":
        return None
    values = decoded[1]
    name = str(values["Script"]).rsplit("\\", 1)[-1].removesuffix(".ps1")
    return name, dict(values["Params"])


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest().upper()


def exited(code: int, out: str) -> dict[str, Any]:
    return {"exited": True, "exitcode": code, "out-data": out, "err-data": ""}


@dataclass
class Folders:
    """The guest's folders: path (lower case) -> SDDL, and what a user slips into a
    folder in the moment after nixmox created it (``race``)."""

    sddl: dict[str, str] = field(default_factory=dict)
    race: list[str] = field(default_factory=list)
    #: Files another account rewrites after nixmox wrote them: path -> text.
    swapped: dict[str, str] = field(default_factory=dict)

    def exists(self, path: str) -> bool:
        return path.lower() in self.sddl

    def create(self, path: str, protect: bool) -> None:
        parent = path.rsplit("\\", 1)[0].lower()
        inherited = ROOT_CHILD if parent == "c:" else PROGRAMDATA_CHILD
        self.sddl[path.lower()] = PROTECTED if protect else inherited

    def report(self, path: str) -> dict[str, Any]:
        """``Get-Folder``'s fields for ``path``."""
        if not self.exists(path):
            return {"exists": False}
        return {"exists": True, "directory": True, "link": False, "sddl": self.sddl[path.lower()]}

    def guest_folder(self, values: dict[str, Any], text: str) -> dict[str, Any]:
        """``guest-folder.ps1``: create the folder (protected as the script text says) or
        report the one there."""
        path = str(values["Path"])
        report: dict[str, Any] = {"ok": True, "path": path, "created": False, "children": []}
        if not self.exists(path):
            self.create(path, protect="/inheritance:r" in text)
            report["created"] = True
            report["children"] = list(self.race)
        return {**report, **self.report(path), "detail": f"{path} owner and permissions read"}

    def run_verified(
        self, values: dict[str, Any], written: dict[str, str]
    ) -> tuple[str, dict[str, Any]] | dict[str, Any]:
        """``run-verified.ps1``: (script name, parameters) to run, or its refusal."""
        path = str(values["Script"])
        text = self.swapped.get(path, written.get(path))
        found = "unreadable" if text is None else sha256(text)
        if found != values["Sha256"]:
            return exited(
                3,
                json.dumps(
                    {
                        "ok": False,
                        "refused": f"{path} is not the script nixmox wrote (SHA-256 {found}, "
                        f"expected {values['Sha256']}): not run",
                    }
                )
                + "\r\n",
            )
        name = path.rsplit("\\", 1)[-1].removesuffix(".ps1")
        return name, dict(values["Params"])


def guest_dir_written(path: str) -> bool:
    """Whether ``path`` is in nixmox's guest folder."""
    return path.rsplit("\\", 1)[0].lower() == GUEST_DIR.lower()
