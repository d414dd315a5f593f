"""PowerShell scripts shipped in the package, run in a Windows guest through its agent.

Each script lives in ``nixmox/windows/scripts/NAME.ps1``, is written into the
guest with the agent's ``file-write`` (under :data:`GUEST_DIR`) and run with
``powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File``.
It reports by printing exactly one JSON object on a line of its own (the
last such line counts); anything else it prints is kept as diagnostics.
Parameters are passed as ``-Name value`` pairs after the script path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from nixmox.adapters.guest_agent import GuestAgent
from nixmox.core.errors import NixmoxError
from nixmox.core.results import CommandResult
from nixmox.core.text import printable, printable_data

GUEST_DIR = "C:\\ProgramData\\nixmox"
POWERSHELL = [
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-File",
]


class ScriptError(NixmoxError):
    """A guest script did not run, or did not report one JSON object."""


def script_text(name: str) -> str:
    """The packaged script ``name`` (without ``.ps1``)."""
    path = resources.files("nixmox.windows").joinpath("scripts", f"{name}.ps1")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScriptError(f"no packaged script {name}.ps1") from None


def script_in_guest(name: str) -> str:
    """Where ``name``'s script is written in the guest."""
    return f"{GUEST_DIR}\\{name}.ps1"


def script_argv(name: str, params: Mapping[str, str | int | bool] | None = None) -> list[str]:
    """The agent ``exec`` argv that runs script ``name`` with ``params``."""
    argv = [*POWERSHELL, script_in_guest(name)]
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            if value:
                argv.append(f"-{key}")
            continue
        argv += [f"-{key}", str(value)]
    return argv


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

    A script that exits non-zero but still reports is returned as is: the
    report says what failed, and the caller decides.
    """
    if upload:
        agent.file_write(script_in_guest(name), script_text(name))
    result = agent.exec(script_argv(name, params), timeout=timeout)
    return parse_report(name, result)


def ensure_guest_dir(agent: GuestAgent) -> None:
    """Create :data:`GUEST_DIR` in the guest unless it exists (the agent's file-write cannot).

    The argv has no spaces so no quoting rule of ``cmd.exe`` applies.
    """
    argv = ["cmd.exe", "/c", "if", "not", "exist", GUEST_DIR, "mkdir", GUEST_DIR]
    result = agent.exec(argv, timeout=60.0)
    if not result.ok:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise ScriptError(
            f"could not create {GUEST_DIR} in the guest"
            + (f": {detail[-1]}" if detail else f" (exit {result.returncode})")
        )
