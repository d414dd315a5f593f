"""Whether a folder in the Windows guest is safe to run things from as SYSTEM (pure).

nixmox writes its scripts into ``C:\\ProgramData\\nixmox`` and runs them, and
steamcmd from ``steamcmd_dir``, through the agent as SYSTEM. Windows lets a
standard user create folders under ``C:\\`` and ``C:\\ProgramData``, so such a
folder is only safe when its owner is SYSTEM or Administrators (an owner can
always rewrite the permissions) and nobody else may write, delete or change
permissions in it. The guest reports the folder's security descriptor in SDDL
(``(Get-Acl).Sddl``); these functions read it. What they cannot read counts
as unsafe.

Installers and steamcmd are run only when Windows says their Authenticode
signature is valid and names an accepted signer (:func:`signature_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: Who may own and write nixmox's folders: SYSTEM, Administrators, TrustedInstaller,
#: and the placeholders that stand for the owner (who must be one of those).
SYSTEM = "S-1-5-18"
ADMINISTRATORS = "S-1-5-32-544"
TRUSTED_INSTALLER = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
_ALIASES = {
    "SY": SYSTEM,
    "BA": ADMINISTRATORS,
    "CO": "S-1-3-0",
    "OW": "S-1-3-4",
    "BU": "S-1-5-32-545",
    "AU": "S-1-5-11",
    "WD": "S-1-1-0",
    "IU": "S-1-5-4",
    "BG": "S-1-5-32-546",
    "PU": "S-1-5-32-547",
    "AC": "S-1-15-2-1",
}
TRUSTED_OWNERS = frozenset({SYSTEM, ADMINISTRATORS, TRUSTED_INSTALLER})
#: CREATOR OWNER and OWNER RIGHTS grant to whoever owns (or creates) an item: as long
#: as nobody else can create anything in the folder, that is one of the trusted.
TRUSTED_WRITERS = TRUSTED_OWNERS | {"S-1-3-0", "S-1-3-4"}
NAMES = {
    SYSTEM: "SYSTEM",
    ADMINISTRATORS: "Administrators",
    TRUSTED_INSTALLER: "TrustedInstaller",
    "S-1-5-32-545": "Users",
    "S-1-5-11": "Authenticated Users",
    "S-1-1-0": "Everyone",
    "S-1-5-4": "INTERACTIVE",
    "S-1-5-32-546": "Guests",
    "S-1-5-32-547": "Power Users",
    "S-1-15-2-1": "ALL APPLICATION PACKAGES",
}

# Access rights as SDDL spells them (two letters each), as mask bits.
_RIGHTS = {
    "GA": 0x10000000,
    "GR": 0x80000000,
    "GW": 0x40000000,
    "GX": 0x20000000,
    "RC": 0x00020000,
    "SD": 0x00010000,
    "WD": 0x00040000,
    "WO": 0x00080000,
    "CC": 0x00000001,
    "DC": 0x00000002,
    "LC": 0x00000004,
    "SW": 0x00000008,
    "RP": 0x00000010,
    "WP": 0x00000020,
    "DT": 0x00000040,
    "LO": 0x00000080,
    "CR": 0x00000100,
    "FA": 0x001F01FF,
    "FR": 0x00120089,
    "FW": 0x00120116,
    "FX": 0x001200A0,
    "KA": 0x000F003F,
    "KR": 0x00020019,
    "KW": 0x00020006,
    "KX": 0x00020019,
}
#: Rights that change a folder or what is in it: create files and folders, write data,
#: extended attributes and attributes, delete, change permissions or owner, and the
#: generic and maximum rights that include them.
WRITE_MASK = (
    0x2 | 0x4 | 0x10 | 0x40 | 0x100 | 0x10000 | 0x40000 | 0x80000 | 0x1000000 | 0x2000000
) | (0x10000000 | 0x40000000)
_DENY = frozenset({"D", "OD", "XD"})


def _sid(text: str) -> str:
    return _ALIASES.get(text, text)


def who(sid: str) -> str:
    """A SID as a person reads it: ``Users (S-1-5-32-545)``, or the SID alone."""
    name = NAMES.get(sid)
    return f"{name} ({sid})" if name else sid


def _mask(rights: str) -> int | None:
    """The access mask of an ACE's rights field; None when it cannot be read."""
    if rights.lower().startswith("0x"):
        try:
            return int(rights, 16)
        except ValueError:
            return None
    if len(rights) % 2:
        return None
    mask = 0
    for at in range(0, len(rights), 2):
        bits = _RIGHTS.get(rights[at : at + 2])
        if bits is None:
            return None
        mask |= bits
    return mask


