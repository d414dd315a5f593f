"""`nixmox zfs cache add|remove` on real ZFS (zfs-fuse), and its checks as pure functions.

zfs-fuse takes a file as a log vdev but wants a block device for a cache
vdev ("cache device must be a disk or disk slice"), so the L2ARC tests put a
loop device behind the by-id name; the others use plain files. Either way
the device is reached through a symlink in a private by-id directory
(``NIXMOX_DISK_BY_ID``), exactly as a /dev/disk/by-id name would be.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.cli.main import run
from nixmox.core.errors import NotConfirmed
from nixmox.zfs_cache import checks as cache_checks
from tests.peers.require import need_binary
from tests.peers.zfs import ZfsFuse

# -- pure checks ------------------------------------------------------------------

OPENZFS_STATUS = """\
  pool: rpool
 state: ONLINE
config:

\tNAME                                 STATE     READ WRITE CKSUM
\trpool                                ONLINE       0     0     0
\t  mirror-0                           ONLINE       0     0     0
\t    nvme-Samsung_A-part3             ONLINE       0     0     0
\t    nvme-Samsung_B-part3             ONLINE       0     0     0
\tlogs
\t  mirror-1                           ONLINE       0     0     0
\t    nvme-Optane_1                    ONLINE       0     0     0
\t    nvme-Optane_2                    ONLINE       0     0     0
\tcache
\t  nvme-Fast_SSD                      ONLINE       0     0     0

errors: No known data errors

  pool: tank
 state: ONLINE
config:

\tNAME        STATE     READ WRITE CKSUM
\ttank        ONLINE       0     0     0
\t  raidz1-0  ONLINE       0     0     0
\t    sda     ONLINE       0     0     0
\t    sdb     ONLINE       0     0     0
\t    sdc     ONLINE       0     0     0
\tlogs
\t  sdd       ONLINE       0     0     0

