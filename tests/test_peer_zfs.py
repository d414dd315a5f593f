"""The zfs-fuse peer answers like ZFS, in the CLI subset nixmox relies on."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.peers.zfs import ZfsFuse

pytestmark = pytest.mark.peer


def test_pool_is_real_and_unmounted(zfs: ZfsFuse, zfs_pool: str) -> None:
    out = zfs.zfs("get", "-H", "-o", "value", "mountpoint", zfs_pool).stdout
    assert out.strip() == "none"
    # A real daemon rejects what a mock would accept: a duplicate dataset.
    zfs.zfs("create", f"{zfs_pool}/a")
    again = zfs.zfs("create", f"{zfs_pool}/a", check=False)
    assert again.returncode != 0
    assert "exists" in again.stderr


def test_recursive_snapshot_is_listed_in_creation_order(zfs: ZfsFuse, zfs_pool: str) -> None:
    ds = f"{zfs_pool}/vm"
    zfs.zfs("create", ds)
    zfs.zfs("create", f"{ds}/disk0")
    zfs.zfs("snapshot", "-r", f"{ds}@first")
    zfs.zfs("snapshot", f"{ds}@second")

    children = zfs.zfs("list", "-H", "-o", "name", "-t", "snapshot", "-r", ds).stdout.split()
    # -r reached the child; the second, non-recursive snapshot did not.
    assert f"{ds}/disk0@first" in children
    assert f"{ds}/disk0@second" not in children

    listing = zfs.zfs(
        "list",
        "-H",
        "-o",
        "name,createtxg",
        "-t",
        "snapshot",
        "-s",
        "createtxg",
        "-r",
        "-d",
        "1",
        ds,
    ).stdout
    rows = [line.split("\t") for line in listing.splitlines()]
    # -d 1 keeps the child's snapshots out; -s createtxg orders oldest first.
    assert [name for name, _ in rows] == [f"{ds}@first", f"{ds}@second"]
    assert int(rows[0][1]) < int(rows[1][1])


def test_hold_prevents_destroy_until_released(zfs: ZfsFuse, zfs_pool: str) -> None:
    snap = f"{zfs_pool}@held"
    zfs.zfs("snapshot", snap)
    zfs.zfs("hold", "nixmox", snap)
    assert zfs.zfs("get", "-H", "-o", "value", "userrefs", snap).stdout.strip() == "1"

    refused = zfs.zfs("destroy", snap, check=False)
    assert refused.returncode != 0
    assert "busy" in refused.stderr

    zfs.zfs("release", "nixmox", snap)
    zfs.zfs("destroy", snap)
    left = zfs.zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", zfs_pool).stdout
    assert snap not in left.split()


def test_rollback_needs_r_past_newer_snapshots(zfs: ZfsFuse, zfs_pool: str) -> None:
    ds = f"{zfs_pool}/data"
    zfs.zfs("create", ds)
    zfs.zfs("snapshot", f"{ds}@old")
    zfs.zfs("snapshot", f"{ds}@new")

    refused = zfs.zfs("rollback", f"{ds}@old", check=False)
    assert refused.returncode != 0
    assert "more recent snapshots exist" in refused.stderr

    zfs.zfs("rollback", "-r", f"{ds}@old")
    left = zfs.zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", ds).stdout.split()
    assert left == [f"{ds}@old"]


def test_wrappers_on_path_reach_the_daemon(zfs: ZfsFuse, zfs_pool: str) -> None:
    # What product code does: run plain "zfs"/"zpool" from PATH.
    env = zfs.env()
    pools = subprocess.run(
        ["zpool", "list", "-H", "-o", "name"], env=env, capture_output=True, text=True, timeout=30
    )
    assert pools.returncode == 0, pools.stderr
    assert zfs_pool in pools.stdout.split()

    made = subprocess.run(
        ["zfs", "create", f"{zfs_pool}/via-path"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    # The dataset exists in the namespaced daemon, so the wrapper reached it.
    assert zfs.zfs("list", "-H", "-o", "name", f"{zfs_pool}/via-path").stdout.strip() == (
        f"{zfs_pool}/via-path"
    )
    # Errors pass through with zfs's exit status.
    missing = subprocess.run(
        ["zfs", "list", f"{zfs_pool}/nope"], env=env, capture_output=True, text=True, timeout=30
    )
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr


def test_second_daemon_is_isolated_and_leaves_no_process_behind(zfs: ZfsFuse) -> None:
    # Requesting the session daemon also applies its skip/fail checks. A
    # second daemon beside it proves the namespaces keep them apart.
    with ZfsFuse(zfs_fuse=zfs.zfs_fuse, zfs=zfs.zfs_path, zpool=zfs.zpool_path) as other:
        pid = other.pid
        tmp = other.tmp
        name = other.create_pool()
        assert name in other.zpool("list", "-H", "-o", "name").stdout.split()
        assert name not in zfs.zpool("list", "-H", "-o", "name").stdout.split()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert tmp is not None
    assert not tmp.exists()
    # The session daemon survived the other one's teardown.
    assert zfs.zpool("list", check=False).returncode == 0