def _aces(dacl: str) -> list[str] | None:
    """The ACE strings of a DACL's ``(…)(…)`` list (conditional ACEs nest parentheses)."""
    aces: list[str] = []
    depth, start = 0, -1
    for at, char in enumerate(dacl):
        if char == "(":
            if depth == 0:
                start = at + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                aces.append(dacl[start:at])
        elif depth == 0:
            return None  # text between ACEs: not an SDDL DACL we know
    return aces if depth == 0 else None


_PARTS = re.compile(r"(O|G|D|S):(.*?)(?=(?:O|G|D|S):|$)", re.S)


def acl_problems(sddl: str) -> list[str]:
    """What makes a folder with security descriptor ``sddl`` unsafe; empty when it is safe.

    Safe: owned by SYSTEM, Administrators or TrustedInstaller, and no allow entry
    (inherited or not) lets anyone else write, create, delete or change
    permissions. Deny entries only take rights away.
    """
    parts: dict[str, str] = {}
    for key, value in _PARTS.findall(sddl.strip()):
        # A DACL's ACEs may hold "S:" or "D:" inside conditions: keep the first split.
        parts.setdefault(key, value)
    if "O" not in parts or "D" not in parts:
        return [f"its permissions could not be read ({sddl or 'none reported'})"]
    problems = []
    owner = _sid(parts["O"])
    if owner not in TRUSTED_OWNERS:
        problems.append(f"is owned by {who(owner)}, not SYSTEM or Administrators")
    dacl = parts["D"]
    flags = re.match(r"[A-Z]*", dacl)
    body = dacl[flags.end() if flags else 0 :]
    if dacl.startswith("NO_ACCESS_CONTROL"):
        return [*problems, "has no permissions at all (everyone may write)"]
    aces = _aces(body)
    if aces is None:
        return [*problems, f"its permissions could not be read ({sddl})"]
    writers: list[str] = []
    for ace in aces:
        fields = ace.split(";")
        if len(fields) < 6:
            return [*problems, f"its permissions could not be read ({sddl})"]
        kind, _, rights, _, _, trustee = fields[:6]
        if kind in _DENY:
            continue
        sid = _sid(trustee)
        mask = _mask(rights)
        if sid in TRUSTED_WRITERS:
            continue
        if (mask is None or mask & WRITE_MASK) and who(sid) not in writers:
            writers.append(who(sid))
    if writers:
        problems.append(f"lets {', '.join(writers)} write in it")
    return problems


def folder_refusal(path: str, report: Mapping[str, Any], *, purpose: str) -> str | None:
    """Why nixmox must not use folder ``path`` (a ``guest-folder.ps1``-style report of
    it), or None when it may. ``purpose`` says what nixmox would run from it."""
    problems: list[str] = []
    if report.get("link"):
        problems.append("is a link or junction")
    if report.get("directory") is False:
        problems.append("is not a folder")
    problems += acl_problems(str(report.get("sddl") or ""))
    children = [str(c) for c in report.get("children") or ()]
    if report.get("created") and children:
        problems.append(
            f"already held {', '.join(children)} when nixmox had just created it "
            "(another account wrote there first)"
        )
    if not problems:
        return None
    return (
        f"{path} in the guest {'; '.join(problems)}: a user in the guest may have planted it, "
        f"and nixmox {purpose} as SYSTEM; refusing. An administrator in the guest can delete "
        "it; nixmox creates it again for SYSTEM and Administrators only"
    )


#: Who signs Steam's installer and steamcmd (the signing certificate's CN or O).
VALVE = ("Valve Corp.", "Valve Corporation")


def signer_names(subject: str) -> list[str]:
    """The CN and O values of a certificate subject (``CN=Valve Corp., O=Valve Corp., …``)."""
    found = re.findall(r'(?:^|,)\s*(?:CN|O)=("(?:[^"]|"")*"|[^,]*)', subject)
    return [v[1:-1].replace('""', '"') if v.startswith('"') else v.strip() for v in found]


def signature_problem(
    what: str, signature: Mapping[str, Any] | None, signers: Sequence[str] = VALVE
) -> str | None:
    """Why ``what`` must not run, from its reported Authenticode ``signature``
    (``status`` as ``Get-AuthenticodeSignature`` says it, the signer's ``subject``);
    None when Windows says the signature is valid and it names an accepted signer."""
    signature = signature or {}
    status = str(signature.get("status") or "not checked")
    subject = str(signature.get("subject") or "")
    accepted = {s.casefold() for s in signers}
    if status == "Valid" and {n.casefold() for n in signer_names(subject)} & accepted:
        return None
    by = f"signed by {subject}" if subject else "with no signer"
    return (
        f"{what} is not validly signed by {signers[0]} (signature {status}, {by}): "
        "refusing to run it as SYSTEM"
    )
