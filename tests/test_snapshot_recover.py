"""`nixmox snapshot list|clone|rollback` on real ZFS (zfs-fuse)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import Zfs
from nixmox.cli.main import run
from nixmox.snapshot.recover import later_snapshots, rollback_refusal
from tests.lab.serving import RunningLab
from tests.peers.zfs import ZfsFuse

ROOT = Path(__file__).resolve().parent.parent
PROXMOX = """\
[proxmox]
url = "https://pve.home.arpa:8006"
token_id = "nixmox@pve!automation"
token_file = "/etc/nixmox/pve-token"
"""


@pytest.fixture
def data(zfs: ZfsFuse, zfs_pool: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A mounted dataset holding ``f.txt`` = ``old`` at ``@monday``, ``new`` now."""
    mnt = tmp_path / "mnt"
    ds = f"{zfs_pool}/data"
    zfs.zfs("create", "-o", f"mountpoint={mnt}/data", ds)
    zfs.run("sh", "-c", f"echo old > {mnt}/data/f.txt")
    zfs.zfs("snapshot", f"{ds}@monday")
    zfs.run("sh", "-c", f"echo new > {mnt}/data/f.txt")
    yield ds, mnt
    # Mounted datasets are destroyed only once unmounted (zfs-fuse says "busy" otherwise).
    listed = zfs.zfs("list", "-H", "-o", "name", "-r", zfs_pool).stdout.split()
    for name in sorted(listed, reverse=True):
        if name != zfs_pool:
            zfs.zfs("unmount", name, check=False)
            zfs.zfs("destroy", "-r", name, check=False)


def inventory(tmp_path: Path, zfs: ZfsFuse, extra: str = "") -> Path:
    path = tmp_path / "nixmox.toml"
    path.write_text(f'[zfs]\ncommand = ["{zfs.bin_dir / "zfs"}"]\n{extra}')
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = run(["--json", *args])
    captured = capsys.readouterr()
    out = captured.out
    return code, json.loads(out) if out.strip() else {}, captured.err


def read(zfs: ZfsFuse, path: Path) -> str:
    return zfs.run("cat", str(path)).stdout.strip()


def test_later_snapshots_must_be_named_exactly() -> None:
    names = ["a", "b", "c", "d"]
    assert later_snapshots(names, "b") == ["c", "d"]
    assert "c, d" in str(rollback_refusal(["c", "d"], []))
    assert "c, d" in str(rollback_refusal(["c", "d"], ["c"]))
    assert rollback_refusal(["c", "d"], ["d", "c"]) is None
    assert "not a snapshot newer" in str(rollback_refusal(["c"], ["c", "x"]))


