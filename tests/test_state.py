"""The state directory: the SQLite run journal and the run lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixmox.adapters.journal import Journal, StateLock, job_run, state_dir
from nixmox.core.errors import LockBusy


def test_state_dir_comes_from_the_environment(tmp_path: Path) -> None:
    assert state_dir({"NIXMOX_STATE_DIR": str(tmp_path)}) == tmp_path
    assert state_dir({}) == Path("/var/lib/nixmox")


def test_journal_records_runs_newest_first(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    first = journal.start("backup")
    journal.finish(first, "ok", {"guests": 3})
    second = journal.start("update nixos")
    journal.finish(second, "failed", {"rolled_back": ["nixos-lxc"]})
    runs = journal.runs()
    assert [r.command for r in runs] == ["update nixos", "backup"]
    assert runs[0].result == "failed" and runs[0].summary == {"rolled_back": ["nixos-lxc"]}
    assert runs[1].seconds is not None and runs[1].seconds >= 0
    assert [r.command for r in journal.runs("update")] == ["update nixos"]
    assert [r.command for r in journal.runs("backup")] == ["backup"]
    journal.close()
    # The journal survives the process: a new handle reads the same rows.
    assert len(Journal(tmp_path).runs()) == 2


def test_new_state_dir_is_private(tmp_path: Path) -> None:
    Journal(tmp_path / "state").close()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700


def test_job_run_records_success_and_errors(tmp_path: Path) -> None:
    with job_run(tmp_path, "snapshot") as run:
        run.summary["taken"] = 4
    with pytest.raises(RuntimeError), job_run(tmp_path, "backup") as run:
        raise RuntimeError("storage full")
    runs = Journal(tmp_path).runs()
    assert (runs[0].command, runs[0].result, runs[0].summary["error"]) == (
        "backup",
        "error",
        "storage full",
    )
    assert (runs[1].command, runs[1].result, runs[1].summary) == ("snapshot", "ok", {"taken": 4})


HOLDER = """
import sys, time
from pathlib import Path
from nixmox.adapters.journal import StateLock
lock = StateLock(Path(sys.argv[1]))
lock.acquire("backup", 1)
print("held", flush=True)
time.sleep(30)
"""


def test_second_run_names_the_holder_and_gives_up_in_time(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(LockBusy) as info:
            StateLock(tmp_path).acquire("snapshot", wait=0.5)
        assert 0.4 < time.monotonic() - started < 5
        assert f"PID {holder.pid}" in str(info.value) and "nixmox backup" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone (even killed), the lock is free again.
    lock = StateLock(tmp_path)
    lock.acquire("snapshot", wait=2)
    lock.release()


def test_lock_waits_for_a_short_holder(tmp_path: Path) -> None:
    first = StateLock(tmp_path)
    first.acquire("backup")
    code = (
        "import sys; from pathlib import Path; from nixmox.adapters.journal import StateLock; "
        "StateLock(Path(sys.argv[1])).acquire('snapshot', 10); print('got it')"
    )
    waiter = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting
    first.release()
    out, _ = waiter.communicate(timeout=10)
    assert out == "got it\n" and waiter.returncode == 0


def test_unwritable_state_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    from nixmox.core.errors import NixmoxError

    with pytest.raises(NixmoxError, match="cannot create the state directory"):
        Journal(blocker / "state")
