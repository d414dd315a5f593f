"""Runs lock what they touch: unrelated jobs run side by side, overlapping ones queue, and a
queued run says what it waits for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixmox.adapters.journal import Journal
from nixmox.adapters.locks import LockSet, guest_claims, job_claim
from nixmox.core.errors import LockBusy
from nixmox.inventory.load import load_inventory
from nixmox.runtime.waits import lock_wait
from tests.clock import FakeClock
from tests.hosts import write_host
from tests.lab.inventory import load_inventory as load_lab_inventory
from tests.lab.serving import RunningLab
from tests.lab.zfs_pools import create_lab_datasets
from tests.peers.zfs import ZfsFuse, unique_pool_name

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"


def _nixmox(
    lab: RunningLab,
    state: Path,
    *args: str,
    env: dict[str, str] | None = None,
    root: bool = False,
) -> subprocess.Popen[str]:
    """nixmox in a process of its own; ``root``: logged in as root@pam (what raw PCI
    passthrough needs) instead of the lab's API token."""
    full = {k: v for k, v in (env or os.environ).items() if k not in {*lab.env, *lab.root_env}}
    full.update(lab.root_env if root else lab.env)
    full.update({"NIXMOX_STATE_DIR": str(state), "PYTHONPATH": str(ROOT / "src")})
    return subprocess.Popen(
        [sys.executable, "-m", "nixmox.cli.main", *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _vzdumps(lab: RunningLab) -> list[dict[str, object]]:
    return [dict(t) for t in list(lab.pve.tasks.values()) if t.get("type") == "vzdump"]


def _until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_snapshot_runs_while_a_long_backup_runs(
    lab: RunningLab, zfs: ZfsFuse, tmp_path: Path
) -> None:
    # The example lab, its pools renamed to names unique on the shared zfs-fuse.
    pools = {"rpool": unique_pool_name("r"), "tank": unique_pool_name("t")}
    text = EXAMPLE.read_text()
    for old, new in pools.items():
        text = text.replace(f'"{old}/', f'"{new}/').replace(f'"{old}"', f'"{new}"')
    inventory = tmp_path / "nixmox.toml"
    inventory.write_text(text)
    try:
        create_lab_datasets(zfs, load_lab_inventory(inventory))
        _snapshot_during_backup(lab, zfs, inventory, tmp_path / "state")
    finally:
        for pool in pools.values():
            zfs.destroy_pool(pool)


def _snapshot_during_backup(lab: RunningLab, zfs: ZfsFuse, inventory: Path, state: Path) -> None:
    lab.pve.add_declared_guests()
    lab.pve.time_scale = 0.6  # a vzdump takes 6 s
    backup = _nixmox(lab, state, "backup", "--config", str(inventory), "--guest", "nixos-vm")
    _until(lambda: _vzdumps(lab) or backup.poll() is not None, "no vzdump started")
    assert backup.poll() is None, backup.communicate()

    snapshot = _nixmox(
        lab, state, "snapshot", "--config", str(inventory), env=zfs.env(dict(os.environ))
    )
    out, err = snapshot.communicate(timeout=60)
    assert snapshot.returncode == 0, err
    assert "1 of 1 snapshot target ok" in out and "waiting" not in err
    assert backup.poll() is None  # the snapshot did not wait for the backup to end
    _out, err = backup.communicate(timeout=60)
    assert backup.returncode == 0, err
    journal = Journal(state)
    try:
        assert [r.result for r in journal.runs("snapshot")] == ["ok"]
        assert [r.result for r in journal.runs("backup")] == ["ok"]
    finally:
        journal.close()


def test_two_runs_of_the_same_job_do_not_overlap(lab: RunningLab, tmp_path: Path) -> None:
    lab.pve.add_declared_guests()
    lab.pve.time_scale = 0.3  # a vzdump takes 3 s
    state = tmp_path / "state"
    args = ("backup", "--config", str(EXAMPLE), "--guest", "nixos-vm")
    first = _nixmox(lab, state, *args)
    _until(lambda: _vzdumps(lab) or first.poll() is not None, "no vzdump started")
    second = _nixmox(lab, state, *args)
    while _vzdumps(lab)[0]["status"] == "running":  # the first vzdump still runs
        assert len(_vzdumps(lab)) == 1  # the second run waits: no second vzdump meanwhile
        time.sleep(0.05)
    _out1, err1 = first.communicate()
    _out2, err2 = second.communicate(timeout=60)
    assert (first.returncode, second.returncode) == (0, 0), (err1, err2)
    assert len(_vzdumps(lab)) == 2
    # The wait said what it waited for while it waited.
    assert f"waiting for the backup job: in use by PID {first.pid} (nixmox backup, since" in err2


def test_a_lock_wait_gives_up_at_its_bound_and_names_the_holder(
    lab: RunningLab, tmp_path: Path
) -> None:
    lab.pve.add_declared_guests()
    lab.pve.time_scale = 1.0  # a vzdump takes 10 s
    state = tmp_path / "state"
    first = _nixmox(lab, state, "backup", "--config", str(EXAMPLE), "--guest", "nixos-vm")
    try:
        _until(lambda: _vzdumps(lab) or first.poll() is not None, "no vzdump started")
        # A restore check of the same guest: it queues behind the backup (which may prune the
        # archive it would restore), and gives up at its bound.
        started = time.monotonic()
        second = _nixmox(
            lab,
            state,
            "backup",
            "verify",
            "--config",
            str(EXAMPLE),
            "--guest",
            "nixos-vm",
            env={**os.environ, "NIXMOX_LOCK_WAIT": "1s"},
        )
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 1 and time.monotonic() - started < 8, err
        assert "guest 101 is in use by PID" in err and "nixmox backup" in err, err
        assert "gave up waiting after 1 s" in err and "Traceback" not in err
    finally:
        first.terminate()
        first.communicate(timeout=60)


def test_queued_applies_converge(lab: RunningLab, tmp_path: Path) -> None:
    host = write_host(tmp_path / "host")
    lab.pve.time_scale = 0.5  # clones, starts and the network reload take seconds
    state = tmp_path / "state"
    args = ("apply", "--yes", "--host-root", str(host), "--config", str(EXAMPLE))
    # Both plan the same creates at once; one takes the lock, the other waits for it.
    runs = [_nixmox(lab, state, *args, root=True) for _ in range(2)]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    [(out, err)] = [(out, err) for out, err in outputs if "waiting for the apply job" in err]
    # Planned again under the lock: nothing repeated, nothing failed.
    assert "already exists" not in out + err
    # How many depends on how far the first had got when the second planned.
    assert re.search(r"\b[1-6] of the planned objects were already as planned", out), out
    assert sorted(g.vmid for g in lab.pve.vms if g.vmid != 9000) == [101, 102]
    journal = Journal(state)
    try:
        assert [r.result for r in journal.runs("apply")] == ["ok", "ok"]
    finally:
        journal.close()


@pytest.mark.parametrize(
    ("schedule", "job", "seconds"),
    [
        ("hourly", "snapshot", 900.0),  # a quarter of its interval: never into the next run
        ("*:0/15", "snapshot", 225.0),
        ("daily", "backup", 3600.0),  # at most an hour
        (None, "apply", 600.0),  # a person's command: ten minutes, Ctrl-C ends it
    ],
)
def test_the_lock_wait_is_bounded_per_job(
    tmp_path: Path, schedule: str | None, job: str, seconds: float
) -> None:
    text = (
        EXAMPLE.read_text()
        .replace('snapshot = "hourly"\n', "")
        .replace('backup = "*-*-* 02:30:00"\n', "")
    )
    if schedule is not None:
        key = job.replace(" ", "_")
        text = text.replace("[schedules]\n", f'[schedules]\n{key} = "{schedule}"\n')
    path = tmp_path / "nixmox.toml"
    path.write_text(text)
    assert lock_wait(load_inventory(path), job, {}) == seconds
    assert lock_wait(load_inventory(path), job, {"NIXMOX_LOCK_WAIT": "2min"}) == 120.0


def test_a_wait_reports_as_it_waits_and_gives_up_on_its_clock(tmp_path: Path) -> None:
    # flock belongs to the open file, so a second LockSet in this process really waits.
    holder = LockSet(tmp_path, "backup")
    holder.acquire([job_claim("backup"), *guest_claims([(101, "pve1")])], wait=0)
    clock = FakeClock()
    heard: list[str] = []
    waiter = LockSet(tmp_path, "backup verify", clock)
    try:
        with pytest.raises(LockBusy, match=r"guest 101 is in use by .*gave up waiting after 60 s"):
            waiter.acquire(guest_claims([(101, "pve1")]), wait=60, report=heard.append)
        # A minute passed on the clock, in short polls, and nothing was kept.
        assert 60 <= clock.monotonic() < 61 and max(clock.slept) <= 0.1
        assert waiter.held == []
    finally:
        holder.release()
    assert heard[0].startswith("waiting for guest 101: in use by")
    assert "(gives up after 60 s)" in heard[0]
    # Then every ten seconds, with the time waited so far.
    assert [re.sub(r".*\[(\d+)s elapsed\]", r"\1", line) for line in heard[1:]] == [
        "10",
        "20",
        "30",
        "40",
        "50",
    ]
    # Released: the next run takes it at once.
    waiter.acquire(guest_claims([(101, "pve1")]), wait=0)
    waiter.release()
