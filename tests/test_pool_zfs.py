"""`nixmox pool scrub|trim|check` against real ZFS (zfs-fuse).

zfs-fuse is pool version 23: its ``zpool scrub`` returns only once the scrub
is done, it has no ``zpool scrub -p``, ``zpool trim``, ``zpool status -t`` or
``-j``, and its status text is the older form (``scrub: scrub completed
after ...``). So these tests walk the fallbacks for real: following a
blocking scrub, the pause window handled by stopping and restarting, TRIM
reported as unsupported, the text parser instead of JSON. Pausing with
``-p``, TRIM progress and JSON are covered by the OpenZFS data files in
``tests/data/zpool`` (test_pool_parsers.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nixmox.adapters.journal import Journal
from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import Zpool
from nixmox.core.progress import Lines
from nixmox.pool.job import FollowSettings, PoolReader, scrub_pool, trim_pool
from tests.clock import FakeClock
from tests.peers.zfs import ZfsFuse, unique_pool_name

NIXMOX = str(Path(sys.executable).parent / "nixmox")
UTC_ZONE = ZoneInfo("UTC")


@dataclass
class DataPool:
    name: str
    files: list[Path]
    mountpoint: Path


def _data_pool(
    zfs: ZfsFuse, tmp: Path, *, size: str, mib: int, mirror: bool, props: list[str]
) -> DataPool:
    name = unique_pool_name("nxp")
    files = [tmp / f"{name}-{i}.img" for i in range(2 if mirror else 1)]
    for f in files:
        subprocess.run(["truncate", "-s", size, str(f)], check=True)
    layout = ["mirror"] if mirror else []
    zfs.zpool("create", "-m", "none", name, *layout, *map(str, files))
    zfs.pools[name] = files[0]
    mnt = tmp / f"{name}-mnt"
    mnt.mkdir()
    opts = [a for p in ["compression=off", *props] for a in ("-o", p)]
    zfs.zfs("create", "-o", f"mountpoint={mnt}", *opts, f"{name}/data")
    zfs.run("dd", "if=/dev/urandom", f"of={mnt}/blob", "bs=1M", f"count={mib}")
    zfs.run("sync")
    return DataPool(name, files, mnt)


def _drop(zfs: ZfsFuse, pool: DataPool) -> None:
    zfs.zfs("set", "mountpoint=none", f"{pool.name}/data", check=False)
    zfs.destroy_pool(pool.name)
    for f in pool.files:
        f.unlink(missing_ok=True)


@pytest.fixture
def mirror(zfs: ZfsFuse, tmp_path: Path) -> Iterator[DataPool]:
    """A two-file mirror holding 150 MiB of random data."""
    pool = _data_pool(zfs, tmp_path, size="256M", mib=150, mirror=True, props=[])
    yield pool
    _drop(zfs, pool)


@pytest.fixture
def slow(zfs: ZfsFuse, tmp_path: Path) -> Iterator[DataPool]:
    """A pool whose scrub takes a second or two: sha256 over two copies of 600 MiB."""
    pool = _data_pool(
        zfs,
        tmp_path,
        size="3G",
        mib=600,
        mirror=False,
        props=["checksum=sha256", "copies=2"],
    )
    yield pool
    _drop(zfs, pool)


def adapters(zfs: ZfsFuse) -> tuple[Zpool, PoolReader]:
    zpool = Zpool(Runner(), [str(zfs.bin_dir / "zpool")])
    return zpool, PoolReader(zpool, UTC_ZONE)


class ScriptedClock(FakeClock):
    """A FakeClock whose wall clock reads ``times`` in turn, then ``after``."""

    def __init__(self, times: Iterator[datetime], after: datetime) -> None:
        super().__init__()
        self._times, self._after = times, after

    def now(self) -> datetime:
        return next(self._times, self._after)


FAST = FollowSettings(poll=0.05, pause_during=None, zone=UTC_ZONE)


def nixmox(
    zfs: ZfsFuse, state: Path, *argv: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``nixmox ARGV`` as a command: zfs-fuse's tools on its PATH, ``state`` its state directory."""
    env = zfs.env({**os.environ, "NIXMOX_STATE_DIR": str(state)})
    return subprocess.run([NIXMOX, *argv], env=env, capture_output=True, text=True, timeout=timeout)


