"""ZFS SSD caching: add or remove an L2ARC (cache) or SLOG (log) device.

The decisions are pure functions on plain data (a path, the first bytes of a
device, the text of ``/proc/self/mounts`` and ``zpool status``); the I/O goes
through :class:`nixmox.adapters.zfs.Zpool` (and so through the runner) and a few
local reads. A device is accepted only by its ``/dev/disk/by-id`` name, which
stays the same across reboots and controller changes, and only when nothing
uses it: not mounted, in no pool, and (unless forced) carrying no partition
table or file system signature.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nixmox.core.errors import ConfigError, NixmoxError

BY_ID = "/dev/disk/by-id"
# Tests point this at a directory of their own symlinks; the checks stay the same.
BY_ID_ENV = "NIXMOX_DISK_BY_ID"
# Enough to see every signature below (ZFS keeps its first uberblocks at 128 KiB).
PROBE_BYTES = 256 * 1024


class DeviceRefused(NixmoxError):
    """The device is not one nixmox will hand to ``zpool add``/``zpool remove``."""


def by_id_dir(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(BY_ID_ENV) or BY_ID


# -- the device name ----------------------------------------------------------------


def check_by_id(device: str, directory: str) -> None:
    """Refuse anything but ``DIRECTORY/NAME`` (a persistent by-id name)."""
    parent = os.path.dirname(device.rstrip("/"))
    if os.path.normpath(parent) != os.path.normpath(directory) or not os.path.basename(device):
        raise DeviceRefused(
            f"{device}: give the device by its {directory}/... name "
            "(a /dev/sdX or /dev/nvmeXnY name can point at another disk after a reboot)"
        )


# -- signatures in the first bytes ------------------------------------------------


def signatures(head: bytes) -> list[str]:
    """What the first bytes of a device say it holds (empty: looks unused)."""
    found = []
    for sector in (512, 4096):
        if head[sector : sector + 8] == b"EFI PART":
            found.append("a GPT partition table")
            break
    else:
        if head[510:512] == b"\x55\xaa":
            found.append("an MBR partition table (or boot sector)")
    if head[1080:1082] == b"\x53\xef":
        found.append("an ext2/3/4 file system")
    if head[:4] == b"XFSB":
        found.append("an XFS file system")
    if head[:6] == b"LUKS\xba\xbe":
        found.append("a LUKS header")
    if head[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"):
        found.append("swap space")
    if head[0x10040:0x10048] == b"_BHRfS_M":
        found.append("a btrfs file system")
    # A ZFS label: uberblocks (magic 0x00bab10c, either byte order) from 128 KiB.
    ring = head[128 * 1024 :]
    if any(ring[i : i + 8] in _UBERBLOCK for i in range(0, len(ring) - 7, 1024)):
        found.append("a ZFS label (it was, or is, in a pool)")
    return found


_UBERBLOCK = (
    (0x00BAB10C).to_bytes(8, "little"),
    (0x00BAB10C).to_bytes(8, "big"),
)


# -- mounts -------------------------------------------------------------------------


def mounted_at(mounts: str, device: str, resolve: Resolver) -> list[str]:
    """Mount points (from ``/proc/self/mounts`` text) of ``device`` or one of its partitions."""
    target = resolve(device)
    points = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 2 or not fields[0].startswith("/"):
            continue
        source = resolve(_unescape(fields[0]))
        if source == target or _is_partition_of(source, target):
            points.append(_unescape(fields[1]))
    return points


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _is_partition_of(candidate: str, disk: str) -> bool:
    """``/dev/sda1`` of ``/dev/sda``, ``/dev/nvme0n1p2`` of ``/dev/nvme0n1``."""
    if not candidate.startswith(disk) or candidate == disk:
        return False
    rest = candidate[len(disk) :]
    return re.fullmatch(r"p?\d+", rest) is not None and disk.startswith("/dev/")


class Resolver:
    """Resolves a device name as zpool and /proc print it to one canonical path."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __call__(self, name: str) -> str:
        if os.path.isabs(name):
            return os.path.realpath(name)
        # zpool prints short names: `loop0`, `sda`, `nvme-Samsung_...` (by-id).
        for base in ("/dev", self.directory, BY_ID):
            path = os.path.join(base, name)
            if os.path.lexists(path):
                return os.path.realpath(path)
        return name


# -- zpool status ----------------------------------------------------------------------


@dataclass(frozen=True)
class Vdev:
    """One line of a pool's configuration in ``zpool status``."""

    pool: str
    name: str
    section: str  # "data", "logs", "cache" or "spares"
    top: str  # the top-level vdev it belongs to (itself if it is one)
    depth: int  # 0 for a top-level vdev, 1 for a member of a mirror/raidz


_SECTIONS = {name: name for name in ("logs", "cache", "spares", "special", "dedup")}


def parse_status(text: str) -> list[Vdev]:
    """Every vdev of every pool in ``zpool status`` output (OpenZFS and zfs-fuse)."""
    vdevs: list[Vdev] = []
    pool = ""
    in_config = False
    base = -1
    section = "data"
    top = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("pool:"):
            pool = stripped.split(":", 1)[1].strip()
            in_config, base, section = False, -1, "data"
            continue
        if stripped.startswith("config:"):
            in_config = True
            continue
        if not in_config or not stripped or stripped.startswith("NAME"):
            continue
        if stripped.startswith("errors:"):
            in_config = False
            continue
        indent = len(raw.expandtabs(8)) - len(raw.expandtabs(8).lstrip())
        name = stripped.split()[0]
        if base < 0:
            base = indent  # the pool's own line
            continue
        if indent == base:
            section = _SECTIONS.get(name, section)
            continue
        depth = (indent - base) // 2 - 1
        if depth <= 0:
            top, depth = name, 0
        vdevs.append(Vdev(pool, name, section, top, depth))
    return vdevs


