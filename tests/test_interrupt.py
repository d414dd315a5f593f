"""SIGINT/SIGTERM during a journaled run: finish what is in flight, start nothing new, say so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from nixmox.adapters.journal import Journal
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"


def _vzdumps(lab: RunningLab) -> list[dict[str, object]]:
    return [dict(t) for t in list(lab.pve.tasks.values()) if t.get("type") == "vzdump"]


def _nixmox(lab: RunningLab, state: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        **lab.env,
        "NIXMOX_STATE_DIR": str(state),
        "PYTHONPATH": str(ROOT / "src"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "nixmox.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_vzdump(lab: RunningLab, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not _vzdumps(lab):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no vzdump started"
        time.sleep(0.05)


def _backup_run(state: Path) -> tuple[str | None, dict[str, object]]:
    journal = Journal(state)
    try:
        [run] = journal.runs("backup")
        return run.result, run.summary
    finally:
        journal.close()


def test_sigint_during_a_vzdump_finishes_that_guest_and_starts_no_other(
    lab: RunningLab, tmp_path: Path
) -> None:
    lab.pve.add_declared_guests()
    lab.pve.time_scale = 0.2  # a vzdump takes 2 s
    # Five archives an hour apart for each guest: a normal run would prune some of them.
    seeded = {
        vmid: {
            lab.pve.seed_backup("backups", vmid, kind, datetime.now() - timedelta(hours=h))
            for h in range(1, 6)
        }
        for vmid, kind in ((101, "qemu"), (100, "lxc"))
    }
    state = tmp_path / "state"
    process = _nixmox(
        lab, state, "backup", "--json", "--config", str(EXAMPLE),
        "--guest", "nixos-vm", "--guest", "nixos-lxc",
    )  # fmt: skip
    _wait_for_vzdump(lab, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    assert "SIGINT" in err and "internal error" not in err and "Traceback" not in err
    [dump] = _vzdumps(lab)  # the second guest's vzdump never started
    assert dump["id"] == "101" and dump["status"] == "stopped"
    # Nothing was pruned after the stop request: every seeded archive is still there.
    for vmid, names in seeded.items():
        assert names <= {f"backups:{n}" for n in lab.pve.backups("backups", vmid)}, vmid
    guests = {g["guest"]: g for g in json.loads(out)["guests"]}
    assert guests["nixos-vm"]["result"] == "ok" and guests["nixos-vm"]["archive"]
    assert guests["nixos-lxc"]["result"] == "skipped"

    result, summary = _backup_run(state)
    assert result == "interrupted" and summary["interrupted"] == "SIGINT"
    rows = {g["guest"]: g["result"] for g in summary["guests"]}  # type: ignore[attr-defined]
    assert rows == {"nixos-vm": "ok", "nixos-lxc": "skipped"}
    history = subprocess.run(
        [sys.executable, "-m", "nixmox.cli.main", "history", "--config", str(EXAMPLE)],
        env={**os.environ, "NIXMOX_STATE_DIR": str(state), "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "interrupted" in history and "1 guest backed up" in history, history
    assert "1 skipped: nixos-lxc: not started: interrupted by SIGINT" in history


def test_a_second_sigterm_stops_at_once_and_still_journals(lab: RunningLab, tmp_path: Path) -> None:
    lab.pve.add_declared_guests()
    lab.pve.time_scale = 1.0  # a vzdump takes 10 s: the second signal must not wait for it
    state = tmp_path / "state"
    process = _nixmox(lab, state, "backup", "--config", str(EXAMPLE), "--guest", "nixos-vm")
    _wait_for_vzdump(lab, process)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 143, err
    assert time.monotonic() - started < 5
    result, summary = _backup_run(state)
    assert result == "interrupted" and summary["interrupted"] == "SIGTERM"
