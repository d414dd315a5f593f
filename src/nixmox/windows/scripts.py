"""PowerShell scripts shipped in the package, run in a Windows guest through its agent.

Each script lives in ``nixmox/windows/scripts/NAME.ps1``. It reports by
printing exactly one JSON object on a line of its own (the last such line
counts); anything else it prints is kept as diagnostics.

Everything runs as SYSTEM, so where a script sits matters: a standard user
can create folders under ``C:\\ProgramData``. Before anything is written,
``guest-folder.ps1`` runs from the command line itself (``-EncodedCommand``:
nothing on disk to swap) and creates :data:`GUEST_DIR` for SYSTEM and
Administrators only, or reports the existing folder's owner and permissions;
nixmox refuses a folder others could write in
(:func:`~nixmox.windows.guest_folder.folder_refusal`). Each script is then
written there with the agent's ``file-write`` and run by ``run-verified.ps1``
(again from the command line), which hashes the file and runs it only when its
SHA-256 is that of the text nixmox wrote. Values reach both as JSON in
``$Nixmox`` on the first line of the command, parameters are splatted.

What the scripts share lives once, in ``prelude.ps1``; :func:`script_text` puts
it in each script where the script says ``# nixmox-prelude``, so what is
written, hashed and run is one whole script.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from nixmox.adapters.guest_agent import GuestAgent
from nixmox.core.errors import NixmoxError
from nixmox.core.results import CommandResult
from nixmox.core.text import printable, printable_data
from nixmox.windows.guest_folder import folder_refusal

GUEST_DIR = "C:\\ProgramData\\nixmox"
POWERSHELL = [
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
]
#: The scripts that run from the command line, never from a file.
BOOTSTRAP = ("guest-folder", "run-verified")
#: What every script shares (the report writer, signature checks, the update search),
#: put in place of the line :data:`PRELUDE_LINE` each script holds after its param block.
PRELUDE = "prelude"
PRELUDE_LINE = "# nixmox-prelude\n"


class ScriptError(NixmoxError):
    """A guest script did not run, or did not report one JSON object."""


class GuestRefused(ScriptError):
    """nixmox refused to use something in the guest another account could have planted."""


def _packaged(name: str) -> str:
    path = resources.files("nixmox.windows").joinpath("scripts", f"{name}.ps1")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScriptError(f"no packaged script {name}.ps1") from None


def script_text(name: str) -> str:
    """The packaged script ``name`` (without ``.ps1``) as nixmox writes or runs it:
    :data:`PRELUDE` in place of its ``# nixmox-prelude`` line."""
    text = _packaged(name)
    if text.count(PRELUDE_LINE) != 1:
        raise ScriptError(f"{name}.ps1 does not name the prelude once ({PRELUDE_LINE.strip()})")
    return text.replace(PRELUDE_LINE, _packaged(PRELUDE))


def script_in_guest(name: str) -> str:
    """Where ``name``'s script is written in the guest."""
    return f"{GUEST_DIR}\\{name}.ps1"


def script_sha256(name: str) -> str:
    """The SHA-256 (upper-case hex, as ``Get-FileHash`` prints it) of script ``name``
    as nixmox writes it into the guest (UTF-8)."""
    return hashlib.sha256(script_text(name).encode()).hexdigest().upper()


def ps_quote(text: str) -> str:
    """``text`` as a PowerShell single-quoted string (ASCII only: PowerShell also
    ends such a string at typographic quotes, which ASCII leaves out)."""
    if not text.isascii():
        raise ValueError("only ASCII goes into a PowerShell command line here")
    return "'" + text.replace("'", "''") + "'"


def encoded_argv(name: str, values: Mapping[str, Any]) -> list[str]:
    """The exec argv that runs packaged script ``name`` from the command line itself
    (``-EncodedCommand``, UTF-16LE base64), with ``values`` in ``$Nixmox``."""
    header = f"$Nixmox = ConvertFrom-Json {ps_quote(json.dumps(values, ensure_ascii=True))}"
    command = f"{header}\n{script_text(name)}"
    return [*POWERSHELL, "-EncodedCommand", base64.b64encode(command.encode("utf-16-le")).decode()]


def script_argv(name: str, params: Mapping[str, str | int | bool] | None = None) -> list[str]:
    """The agent ``exec`` argv that runs script ``name`` with ``params``, once
    ``run-verified.ps1`` has checked the file is what nixmox wrote.

    A false switch is left out, as it would be on a command line.
    """
    given = {k: v for k, v in (params or {}).items() if v is not False}
    return encoded_argv(
        "run-verified",
        {"Script": script_in_guest(name), "Sha256": script_sha256(name), "Params": given},
    )


def parse_report(name: str, result: CommandResult) -> dict[str, Any]:
    """The JSON object script ``name`` printed (its last JSON line).

    A leading byte order mark is dropped: with Windows' UTF-8 code page setting
    PowerShell's output can start with one (``str.strip`` keeps it).
    """
    for line in reversed(result.stdout.splitlines()):
        line = line.strip().lstrip("\ufeff").strip()
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict):
                # Update titles and details are the guest's words: no terminal escapes.
                return dict(printable_data(found))
    output = printable(result.stderr).strip() or printable(result.stdout).strip()
    detail = (output.splitlines() or [""])[-1]
    raise ScriptError(
        f"{name}.ps1 exited with {result.returncode} without a JSON report"
        + (f": {detail}" if detail else "")
    )


def run_script(
    agent: GuestAgent,
    name: str,
    params: Mapping[str, str | int | bool] | None = None,
    *,
    timeout: float = 600.0,
    upload: bool = True,
) -> dict[str, Any]:
    """Write script ``name`` into the guest (unless ``upload`` is off), run it, parse its report.

    Call :func:`prepare_guest_folder` first. A script that exits non-zero but
    still reports is returned as is: the report says what failed, and the caller
    decides. A file that is not what nixmox wrote is never run
    (:class:`GuestRefused`).
    """
    if upload:
        agent.file_write(script_in_guest(name), script_text(name))
    result = agent.exec(script_argv(name, params), timeout=timeout)
    report = parse_report(name, result)
    if report.get("refused"):
        raise GuestRefused(f"{name}.ps1: {report['refused']}")
    return report


def prepare_guest_folder(agent: GuestAgent) -> None:
    """Create :data:`GUEST_DIR` for SYSTEM and Administrators only, or check the one there.

    :class:`GuestRefused` when another account owns it or may write in it.
    """
    result = agent.exec(encoded_argv("guest-folder", {"Path": GUEST_DIR}), timeout=120.0)
    report = parse_report("guest-folder", result)
    if not report.get("ok"):
        raise ScriptError(
            f"could not prepare {GUEST_DIR} in the guest: {report.get('detail') or 'no reason'}"
        )
    refusal = folder_refusal(GUEST_DIR, report, purpose="runs the scripts it writes there")
    if refusal is not None:
        raise GuestRefused(refusal)
