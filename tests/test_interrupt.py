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

import pytest

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
    # The vzdump goes on on the server: the report, the journal and history name its UPID.
    [dump] = _vzdumps(lab)
    assert dump["status"] == "running"
    assert f"still running on the server: backup of nixos-vm ({dump['upid']})" in err
    assert summary["still_running"] == [{"upid": dump["upid"], "what": "backup of nixos-vm"}]
    history = subprocess.run(
        [sys.executable, "-m", "nixmox.cli.main", "history", "--json", "--config", str(EXAMPLE)],
        env={**os.environ, "NIXMOX_STATE_DIR": str(state), "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [row] = json.loads(history)
    assert f"still running on the server: backup of nixos-vm ({dump['upid']})" in row["lines"]


def test_sigint_while_apply_waits_for_a_guest_lock_writes_nothing_more(
    lab: RunningLab, tmp_path: Path
) -> None:
    lab.pve.add_declared_guests()
    lab.pve.snapshot_lock(101, "backup")  # someone else's vzdump holds nixos-vm
    text = EXAMPLE.read_text()
    assert text.count("cores = 4\nmemory = 8192") == 1
    inventory = tmp_path / "nixmox.toml"
    inventory.write_text(text.replace("cores = 4\nmemory = 8192", "cores = 4\nmemory = 4096"))
    before = dict(lab.pve.guest(101).config)
    state = tmp_path / "state"
    process = _nixmox(
        lab, state, "apply", "--yes", "--host-root", "/nonexistent", "--config", str(inventory)
    )
    # apply reads nixos-vm again and again while it waits for the lock to go.
    deadline = time.monotonic() + 60
    while sum(r[1].endswith("/qemu/101/config") for r in list(lab.pve.requests)) < 3:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "apply never waited on the lock"
        time.sleep(0.05)
    writes = len([r for r in list(lab.pve.requests) if r[0] != "GET"])
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "internal error" not in err and "Traceback" not in err
    # Nothing was written after the signal; the guest is as it was.
    assert len([r for r in list(lab.pve.requests) if r[0] != "GET"]) == writes
    assert lab.pve.guest(101).config == before
    assert "SKIPPED guest nixos-vm" in out and "gave up waiting for nixos-vm's lock" in out
    journal = Journal(state)
    try:
        [run] = journal.runs("apply")
    finally:
        journal.close()
    assert run.result == "interrupted" and run.summary["interrupted"] == "SIGINT"
    [vm] = [o for o in run.summary["outcomes"] if o["name"] == "nixos-vm"]
    assert vm["result"] == "skipped" and "interrupted by SIGINT" in vm["error"]


def test_sigint_during_a_verify_restore_boots_nothing_and_cleans_the_scratch_guest(
    lab: RunningLab, tmp_path: Path
) -> None:
    lab.pve.add_declared_guests()
    lab.pve.seed_backup("backups", 101, "qemu", datetime.now() - timedelta(hours=1))
    lab.pve.hold_answers(0.4)  # the restore is in flight long enough to be interrupted
    state = tmp_path / "state"
    process = _nixmox(
        lab, state, "backup", "verify", "--json", "--config", str(EXAMPLE), "--guest", "nixos-vm"
    )
    deadline = time.monotonic() + 60
    while not [t for t in list(lab.pve.tasks.values()) if t.get("type") == "qmrestore"]:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no restore started"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "internal error" not in err and "Traceback" not in err
    # Restored, never booted, and removed again.
    assert not [r for r in lab.pve.requests if r[1].endswith("/9900/status/start")]
    assert 9900 not in {g.vmid for g in lab.pve.vms}
    [row] = json.loads(out)["guests"]
    assert not row["ok"] and row["cleaned"] and row["scratch"] == 9900
    assert "interrupted by SIGINT; the restored copy was not booted" in row["message"]
    journal = Journal(state)
    try:
        [run] = journal.runs("backup verify")
    finally:
        journal.close()
    assert run.result == "interrupted" and run.summary["guests"][0]["cleaned"] is True


@pytest.mark.parametrize("when", ["restore", "boot"])
def test_a_killed_verify_leaves_a_scratch_guest_the_next_run_removes_and_reports(
    lab: RunningLab, tmp_path: Path, when: str
) -> None:
    lab.pve.add_declared_guests()
    lab.pve.seed_backup("backups", 101, "qemu", datetime.now() - timedelta(hours=1))
    state = tmp_path / "state"
    args = ("backup", "verify", "--config", str(EXAMPLE), "--guest", "nixos-vm")

    def reached() -> bool:
        if when == "restore":  # Proxmox took the restore; its answer is still on the way
            return any(t.get("type") == "qmrestore" for t in list(lab.pve.tasks.values()))
        return any(r[1].endswith("/9900/status/start") for r in list(lab.pve.requests))

    if when == "restore":
        lab.pve.late_answer = 0.5  # the restore is made; its UPID not yet known to nixmox
    else:
        lab.pve.hold_answers(0.3)
    process = _nixmox(lab, state, *args)
    deadline = time.monotonic() + 60
    while not reached():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"never reached the {when}"
        time.sleep(0.01)
    process.kill()  # SIGKILL: no clean-up of its own
    process.communicate(timeout=30)
    lab.pve.hold_answers(0)
    lab.pve.late_answer = 0
    time.sleep(0.5)  # what the killed run had asked for lands
    [scratch] = [g for g in lab.pve.vms if g.vmid == 9900]
    assert "nixmox backup verify scratch guest" in str(scratch.config.get("description"))
    assert [p.name for p in (state / "verify-scratch").glob("*.json")] == ["9900.json"]
    record = json.loads((state / "verify-scratch" / "9900.json").read_text())
    # Killed before the restore's answer came, the run never learnt its UPID: the next run
    # finds the task in the node's task list.
    assert (record["upid"] is None) == (when == "restore"), record

    again = _nixmox(lab, state, *args[:2], "--json", *args[2:])
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err
    report = json.loads(out)
    [left] = report["leftovers"]
    assert left["vmid"] == 9900 and left["outcome"] == "removed", left
    assert "removed scratch guest 9900" in left["message"]
    # The leftover went first, so this run's own copy could use the VMID again, and went too.
    assert [g["scratch"] for g in report["guests"]] == [9900] and report["guests"][0]["ok"]
    assert 9900 not in {g.vmid for g in lab.pve.vms}
    assert list((state / "verify-scratch").iterdir()) == []
    deletes = [r for r in lab.pve.requests if r[0] == "DELETE" and r[1].endswith("/9900")]
    assert len(deletes) == 2  # the leftover and this run's own copy
    journal = Journal(state)
    try:
        runs = journal.runs("backup verify")
    finally:
        journal.close()
    assert [r.result for r in runs] == ["ok", "interrupted"]
    assert runs[0].summary["leftovers"][0]["outcome"] == "removed"
