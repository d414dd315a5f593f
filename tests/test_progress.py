"""Progress as long operations go: plain timestamped lines off a terminal (the systemd
journal), a rich live display on one, nothing with -q, and --json untouched."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from nixmox.adapters.runner import Runner
from nixmox.cli import backup as backup_command
from nixmox.core import progress
from nixmox.core.progress import Lines, Live
from tests.clock import FakeClock
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def _backup(lab: RunningLab, state: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **lab.env, "NIXMOX_STATE_DIR": str(state)}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.Popen(
        [sys.executable, "-m", "nixmox.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _vzdump_running(lab: RunningLab) -> bool:
    tasks = [t for t in list(lab.pve.tasks.values()) if t.get("type") == "vzdump"]
    return bool(tasks) and tasks[-1].get("status") == "running"


def test_plain_lines_come_while_the_vzdump_runs(lab: RunningLab, tmp_path: Path) -> None:
    lab.pve.add_declared_guests()
    lab.pve.time_scale = 0.6  # the VM's vzdump takes 6 s and logs its progress 5 times
    process = _backup(
        lab, tmp_path / "state", "backup", "--json", "--config", str(EXAMPLE), "--guest", "nixos-vm"
    )
    heard: list[tuple[str, bool]] = []  # each stderr line, and whether the vzdump still ran

    def listen() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            heard.append((line.rstrip("\n"), _vzdump_running(lab)))

    listener = threading.Thread(target=listen)
    listener.start()
    out = process.stdout.read() if process.stdout else ""
    process.wait(timeout=120)
    listener.join(timeout=30)
    assert process.returncode == 0, heard
    assert json.loads(out)["guests"][0]["result"] == "ok"  # --json stdout: only the JSON
    lines = [line for line, _ in heard]
    assert all(re.match(STAMP, line) for line in lines), lines
    assert lines[0].endswith(" backing up nixos-vm")
    # vzdump's own progress (percent, rate), read from its task log while it ran.
    during = [line for line, running in heard if running and "nixos-vm: " in line]
    assert len(during) >= 2, lines
    assert re.search(r"nixos-vm: \d+% \([\d.]+ GiB of [\d.]+ GiB\), read [\d.]+ MiB/s", during[0])
    assert re.search(r"\[\d+s elapsed\]$", during[0])
    assert re.search(r"nixos-vm: backed up in \d+s \(backups:backup/vzdump-qemu-101-", lines[-1])


def test_quiet_shows_no_progress(lab: RunningLab, tmp_path: Path) -> None:
    lab.pve.add_declared_guests()
    lab.pve.time_scale = 0.2
    process = _backup(
        lab, tmp_path / "state", "-q", "backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert err == "" and "1 of 1 guest backed up" in out


def test_a_terminal_gets_a_live_display(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_env.pve.add_declared_guests()
    lab_env.pve.time_scale = 0.3
    screen = io.StringIO()
    live = Live(Console(file=screen, force_terminal=True, width=120))
    code = backup_command.backup(
        EXAMPLE, ["nixos-vm"], dry_run=False, protected=False, as_json=False, progress=live
    )
    assert code == 0
    shown = screen.getvalue()
    assert "\x1b[" in shown  # drawn with terminal control sequences
    assert "backing up nixos-vm" in shown  # the spinner line
    assert re.search(r"\d+% \([\d.]+ GiB of", shown)  # vzdump's progress on it
    assert re.search(r"nixos-vm: backed up in \d+s", shown)  # and the line it ended with
    assert "1 of 1 guest backed up" in capsys.readouterr().out  # the report: stdout


def test_plain_lines_say_still_when_nothing_new_comes() -> None:
    clock, out = FakeClock(), io.StringIO()
    lines = Lines(out, clock)
    lines.start("nixos-lxc", "backing up nixos-lxc")
    for _ in range(12):
        clock.sleep(1)
        lines.update("nixos-lxc")  # a look at the task: no news
    lines.update("nixos-lxc", "12% (1.0 GiB of 8.0 GiB)")
    clock.sleep(3)
    lines.end("nixos-lxc", "nixos-lxc: backed up in 15s")
    said = [re.sub(STAMP, "", line) for line in out.getvalue().splitlines()]
    assert said == [
        "backing up nixos-lxc",
        "Still backing up nixos-lxc... [10s elapsed]",
        "nixos-lxc: 12% (1.0 GiB of 8.0 GiB) [12s elapsed]",
        "nixos-lxc: backed up in 15s",
    ]


def test_one_long_command_gets_still_lines_and_none_once_it_ended(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # apt's dist-upgrade or a NixOS build is one command: no task log to look at in
    # between, so the reporter itself says "still" while it runs (off a terminal).
    monkeypatch.setattr(progress, "STILL_EVERY", 0.4)
    progress.configure(0)
    try:
        with progress.for_stderr() as shown:
            shown.start("pve1", "upgrading pve1")
            Runner().run(["sleep", "1.5"], changes=False)
            during = capsys.readouterr().err
            shown.end("pve1", "pve1: ok")
            capsys.readouterr()
            Runner().run(["sleep", "0.6"], changes=False)
        after = capsys.readouterr().err
    finally:
        progress.configure(-1)
    said = [re.sub(STAMP, "", line) for line in during.splitlines()]
    assert said[0] == "upgrading pve1"
    stills = [s for s in said[1:] if s.startswith("Still upgrading pve1... [")]
    assert len(stills) >= 2 and len(stills) == len(said) - 1, said
    assert after == ""