def inventory_file(tmp_path: Path, toml: str) -> Path:
    """``toml`` written as the inventory nixmox is to read."""
    inventory = tmp_path / "n.toml"
    inventory.write_text(toml)
    return inventory


def one_pool(proc: subprocess.CompletedProcess[str]) -> tuple[Any, Any]:
    """The JSON of a successful ``pool ... --json`` run, and the one pool it reports."""
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    [pool] = doc["pools"]
    return doc, pool


def test_scrub_is_started_followed_and_reported(zfs: ZfsFuse, slow: DataPool) -> None:
    zpool, reader = adapters(zfs)
    out = io.StringIO()
    result = scrub_pool(zpool, reader, slow.name, FAST, progress=Lines(out))
    assert result.outcome == "finished", result
    assert (result.repaired, result.errors) == (0, 0)
    # Followed while it ran: timestamped lines from the start, with the percentage, to the end.
    lines = out.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert re.fullmatch(stamp + f"scrubbing {slow.name}", lines[0]), lines
    assert any(re.fullmatch(stamp + f"{slow.name}: scrub [\\d.]+% done.*", li) for li in lines)
    assert re.fullmatch(
        stamp + f"{slow.name}: scrub finished: repaired 0 bytes with 0 errors", lines[-1]
    ), lines
    assert result.space is not None and result.space.allocated > 600 * 2**20
    assert reader.state(slow.name).scan.state == "finished"
    assert [v["name"] for v in result.vdevs] == [str(slow.files[0])]