errors: No known data errors
"""


def _names(resolve: dict[str, str]) -> cache_checks.Resolver:
    class Fixed(cache_checks.Resolver):
        def __call__(self, name: str) -> str:
            return resolve.get(name, name)

    return Fixed("/dev/disk/by-id")


def test_status_parses_sections_and_mirrors() -> None:
    vdevs = cache_checks.parse_status(OPENZFS_STATUS)
    table = {(v.pool, v.name): (v.section, v.top, v.depth) for v in vdevs}
    assert table[("rpool", "mirror-0")] == ("data", "mirror-0", 0)
    assert table[("rpool", "nvme-Samsung_A-part3")] == ("data", "mirror-0", 1)
    assert table[("rpool", "nvme-Optane_2")] == ("logs", "mirror-1", 1)
    assert table[("rpool", "nvme-Fast_SSD")] == ("cache", "nvme-Fast_SSD", 0)
    assert table[("tank", "sdc")] == ("data", "raidz1-0", 1)
    assert table[("tank", "sdd")] == ("logs", "sdd", 0)
    assert len(vdevs) == 12


def test_remove_plans() -> None:
    vdevs = cache_checks.parse_status(OPENZFS_STATUS)
    by_id = "/dev/disk/by-id/"
    resolve = _names({n: by_id + n for n in ("nvme-Fast_SSD", "nvme-Optane_1", "sda", "sdd")})
    assert cache_checks.plan_remove("rpool", by_id + "nvme-Fast_SSD", vdevs, resolve).argv == [
        "remove",
        "rpool",
        by_id + "nvme-Fast_SSD",
    ]
    # One side of a mirrored SLOG takes the mirror with it, and says so.
    plan = cache_checks.plan_remove("rpool", by_id + "nvme-Optane_1", vdevs, resolve)
    assert plan.argv == ["remove", "rpool", "mirror-1"]
    assert "mirrored SLOG mirror-1" in plan.description
    assert cache_checks.plan_remove("rpool", "mirror-1", vdevs, resolve).argv[-1] == "mirror-1"
    assert cache_checks.plan_remove("tank", by_id + "sdd", vdevs, resolve).argv[-1] == by_id + "sdd"
    with pytest.raises(cache_checks.DeviceRefused, match="is a data vdev of pool tank"):
        cache_checks.plan_remove("tank", by_id + "sda", vdevs, resolve)
    with pytest.raises(cache_checks.DeviceRefused, match="is a data vdev"):
        cache_checks.plan_remove("rpool", "mirror-0", vdevs, resolve)
    with pytest.raises(cache_checks.DeviceRefused, match="not a device of pool rpool"):
        cache_checks.plan_remove("rpool", by_id + "sdd", vdevs, resolve)
    with pytest.raises(cache_checks.DeviceRefused, match="no pool named nope"):
        cache_checks.plan_remove("nope", by_id + "sdd", vdevs, resolve)


def test_add_plans() -> None:
    assert cache_checks.plan_add("p", ["/d/a"], slog=False).argv == ["add", "p", "cache", "/d/a"]
    assert cache_checks.plan_add("p", ["/d/a"], slog=True).argv == ["add", "p", "log", "/d/a"]
    assert cache_checks.plan_add("p", ["/d/a", "/d/b"], slog=True).argv == [
        "add",
        "p",
        "log",
        "mirror",
        "/d/a",
        "/d/b",
    ]
    with pytest.raises(Exception, match="cache devices cannot be mirrored"):
        cache_checks.plan_add("p", ["/d/a", "/d/b"], slog=False)
    with pytest.raises(Exception, match="same device twice"):
        cache_checks.plan_add("p", ["/d/a", "/d/a"], slog=True)


@pytest.mark.parametrize(
    "path",
    ["/dev/sdb", "/dev/nvme0n1", "/dev/disk/by-id", "/dev/disk/by-id/", "/dev/disk/by-uuid/x"],
)
def test_only_by_id_names(path: str) -> None:
    with pytest.raises(cache_checks.DeviceRefused, match=r"by its /dev/disk/by-id/\.\.\. name"):
        cache_checks.check_by_id(path, "/dev/disk/by-id")


def test_by_id_name_accepted() -> None:
    cache_checks.check_by_id("/dev/disk/by-id/nvme-Samsung_SSD_980_S1", "/dev/disk/by-id")


def _sectors(**at: bytes) -> bytes:
    head = bytearray(cache_checks.PROBE_BYTES)
    for offset, data in at.items():
        start = int(offset.lstrip("o"))
        head[start : start + len(data)] = data
    return bytes(head)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_sectors(o510=b"\x55\xaa", o512=b"EFI PART"), ["a GPT partition table"]),
        (_sectors(o510=b"\x55\xaa"), ["an MBR partition table (or boot sector)"]),
        (_sectors(o4096=b"EFI PART"), ["a GPT partition table"]),
        (_sectors(o1080=b"\x53\xef"), ["an ext2/3/4 file system"]),
        (_sectors(o0=b"XFSB"), ["an XFS file system"]),
        (_sectors(o0=b"LUKS\xba\xbe"), ["a LUKS header"]),
        (_sectors(o4086=b"SWAPSPACE2"), ["swap space"]),
        (
            _sectors(o131072=(0x00BAB10C).to_bytes(8, "little")),
            ["a ZFS label (it was, or is, in a pool)"],
        ),
        (bytes(cache_checks.PROBE_BYTES), []),
        (b"", []),
    ],
    ids=["gpt", "mbr", "gpt-4k", "ext4", "xfs", "luks", "swap", "zfs", "zeros", "empty"],
)
def test_signatures(head: bytes, expected: list[str]) -> None:
    assert cache_checks.signatures(head) == expected


@given(st.binary(max_size=600))
def test_signatures_never_fail_on_short_reads(head: bytes) -> None:
    cache_checks.signatures(head)


def test_mounted_device_or_partition_refused() -> None:
    mounts = (
        "sysfs /sys sysfs rw 0 0\n"
        "/dev/nvme1n1p1 /mnt/old\\040disk ext4 rw 0 0\n"
        "/dev/sdz /srv xfs rw 0 0\n"
    )
    resolve = _names({"/dev/disk/by-id/nvme-X": "/dev/nvme1n1", "/dev/disk/by-id/sdz": "/dev/sdz"})
    assert cache_checks.mounted_at(mounts, "/dev/disk/by-id/nvme-X", resolve) == ["/mnt/old disk"]
    assert cache_checks.mounted_at(mounts, "/dev/disk/by-id/sdz", resolve) == ["/srv"]
    # nvme1n1p1 is no partition of nvme1n (a different disk's name prefix).
    assert cache_checks.mounted_at(mounts, "/dev/nvme1n", _names({})) == []
    with pytest.raises(cache_checks.DeviceRefused, match="mounted at /mnt/old disk"):
        cache_checks.check_unused(
            "/dev/disk/by-id/nvme-X",
            vdevs=[],
            mounts=mounts,
            head=b"",
            resolve=resolve,
            force=True,
        )


def test_device_whose_partition_is_in_a_pool_is_refused() -> None:
    vdevs = cache_checks.parse_status(OPENZFS_STATUS)
    resolve = _names(
        {
            "/dev/disk/by-id/nvme-Samsung_A": "/dev/nvme0n1",
            "nvme-Samsung_A-part3": "/dev/nvme0n1p3",
        }
    )
    with pytest.raises(cache_checks.DeviceRefused, match="already a data device of pool rpool"):
        cache_checks.check_unused(
            "/dev/disk/by-id/nvme-Samsung_A",
            vdevs=vdevs,
            mounts="",
            head=b"",
            resolve=resolve,
            force=True,
        )


# -- on zfs-fuse ----------------------------------------------------------------------


class Disks:
    """Fake SSDs: files (or loop devices over files) behind a private by-id directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_id = root / "by-id"
        self.by_id.mkdir()
        self.loops: list[str] = []

    def file(self, name: str, size: str = "96M") -> str:
        backing = self.root / f"{name}.img"
        subprocess.run(["truncate", "-s", size, str(backing)], check=True, timeout=10)
        link = self.by_id / name
        link.symlink_to(backing)
        return str(link)

    def block(self, name: str) -> str:
        """A loop device over a fresh file (zfs-fuse wants a disk for L2ARC)."""
        losetup = need_binary("losetup", "mount")
        backing = self.root / f"{name}.img"
        subprocess.run(["truncate", "-s", "96M", str(backing)], check=True, timeout=10)
        device = subprocess.run(
            [losetup, "--find", "--show", str(backing)],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        self.loops.append(device)
        link = self.by_id / name
        link.symlink_to(device)
        return str(link)

    def close(self) -> None:
        for device in self.loops:
            # Busy (zfs-fuse still has it open): the kernel detaches it once closed.
            subprocess.run(["losetup", "-d", device], check=False, timeout=10)


@pytest.fixture
def disks(zfs: ZfsFuse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disks]:
    made = Disks(tmp_path)
    monkeypatch.setenv("PATH", zfs.env()["PATH"])
    monkeypatch.setenv(cache_checks.BY_ID_ENV, str(made.by_id))
    monkeypatch.chdir(tmp_path)  # no ./nixmox.toml: zpool from PATH, no journal
    try:
        yield made
    finally:
        made.close()


def _section(zfs: ZfsFuse, pool: str, device: str) -> str | None:
    for vdev in cache_checks.parse_status(zfs.zpool("status", pool).stdout):
        if vdev.name in (device, Path(device).resolve().name):
            return vdev.section
    return None


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    def call(*argv: str) -> tuple[int, str, str]:
        code = run(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.mark.peer
def test_cache_added_and_removed(zfs: ZfsFuse, zfs_pool: str, disks: Disks, cli: Cli) -> None:
    ssd = disks.block("nvme-Fake_SSD_cache")
    code, out, _ = cli("zfs", "cache", "add", zfs_pool, ssd, "--yes")
    assert code == 0
    assert f"zpool add {zfs_pool} cache {ssd}" in out
    assert _section(zfs, zfs_pool, ssd) == "cache"

    code, out, _ = cli("zfs", "cache", "remove", zfs_pool, ssd, "--yes")
    assert code == 0 and f"zpool remove {zfs_pool} {ssd}" in out
    assert _section(zfs, zfs_pool, ssd) is None


@pytest.mark.peer
def test_slog_and_mirrored_slog(zfs: ZfsFuse, zfs_pool: str, disks: Disks, cli: Cli) -> None:
    one, a, b = (disks.file(n) for n in ("ata-Log_1", "ata-Log_A", "ata-Log_B"))
    assert cli("zfs", "cache", "add", zfs_pool, one, "--slog", "--yes")[0] == 0
    assert _section(zfs, zfs_pool, one) == "logs"
    code, out, _ = cli("zfs", "cache", "add", zfs_pool, a, "--slog", "--mirror", b, "--yes")
    assert code == 0 and f"log mirror {a} {b}" in out
    assert _section(zfs, zfs_pool, a) == _section(zfs, zfs_pool, b) == "logs"

    assert cli("zfs", "cache", "remove", zfs_pool, one, "--yes")[0] == 0
    # zfs-fuse (like OpenZFS) removes a log mirror as a whole: by a member's name here.
    code, out, _ = cli("zfs", "cache", "remove", zfs_pool, a, "--yes")
    assert code == 0 and "mirrored SLOG mirror-" in out
    status = zfs.zpool("status", zfs_pool).stdout
    assert "logs" not in status and Path(b).name not in status


@pytest.mark.peer
def test_refusals_change_nothing(zfs: ZfsFuse, zfs_pool: str, disks: Disks, cli: Cli) -> None:
    before = zfs.zpool("status", zfs_pool).stdout
    plain = disks.file("ata-Plain")
    # Not a by-id name: the same file, by its real path.
    code, _, err = cli("zfs", "cache", "add", zfs_pool, str(Path(plain).resolve()), "--yes")
    assert code == 1 and "by-id" in err and len(err.strip().splitlines()) == 1

    # Already in a pool: the pool's own backing file under a by-id name.
    member = disks.by_id / "ata-Pool_member"
    member.symlink_to(zfs.pools[zfs_pool])
    code, _, err = cli("zfs", "cache", "add", zfs_pool, str(member), "--slog", "--yes")
    assert code == 1 and f"already a data device of pool {zfs_pool}" in err

    # No --yes and no terminal: refused before zpool runs.
    code, out, err = cli("zfs", "cache", "add", zfs_pool, plain, "--slog")
    assert code == 1 and "stdin is not a terminal; give --yes" in err
    assert f"zpool add {zfs_pool} log {plain}" in out

    # Data vdevs are never removed.
    member2 = disks.by_id / "ata-Data"
    member2.symlink_to(zfs.pools[zfs_pool])
    code, _, err = cli("zfs", "cache", "remove", zfs_pool, str(member2), "--yes")
    assert code == 1 and "nixmox removes only cache and log devices" in err

    # A missing device, a missing pool.
    code, _, err = cli("zfs", "cache", "add", zfs_pool, str(disks.by_id / "nope"), "--yes")
    assert code == 1 and "does not exist" in err
    code, _, err = cli("zfs", "cache", "add", "nopool", plain, "--yes")
    assert code == 1 and "no pool named nopool" in err
    assert zfs.zpool("status", zfs_pool).stdout == before


@pytest.mark.peer
@pytest.mark.parametrize(
    ("offset", "signature", "what"),
    [(512, b"EFI PART", "a GPT partition table"), (510, b"\x55\xaa", "an MBR partition table")],
    ids=["gpt", "mbr"],
)
def test_partition_table_needs_force(
    zfs: ZfsFuse, zfs_pool: str, disks: Disks, cli: Cli, offset: int, signature: bytes, what: str
) -> None:
    used = disks.file("ata-Used_disk")
    with open(used, "r+b") as f:
        f.seek(offset)
        f.write(signature)
    code, _, err = cli("zfs", "cache", "add", zfs_pool, used, "--slog", "--yes")
    assert code == 1 and f"holds {what}" in err
    assert "--force" in err
    assert _section(zfs, zfs_pool, used) is None

    code, out, _ = cli("zfs", "cache", "add", zfs_pool, used, "--slog", "--yes", "--force")
    assert code == 0 and "overwriting it (--force)" in out
    assert _section(zfs, zfs_pool, used) == "logs"


@pytest.mark.peer
def test_dry_run_shows_the_command_and_changes_nothing(
    zfs: ZfsFuse, zfs_pool: str, disks: Disks, cli: Cli
) -> None:
    ssd = disks.file("ata-Dry")
    before = zfs.zpool("status", zfs_pool).stdout
    code, out, _ = cli("zfs", "cache", "add", zfs_pool, ssd, "--slog", "--dry-run")
    assert code == 0
    assert out.splitlines()[-2:] == [
        f"  zpool add {zfs_pool} log {ssd}",
        "dry run: nothing changed",
    ]
    assert zfs.zpool("status", zfs_pool).stdout == before


@pytest.mark.peer
def test_the_answer_to_the_prompt_decides(zfs: ZfsFuse, zfs_pool: str, disks: Disks) -> None:
    from nixmox.cli import zfs_cache

    ssd = disks.file("ata-Asked")
    asked: list[str] = []

    def no(prompt: str) -> bool:
        asked.append(prompt)
        return False

    with pytest.raises(NotConfirmed, match="was not run"):
        zfs_cache.add(
            None,
            zfs_pool,
            ssd,
            slog=True,
            mirror=None,
            yes=False,
            force=False,
            dry_run=False,
            ask=no,
        )
    assert asked == ["Run it?"] and _section(zfs, zfs_pool, ssd) is None
    code = zfs_cache.add(
        None, zfs_pool, ssd, slog=True, mirror=None, yes=False, force=False, dry_run=False,
        ask=lambda prompt: True,
    )  # fmt: skip
    assert code == 0 and _section(zfs, zfs_pool, ssd) == "logs"
