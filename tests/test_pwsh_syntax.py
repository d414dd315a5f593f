"""Every packaged PowerShell script parses (tree-sitter's PowerShell grammar, tests/pwsh).

Real PowerShell cannot be installed here; tree-sitter-powershell (npm, with
prebuilt parsers) is the parser that can. It recovers from errors, so a
script is broken exactly when its tree holds an ERROR or MISSING node.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nixmox.windows.scripts import PRELUDE, script_text
from tests.peers.require import missing

ROOT = Path(__file__).resolve().parent.parent
PWSH = ROOT / "tests" / "pwsh"
SCRIPTS = sorted((ROOT / "src" / "nixmox" / "windows" / "scripts").glob("*.ps1"))
#: The scripts nixmox runs (the prelude only ever goes into them).
RUN = [p for p in SCRIPTS if p.stem != PRELUDE]


def parse(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (PWSH / "node_modules" / "tree-sitter-powershell").is_dir():
        missing("PowerShell parser not installed: npm ci in tests/pwsh (needs nodejs npm)")
    assert node is not None
    return subprocess.run(
        [node, "--no-deprecation", str(PWSH / "check.mjs"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_package_ships_scripts() -> None:
    assert {p.stem for p in SCRIPTS} >= {"provision-steam", "provision-msi", "provision-postcheck"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_each_packaged_script_parses(script: Path) -> None:
    proc = parse(script)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", RUN, ids=[p.name for p in RUN])
def test_each_script_parses_as_written_into_the_guest(script: Path, tmp_path: Path) -> None:
    # The prelude goes in after the param block: what runs must parse as a whole,
    # and the packaged file must hold the prelude's line exactly once.
    whole = tmp_path / script.name
    whole.write_text(script_text(script.stem))
    assert "# nixmox-prelude" not in whole.read_text()
    proc = parse(whole)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("param([switch]$CheckOnly)\nif ($CheckOnly) {\n    Write-Output 'x'\n", "missing }"),
        ("$report = @{ ok = $true; detail = }\n", "syntax error"),
        ("foreach ($f in @(1, 2) { $f }\n", "syntax error"),
        ("$a = 'never closed\nWrite-Output $a\n", "syntax error"),
    ],
    ids=["unclosed block", "hashtable without value", "unclosed foreach", "open string"],
)
def test_a_broken_script_is_rejected(tmp_path: Path, source: str, where: str) -> None:
    good, broken = tmp_path / "good.ps1", tmp_path / "broken.ps1"
    good.write_text(SCRIPTS[0].read_text())
    broken.write_text(source)
    proc = parse(good, broken)
    assert proc.returncode == 1
    errors = [line for line in proc.stdout.splitlines() if line.startswith(str(tmp_path))]
    assert errors and all(line.startswith(f"{broken}:") for line in errors)
    assert where in errors[0]


@pytest.mark.parametrize("script", RUN, ids=[p.name for p in RUN])
def test_each_script_is_ascii_and_reports_through_the_escaping_writer(script: Path) -> None:
    # Windows PowerShell 5.1 reads a BOM-less script as ANSI, and prints through the
    # console's OEM code page: only ASCII goes in, only escaped JSON comes out.
    text = script_text(script.stem)
    assert text.isascii()
    assert "[regex]::Replace($json, '[^\\x20-\\x7E]'" in text
    assert "| ConvertTo-Json" not in text