def test_scrub_repairs_a_corrupted_mirror_side_and_names_the_vdev(
    zfs: ZfsFuse, mirror: DataPool, tmp_path: Path
) -> None:
    # Overwrite the middle of one side (the labels at both ends stay intact).
    with mirror.files[1].open("r+b") as f:
        for offset in range(20 << 20, 200 << 20, 1 << 20):
            f.seek(offset)
            f.write(b"\xde\xad" * 4096)
    inventory = inventory_file(tmp_path, f'[[pools]]\nname = "{mirror.name}"\n')
    state = tmp_path / "state"
    proc = nixmox(zfs, state, "--config", str(inventory), "pool", "scrub", "--json", timeout=300)
    doc, row = one_pool(proc)
    assert row["outcome"] == "finished" and row["errors"] == 0
    assert row["repaired"] > 1 << 20  # zpool said e.g. "15.1M repaired" on that vdev
    sides = {Path(v["name"]): v for v in row["vdevs"]}
    assert sides[mirror.files[1]]["checksum"] > 0 and sides[mirror.files[1]]["repaired"] > 0
    assert sides[mirror.files[0]]["checksum"] == 0
    assert doc["findings"] == [f"pool-scrub {mirror.name} WARN"]
    # The progress went to stderr, as plain lines (not a terminal), stdout kept only the JSON.
    assert f"scrubbing {mirror.name}\n" in proc.stderr
    assert f"{mirror.name}: scrub finished: repaired " in proc.stderr
    [run] = Journal(state).runs("pool scrub")
    assert run.result == "ok" and run.summary["pools"][0]["size"] > 0
    # Doctor says what the scrub found, and where (this machine is the pool's host, though
    # the inventory declares no node: --host-root / says so).
    only_pools = ["doctor", "--only", "pools", "--json", "--host-root", "/"]
    doctor = nixmox(zfs, state, "--config", str(inventory), *only_pools, timeout=120)
    checks = {(c["id"], c["subject"]): c for c in json.loads(doctor.stdout)["checks"]}
    side = checks[("pool-vdev", f"{mirror.name}/{mirror.files[1]}")]
    assert side["status"] == "WARN" and "checksum errors" in side["message"]
    assert f"zpool clear {mirror.name}" in side["fix"]
    assert checks[("pool-scrub", mirror.name)]["status"] == "WARN"
    assert doctor.returncode == 1
    # -q: no progress at all, the table still on stdout.
    quiet = nixmox(zfs, state, "-q", "--config", str(inventory), "pool", "scrub", timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert mirror.name in quiet.stdout and "finished" in quiet.stdout


def test_no_scrub_is_started_while_one_runs(zfs: ZfsFuse, slow: DataPool) -> None:
    zpool, reader = adapters(zfs)
    other = subprocess.Popen(
        [str(zfs.bin_dir / "zpool"), "scrub", slow.name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while reader.state(slow.name).scan.state != "running":
            assert time.monotonic() < deadline, "the scrub never showed as running"
        result = scrub_pool(zpool, reader, slow.name, FAST)
    finally:
        other.wait(timeout=120)
    assert result.outcome == "refused"
    assert "a scrub is running" in result.message
    assert not [r for r in zpool.runner.history if r.argv[1:2] == ("scrub",)]


def test_the_pause_window_stops_and_restarts_where_zpool_cannot_pause(
    zfs: ZfsFuse, slow: DataPool
) -> None:
    zpool, reader = adapters(zfs)
    # Before the start: outside; at the first progress read: inside the window,
    # still inside once, then out again for good.
    clock = ScriptedClock(
        iter(
            [datetime(2026, 5, 1, 2, 59, tzinfo=UTC_ZONE)]
            + [datetime(2026, 5, 1, 3, 10, tzinfo=UTC_ZONE)] * 2
        ),
        datetime(2026, 5, 1, 4, 30, tzinfo=UTC_ZONE),
    )
    settings = FollowSettings(poll=0.05, pause_during="*-*-* 03:*", zone=UTC_ZONE)
    out = io.StringIO()
    # The lines' timestamps read the real clock: the scripted one is the window's.
    result = scrub_pool(zpool, reader, slow.name, settings, progress=Lines(out), clock=clock)
    lines = out.getvalue().splitlines()
    assert result.outcome == "finished", (result, lines)
    assert result.pauses == 1 and result.pause_method == "stop"
    ran = [r.argv[1:3] for r in zpool.runner.history if r.argv[1:2] == ("scrub",)]
    # -p was tried (zfs-fuse refuses it), then -s, then a fresh start.
    assert ("scrub", "-p") in ran and ("scrub", "-s") in ran
    assert any("stopped (this zpool cannot pause)" in line for line in lines)
    assert any("restarting the scrub" in line for line in lines)


def test_trim_is_reported_unsupported_by_zfs_fuse(zfs: ZfsFuse, mirror: DataPool) -> None:
    zpool, reader = adapters(zfs)
    result = trim_pool(zpool, reader, mirror.name, FAST)
    assert result.outcome == "unsupported" and "OpenZFS 0.8" in result.message
    assert not result.ok


def test_pool_check_records_the_capacity_the_forecast_reads(
    zfs: ZfsFuse, mirror: DataPool, tmp_path: Path
) -> None:
    inventory = inventory_file(tmp_path, f'[pool_health]\npools = ["{mirror.name}"]\n')
    state = tmp_path / "state"
    proc = nixmox(zfs, state, "--config", str(inventory), "pool", "check", "--json", timeout=120)
    doc, pool = one_pool(proc)
    assert pool["state"] == "ONLINE" and pool["source"] == "text"
    # The 150 MiB written (zfs-fuse may not have synced the last transaction group yet).
    assert pool["allocated"] > 100 * 2**20 and pool["size"] > pool["allocated"]
    assert pool["disks"] == []  # file vdevs are no disks: no smartctl is run
    [fc] = doc["forecasts"]
    assert fc["rate_per_day"] is None and "not enough history" in fc["words"]
    checks = {c["id"]: c for c in doc["checks"]}
    assert checks["pool-scrub"]["status"] == "WARN"  # never scrubbed
    [run] = Journal(state).runs("pool check")
    assert run.summary["pools"][0]["allocated"] == pool["allocated"]