def test_list_shows_everyones_snapshots_and_holds(
    zfs: ZfsFuse, data: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, _ = data
    zfs.zfs("snapshot", f"{ds}@nixmox_2026-04-01T09:00:00Z")
    zfs.zfs("hold", "keep", f"{ds}@monday")
    inv = inventory(tmp_path, zfs)
    code, doc, _ = cli(capsys, "snapshot", "list", ds, "--config", str(inv))
    assert code == 0
    rows = {r["name"]: r for r in doc["snapshots"]}
    assert rows["monday"]["holds"] == 1 and not rows["monday"]["nixmox"]
    assert rows["nixmox_2026-04-01T09:00:00Z"]["nixmox"]
    zfs.zfs("release", "keep", f"{ds}@monday")


def test_clone_gives_the_old_file_back_read_only_and_leaves_nothing_behind(
    zfs: ZfsFuse, data: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, mnt = data
    inv = inventory(tmp_path, zfs)
    where = tmp_path / "browse"
    code, doc, err = cli(
        capsys,
        "snapshot",
        "clone",
        f"{ds}@monday",
        "--mountpoint",
        str(where),
        "--config",
        str(inv),
    )
    assert code == 0, err
    assert doc["mountpoint"] == str(where)
    assert read(zfs, where / "f.txt") == "old" and read(zfs, mnt / "data" / "f.txt") == "new"
    assert zfs.run("sh", "-c", f"echo x > {where}/g.txt", check=False).returncode != 0
    code, doc, err = cli(
        capsys, "snapshot", "clone", "--remove", f"{ds}@monday", "--config", str(inv)
    )
    assert code == 0 and doc["removed"], err
    names = zfs.zfs("list", "-H", "-o", "name", "-r", ds.split("/")[0]).stdout.split()
    assert not [n for n in names if "browse" in n]
    # A dataset nixmox did not make is never removed as a clone.
    zfs.zfs("create", f"{ds}-nixmox-browse-monday")
    code = run(["snapshot", "clone", "--remove", f"{ds}@monday", "--config", str(inv)])
    assert code == 1 and "left alone" in capsys.readouterr().err


def test_rollback_refuses_unnamed_later_snapshots_and_keeps_a_safety_copy(
    zfs: ZfsFuse, data: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds, mnt = data
    zfs.zfs("snapshot", f"{ds}@tuesday")
    inv = inventory(tmp_path, zfs)
    code = run(["snapshot", "rollback", f"{ds}@monday", "--yes", "--config", str(inv)])
    err = capsys.readouterr().err
    assert code == 1 and "destroys 1 newer snapshot: tuesday" in err
    assert read(zfs, mnt / "data" / "f.txt") == "new"
    code, doc, err = cli(
        capsys,
        "snapshot",
        "rollback",
        f"{ds}@monday",
        "--destroy-later",
        "tuesday",
        "--yes",
        "--config",
        str(inv),
    )
    assert code == 0, err
    assert read(zfs, mnt / "data" / "f.txt") == "old"
    copy, _, safety = doc["safety"].partition("@")
    assert copy.startswith(f"{ds}-nixmox-safety-") and safety.startswith("nixmox-safety_")
    left = zfs.zfs("list", "-H", "-o", "name", "-t", "snapshot", "-r", ds.split("/")[0]).stdout
    assert f"{ds}@monday" in left and f"{ds}@tuesday" not in left and doc["safety"] in left
    # The safety copy holds what was there: browse it to check.
    code, doc, err = cli(
        capsys,
        "snapshot",
        "clone",
        doc["safety"],
        "--mountpoint",
        str(tmp_path / "s"),
        "--config",
        str(inv),
    )
    assert code == 0, err
    assert read(zfs, tmp_path / "s" / "f.txt") == "new"


def _container_disk(
    zfs: ZfsFuse, zfs_pool: str, lab: RunningLab, tmp_path: Path, *snapshots: str
) -> tuple[str, Path]:
    """Container 100 running in the lab, its disk on a ct-disks zfspool storage with
    ``snapshots``; returns the disk's dataset and the inventory naming the storage."""
    lab.pve.add_declared_guests()  # 100 runs
    zfs.zfs("create", f"{zfs_pool}/ct")
    disk = f"{zfs_pool}/ct/subvol-100-disk-0"
    zfs.zfs("create", disk)
    for name in snapshots:
        zfs.zfs("snapshot", f"{disk}@{name}")
    storages = f"""
[[storages]]
storage = "ct-disks"
type = "zfspool"
dataset = "{zfs_pool}/ct"
content = ["rootdir"]
"""
    return disk, inventory(tmp_path, zfs, PROXMOX + storages)


def test_rollback_of_a_running_guests_disk_stops_it_through_the_api(
    zfs: ZfsFuse,
    zfs_pool: str,
    lab_env: RunningLab,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk, inv = _container_disk(zfs, zfs_pool, lab_env, tmp_path, "before")
    code = run(["snapshot", "rollback", f"{disk}@before", "--yes", "--config", str(inv)])
    assert code == 1 and "guest 100 is running" in capsys.readouterr().err
    events = lab_env.pve.host_events
    events.clear()
    code = run(["snapshot", "rollback", f"{disk}@before", "--stop", "--yes", "--config", str(inv)])
    assert code == 0, capsys.readouterr()
    assert [e[:2] for e in events] == [("shutdown", 100), ("start", 100)]
    zfs.zfs("destroy", "-r", f"{zfs_pool}/ct", check=False)


def test_a_file_system_still_busy_from_its_unmount_is_destroyed_on_a_later_try(
    zfs: ZfsFuse, data: tuple[str, Path]
) -> None:
    # zfs-fuse answers "dataset is busy" to the first destroy of a file system that
    # was mounted a moment ago; the adapter tries again rather than failing the job.
    ds, mnt = data
    scratch = f"{ds}-scratch"
    zfs.zfs("create", "-o", f"mountpoint={mnt}/scratch", scratch)
    zfs.run("sh", "-c", f"echo x > {mnt}/scratch/x.txt")
    Zfs(Runner(), (str(zfs.bin_dir / "zfs"),)).destroy_filesystem(scratch)
    names = zfs.zfs("list", "-H", "-o", "name", "-r", ds.split("/")[0]).stdout.split()
    assert scratch not in names


def test_a_token_that_cannot_see_the_guest_never_rolls_its_disk_back(
    zfs: ZfsFuse,
    zfs_pool: str,
    lab_env: RunningLab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pve = lab_env.pve
    disk, inv = _container_disk(zfs, zfs_pool, lab_env, tmp_path, "before", "after")
    token = "nixmox@pve!rollback"
    pve.apitokens[token] = "rollback-secret-1234"
    monkeypatch.delenv("NIXMOX_PVE_USER", raising=False)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", token)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "rollback-secret-1234")
    argv = ["snapshot", "rollback", f"{disk}@before", "--destroy-later", "after"]
    argv += ["--stop", "--yes", "--config", str(inv)]
    # Blind to guest 100 (no VM.Audit): refused, not taken for a disk nobody uses.
    for who in ("nixmox@pve", token):
        pve.grant(who, "/", "Sys.Audit", "Datastore.Audit")
    assert run(argv) == 1
    err = capsys.readouterr().err
    assert "missing: VM.Audit on /vms/100 (see guest 100" in err, err
    # Seeing it but not allowed to stop it: refused before anything changed, too.
    for who in ("nixmox@pve", token):
        pve.grant(who, "/vms/100", "VM.Audit")
    assert run(argv) == 1
    assert "missing: VM.PowerMgmt on /vms/100 (stop guest 100" in capsys.readouterr().err
    snaps = zfs.zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", disk).stdout.split()
    assert f"{disk}@after" in snaps and pve.guest(100).status == "running"
    for who in ("nixmox@pve", token):
        pve.grant(who, "/vms/100", "VM.PowerMgmt")
    assert run(argv) == 0, capsys.readouterr()
    snaps = zfs.zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", disk).stdout.split()
    assert f"{disk}@after" not in snaps
    zfs.zfs("destroy", "-r", f"{zfs_pool}/ct", check=False)