def find_device(vdevs: Iterable[Vdev], device: str, resolve: Resolver) -> list[Vdev]:
    """The vdevs that are ``device`` or one of its partitions."""
    target = resolve(device)
    found = []
    for vdev in vdevs:
        if is_group(vdev.name):
            continue
        path = resolve(vdev.name)
        if path == target or _is_partition_of(path, target):
            found.append(vdev)
    return found


def is_group(name: str) -> bool:
    """``mirror-1``, ``raidz2-0``, ``spare-3``...: a vdev made of others, not a device."""
    return (
        re.fullmatch(r"(mirror|raidz[123]?|draid[123]?\S*|spare|replacing)(-\d+)?", name)
        is not None
    )


# -- the plans ------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What ``zpool`` will run, and why, in one line for the confirmation prompt."""

    argv: list[str]
    description: str


def plan_add(pool: str, devices: Sequence[str], *, slog: bool) -> Plan:
    """``zpool add POOL cache DEV`` / ``log DEV`` / ``log mirror DEV1 DEV2``."""
    if len(devices) not in (1, 2):
        raise ConfigError("give one device (two with --mirror)")
    if len(devices) == 2 and not slog:
        # ZFS stripes cache devices; a mirrored L2ARC buys nothing.
        raise ConfigError("--mirror is for a SLOG (--slog): cache devices cannot be mirrored")
    if len(set(devices)) != len(devices):
        raise ConfigError("--mirror names the same device twice")
    kind = "log" if slog else "cache"
    layout = ["mirror", *devices] if len(devices) == 2 else list(devices)
    what = "SLOG (separate intent log)" if slog else "L2ARC (cache)"
    mirrored = " as a mirror" if len(devices) == 2 else ""
    return Plan(["add", pool, kind, *layout], f"add {what}{mirrored} to pool {pool}")


def plan_remove(pool: str, device: str, vdevs: Sequence[Vdev], resolve: Resolver) -> Plan:
    """``zpool remove POOL VDEV`` for a cache or log device of ``pool`` (never a data vdev).

    A member of a mirrored SLOG takes the whole mirror with it: ZFS removes
    top-level log vdevs, not one side of one.
    """
    mine = [v for v in vdevs if v.pool == pool]
    if not mine:
        raise DeviceRefused(f"no pool named {pool}")
    if is_group(device):
        groups = [v for v in mine if v.name == device]
        if not groups:
            raise DeviceRefused(f"{pool} has no vdev named {device}")
        return _removable(pool, groups[0], device)
    hits = find_device(mine, device, resolve)
    if not hits:
        raise DeviceRefused(f"{device} is not a device of pool {pool}")
    return _removable(pool, hits[0], device)


def _removable(pool: str, vdev: Vdev, device: str) -> Plan:
    if vdev.section == "cache":
        return Plan(["remove", pool, device], f"remove L2ARC device {device} from pool {pool}")
    if vdev.section == "logs":
        if vdev.depth > 0:
            return Plan(
                ["remove", pool, vdev.top],
                f"remove the mirrored SLOG {vdev.top} (with {device}) from pool {pool}",
            )
        return Plan(["remove", pool, device], f"remove SLOG device {device} from pool {pool}")
    where = "a data vdev" if vdev.section == "data" else f"a {vdev.section} vdev"
    raise DeviceRefused(
        f"{device} is {where} of pool {pool}: nixmox removes only cache and log devices"
    )


def check_unused(
    device: str,
    *,
    vdevs: Sequence[Vdev],
    mounts: str,
    head: bytes,
    resolve: Resolver,
    force: bool,
) -> list[str]:
    """Refuse a device in use; return the warnings ``--force`` overrode."""
    points = mounted_at(mounts, device, resolve)
    if points:
        raise DeviceRefused(f"{device} is mounted at {points[0]}: refusing to touch it")
    pools = find_device(vdevs, device, resolve)
    if pools:
        v = pools[0]
        role = {"data": "a data", "logs": "a log", "cache": "a cache"}.get(v.section, "a")
        raise DeviceRefused(f"{device} is already {role} device of pool {v.pool} ({v.name})")
    found = signatures(head)
    if found and not force:
        raise DeviceRefused(
            f"{device} holds {' and '.join(found)}; wipe it first, or give --force "
            "if its contents may be overwritten"
        )
    return [f"{device} holds {what}: overwriting it (--force)" for what in found]


def read_head(device: str) -> bytes:
    """The first bytes of a device (or file), for :func:`signatures`."""
    try:
        with open(device, "rb") as f:
            return f.read(PROBE_BYTES)
    except FileNotFoundError:
        raise DeviceRefused(f"{device} does not exist") from None
    except OSError as exc:
        raise DeviceRefused(f"cannot read {device}: {exc.strerror}") from None


def read_mounts() -> str:
    return Path("/proc/self/mounts").read_text()
