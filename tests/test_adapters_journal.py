"""The state directory: the SQLite run journal and the runs' locks."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixmox.adapters.journal import Journal, job_run, state_dir
from nixmox.adapters.locks import LockSet, dataset_claims, guest_claims, job_claim, node_claims
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
from nixmox.adapters.locks import LockSet, guest_claims
locks = LockSet(Path(sys.argv[1]), "backup")
locks.acquire(guest_claims([(101, "pve1")]), 1)
print("held", flush=True)
time.sleep(30)
"""


def test_second_run_names_the_holder_and_gives_up_in_time(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    heard: list[str] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with pytest.raises(LockBusy) as info:
            LockSet(tmp_path, "update nixos").acquire(
                guest_claims([(101, "pve1")]), wait=0.5, report=heard.append
            )
        assert 0.4 < time.monotonic() - started < 5
        assert "guest 101" in str(info.value)
        assert f"PID {holder.pid}" in str(info.value) and "nixmox backup" in str(info.value)
        # The wait said what it waited for as it began, not only when it gave up.
        assert heard and heard[0].startswith("waiting for guest 101: in use by PID")
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone (even killed), the lock is free again.
    locks = LockSet(tmp_path, "update nixos")
    locks.acquire(guest_claims([(101, "pve1")]), wait=2)
    locks.release()


def test_locks_protect_what_they_name_and_nothing_else(tmp_path: Path) -> None:
    backup = LockSet(tmp_path, "backup")
    backup.acquire([job_claim("backup"), *guest_claims([(101, "pve1"), (100, "pve1")])], 1)
    try:
        # A snapshot of a dataset tree, an update of another guest: not held up.
        for command, claims in (
            ("snapshot", [job_claim("snapshot"), *dataset_claims(["rpool/data"])]),
            ("update nixos", [job_claim("update nixos"), *guest_claims([(102, "pve1")])]),
        ):
            other = LockSet(tmp_path, command)
            other.acquire(claims, wait=0)
            other.release()
        # The same job, the same guest, the whole node: serialised.
        for command, claims in (
            ("backup", [job_claim("backup")]),
            ("update nixos", guest_claims([(101, "pve1")])),
            ("update host", node_claims(["pve1"])),
        ):
            with pytest.raises(LockBusy):
                LockSet(tmp_path, command).acquire(claims, wait=0.2)
    finally:
        backup.release()


def test_dataset_trees_serialise_when_they_overlap(tmp_path: Path) -> None:
    inner = LockSet(tmp_path, "snapshot")
    inner.acquire(dataset_claims(["rpool/data/vm"]), 0)
    try:
        sibling = LockSet(tmp_path, "zfs cache add")
        sibling.acquire(dataset_claims(["rpool/data/ct"]), 0)
        sibling.release()
        for tree in ("rpool/data", "rpool", "rpool/data/vm"):
            with pytest.raises(LockBusy, match=f"dataset tree {tree}"):
                LockSet(tmp_path, "zfs cache add").acquire(dataset_claims([tree]), 0.1)
    finally:
        inner.release()


def test_lock_waits_for_a_short_holder(tmp_path: Path) -> None:
    first = LockSet(tmp_path, "backup")
    first.acquire([job_claim("backup")], 0)
    code = (
        "import sys; from pathlib import Path; "
        "from nixmox.adapters.locks import LockSet, job_claim; "
        "LockSet(Path(sys.argv[1]), 'backup').acquire([job_claim('backup')], 10); print('got it')"
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


# -- the journal never blocks the work, and never lies ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_run_whose_process_is_gone_is_marked_interrupted(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    pid = _dead_pid()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        db.execute(
            "INSERT INTO runs (command, started, pid) VALUES ('backup', ?, ?)",
            (time.time() - 60, pid),
        )
    db.close()
    journal = Journal(tmp_path)
    [run] = journal.runs()
    assert run.result == "interrupted" and run.ended is not None
    assert str(pid) in run.summary["error"]
    assert journal.latest()["backup"].id == run.id  # status shows it as the last run
    journal.close()
    history = subprocess.run(
        [sys.executable, "-m", "nixmox.cli.main", "history"],
        env={**os.environ, "NIXMOX_STATE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "interrupted" in history and "running" not in history


def test_a_live_run_stays_running(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        db.execute("INSERT INTO runs (command, started, pid) VALUES ('backup', 1, 1)")
    db.close()
    [run] = Journal(tmp_path).runs()
    assert run.result is None  # PID 1 is alive


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_journal_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal.sqlite3"
    if damage == "garbage":
        path.write_bytes(b"this is not a database\n" * 200)
    else:
        for i in range(300):
            with job_run(tmp_path, "snapshot") as run:
                run.summary = {"n": i, "pad": "x" * 200}
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with job_run(tmp_path, "backup") as run:
        run.summary = {"guests": []}
    [row] = Journal(tmp_path).runs()
    assert (row.command, row.result) == ("backup", "ok")
    [aside] = tmp_path.glob("journal.sqlite3.damaged-*")
    assert aside.stat().st_size > 0
    assert "damaged" in caplog.text and str(aside) in caplog.text


def test_an_unreadable_summary_row_is_skipped(tmp_path: Path) -> None:
    for i in range(2):
        with job_run(tmp_path, "snapshot") as run:
            run.summary = {"n": i}
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        db.execute("UPDATE runs SET summary = '{not json' WHERE id = 2")
    db.close()
    journal = Journal(tmp_path)
    assert [r.summary for r in journal.runs()] == [{"n": 0}]
    assert journal.latest() == {}  # the newest finished row is the bad one


_IN_TMPFS = """
import sys
from pathlib import Path
from nixmox.adapters.journal import job_run
from nixmox.core.errors import NixmoxError

state = Path(sys.argv[1])
mode = sys.argv[2]
try:
    with job_run(state, "backup") as run:
        print("work ran", flush=True)
        if mode == "fills":
            try:
                with open(state.parent / "filler", "wb") as f:
                    while True:
                        f.write(b"x" * 65536)
                        f.flush()
            except OSError:
                pass
        run.result = "failed"
    print("result failed kept")
except NixmoxError as exc:
    print("error:", exc)
"""


def _in_small_tmpfs(tmp_path: Path, prepare: str, mode: str) -> subprocess.CompletedProcess[str]:
    """Run the snippet with the state directory on a 1 MiB tmpfs in a private mount namespace."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=1m,mode=0700 tmpfs {mnt} && mkdir -m 700 {mnt}/state && "
        f'{prepare} {sys.executable} -c "$SNIPPET" {mnt}/state {mode}'
    )
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env={**os.environ, "SNIPPET": _IN_TMPFS, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("prepare", "why"),
    [
        ("mount -o remount,ro {mnt} && ", "read-only"),
        ("head -c 2000000 /dev/zero > {mnt}/filler 2>/dev/null; ", "No space left"),
    ],
)
def test_a_read_only_or_full_state_dir_is_one_clear_line_before_any_work(
    tmp_path: Path, prepare: str, why: str
) -> None:
    proc = _in_small_tmpfs(tmp_path, prepare.format(mnt=tmp_path / "mnt"), "plain")
    assert proc.returncode == 0, proc.stderr
    assert "work ran" not in proc.stdout
    [line] = proc.stdout.splitlines()
    assert line.startswith(f"error: state directory {tmp_path / 'mnt' / 'state'} is not writable")
    assert why in line and "nothing was changed" in line
    assert "Traceback" not in proc.stderr


def test_a_journal_write_failing_at_the_end_keeps_the_jobs_result(tmp_path: Path) -> None:
    proc = _in_small_tmpfs(tmp_path, "", "fills")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["work ran", "result failed kept"], proc.stderr
    assert "could not record it" in proc.stderr and "Traceback" not in proc.stderr
