"""The CLI spine: every command of the contract exists, errors are one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nixmox import __version__
from nixmox.cli.main import run

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "homelab.toml")
NIXMOX = str(Path(sys.executable).parent / "nixmox")


def test_version_is_printed_by_the_installed_script() -> None:
    proc = subprocess.run([NIXMOX, "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout == f"nixmox {__version__}\n"


def test_help_lists_the_contract_commands() -> None:
    proc = subprocess.run([NIXMOX, "--help"], capture_output=True, text=True, check=True)
    for command in (
        "config",
        "doctor",
        "plan",
        "apply",
        "adopt",
        "snapshot",
        "backup",
        "prune-sim",
        "update",
        "status",
        "render",
        "install",
        "uninstall",
        "history",
        "template",
        "windows",
        "zfs",
    ):
        assert f"  {command} " in proc.stdout, command


def test_config_goes_before_or_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--config", EXAMPLE, "config", "check"]) == 0
    assert run(["config", "check", "--config", EXAMPLE]) == 0
    assert capsys.readouterr().out.count("valid") == 2


def test_config_check_counts_in_the_right_number(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "check", "--config", EXAMPLE]) == 0
    assert capsys.readouterr().out.endswith(
        "valid (1 node, 3 bridges, 4 datasets, 4 storages, 3 guests, 1 snapshot policy)\n"
    )


def test_bad_flag_is_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["plan", "--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nixmox: No such option: --no-such-flag (see `nixmox plan --help`)"]


def test_bad_flag_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["prune-sim", "--keep-daily", "-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--keep-daily" in err[0]


def test_internal_errors_show_traceback_only_with_vv(tmp_path: Path) -> None:
    bad = tmp_path / "n.toml"
    bad.write_text("[[guests]]\n")
    quiet = subprocess.run(
        [NIXMOX, "config", "check", "--config", str(bad)], capture_output=True, text=True
    )
    loud = subprocess.run(
        [NIXMOX, "-vv", "config", "check", "--config", str(bad)], capture_output=True, text=True
    )
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert loud.returncode == 1
    # config check reports problems itself (no exception), so -vv adds nothing;
    # a command that raises does show the traceback at -vv:
    pending = subprocess.run([NIXMOX, "-vv", "status"], capture_output=True, text=True)
    assert pending.returncode == 1 and "Traceback" in pending.stderr


def test_help_is_typers_own_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `nixmox --help` prints a pre-rendered copy (cli/usage.py) without loading
    # typer; it must be what typer itself prints (else: scripts/gen_reference.py).
    from nixmox.cli.app import invoke

    for columns in ("80", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        assert invoke(["--help"]) == 0
        typer_text = capsys.readouterr().out
        for args in (["--help"], ["-h"], []):
            assert run(args) == 0
            assert capsys.readouterr().out == typer_text, (columns, args)
    # A narrow terminal wraps differently: typer renders it.
    monkeypatch.setenv("COLUMNS", "60")
    assert run(["--help"]) == 0
    narrow = capsys.readouterr().out
    assert max(len(line) for line in narrow.splitlines()) <= 60


@pytest.mark.parametrize(
    "args",
    [
        ["config", "check", "--config", EXAMPLE],
        ["--config", EXAMPLE, "config", "check"],
        ["--json", "config", "check", f"--config={EXAMPLE}"],
        ["-v", "config", "check", "--config", EXAMPLE, "--json"],
        ["--config", "/nonexistent.toml", "config", "check", "--config", EXAMPLE],
        ["config", "check", "--config", "/nonexistent.toml"],
        ["config", "check", "--config", str(Path(EXAMPLE).parent)],
        ["config", "--json", "check", "--config", EXAMPLE],
        ["config", "check", "--config"],
        ["-q", "config", "check", "--config", EXAMPLE, "--bogus"],
    ],
)
def test_config_check_says_what_typer_says(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # config check runs without typer (cli/main.py); what it prints and returns
    # is what the typer-parsed command prints and returns.
    from nixmox.cli.app import invoke
    from nixmox.core.errors import NixmoxError

    code = run(args)
    fast = capsys.readouterr()
    try:
        slow_code = invoke(args)
    except NixmoxError as exc:
        print(f"nixmox: {exc}", file=sys.stderr)
        slow_code = exc.exit_code
    slow = capsys.readouterr()
    assert (code, fast.out, fast.err) == (slow_code, slow.out, slow.err)


def test_config_check_and_help_do_not_load_typer() -> None:
    probe = (
        "import sys; from nixmox.cli.main import run; "
        f"run(['config', 'check', '--config', {EXAMPLE!r}]); run(['--help']); "
        "print(sorted(m for m in ('typer', 'rich', 'click') if m in sys.modules))"
    )
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.splitlines()[-1] == "[]"


def _every_command(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _every_command(sub, (*path, name))
    return found


def test_help_shows_names_not_python_types(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from nixmox.cli.app import app

    commands = _every_command(typer.main.get_command(app))
    assert ("adopt",) in commands and ("zfs", "cache", "add") in commands
    for path in commands:
        try:
            assert run([*path, "--help"]) == 0, path
        except SystemExit as exc:  # prune-sim's own (argparse) help
            assert (path, exc.code) == (("prune-sim",), 0)
        text = capsys.readouterr().out
        # typer's own labels (`<list[str]>`, `<int>`, `<path>`): every value has a NAME.
        assert "<" not in text and "{" not in text.split("\n", 1)[0], (path, text)
    run(["adopt", "--help"])
    assert capsys.readouterr().out.startswith("Usage: nixmox adopt [OPTIONS] VMID...\n")
    run(["backup", "--help"])
    assert "--guest NAME" in capsys.readouterr().out


def test_a_missing_and_an_unreadable_inventory_are_config_errors_alike(tmp_path: Path) -> None:
    unreadable = tmp_path / "conf" / "nixmox.toml"
    unreadable.parent.mkdir()
    unreadable.write_text("timezone = 'UTC'\n")
    unreadable.chmod(0o600)  # root's: a user can see it exists, not read it
    tmp_path.chmod(0o755)
    unreadable.parent.chmod(0o755)
    garbled = tmp_path / "garbled.toml"
    garbled.write_bytes(b"\xff\xfe")
    cases = {
        tmp_path / "missing.toml": "inventory not found (give --config PATH)",
        tmp_path: "cannot read the inventory: is a directory",
        garbled: "cannot read the inventory: not UTF-8 text (byte 0)",
    }
    for path, reason in cases.items():
        proc = subprocess.run(
            [NIXMOX, "plan", "--config", str(path)], capture_output=True, text=True
        )
        assert (proc.returncode, proc.stderr) == (1, f"nixmox: {path}: {reason}\n")
    if os.geteuid() == 0 and shutil.which("setpriv"):
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        # As another user, the file exists but cannot be read: the same exit code.
        proc = subprocess.run(
            [*as_nobody, NIXMOX, "config", "check", "--config", str(unreadable)],
            capture_output=True,
            text=True,
        )
        expected = f"nixmox: {unreadable}: cannot read the inventory: permission denied\n"
        assert (proc.returncode, proc.stderr) == (1, expected)


def test_help_calls_the_users_server_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    import typer

    from nixmox.cli.app import app

    # "the lab" is this project's test server; the user's is their Proxmox.
    for path in _every_command(typer.main.get_command(app)):
        if path == ("prune-sim",):
            continue
        run([*path, "--help"])
        text = capsys.readouterr().out
        assert not re.search(r"\blab\b", text), (path, text)
