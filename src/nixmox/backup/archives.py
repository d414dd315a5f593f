"""Pure decisions for vzdump archives: which files are whose, when, and which go.

Only files named ``vzdump-{qemu|lxc}-VMID-YYYY_MM_DD-HH_MM_SS.*`` count, and,
on a Proxmox Backup Server storage, snapshots named
``backup/{vm|ct}/VMID/YYYY-MM-DDTHH:MM:SSZ`` (PBS's backup group of the guest
and the snapshot's UTC time; pve-storage, ``PBSPlugin.pm``). The
time is the listing's ``ctime``: vzdump names files in the *node's* local
time, which need not be the inventory's zone, and PVE's content listing
already turns the name into an epoch in that zone (pve-storage,
``PVE::Storage::archive_info``). The name, read in ``zone``, is only the
fallback for a row without ``ctime``. Hand-named copies, other guests'
archives and protected archives are never removed; a protected archive
does not use up a keep slot either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from nixmox.rules.retention import Item, Keep, Mark, Pruned, prune

_NAME = re.compile(
    r"(?:[^:]+:)?(?:backup/)?vzdump-(qemu|lxc)-(\d+)-(\d{4})_(\d\d)_(\d\d)-(\d\d)_(\d\d)_(\d\d)\.[\w.]+"
)

# A PBS snapshot: group type (vm or ct), group id (the VMID), backup time in UTC.
_PBS = re.compile(r"(?:[^:]+:)?backup/(vm|ct)/(\d+)/(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")
_PBS_KIND = {"vm": "qemu", "ct": "lxc"}


@dataclass(frozen=True)
class Archive:
    """One vzdump archive as storage content lists it."""

    volid: str
    kind: str  # "qemu" | "lxc"
    vmid: int
    time: datetime
    size: int
    protected: bool
    notes: str = ""


def parse_volid(volid: str, zone: tzinfo) -> tuple[str, int, datetime] | None:
    """``local:backup/vzdump-qemu-101-2026_11_25-02_30_00.vma.zst`` -> (qemu, 101, time);
    ``pbs:backup/ct/100/2026-11-25T01:30:00Z`` -> (lxc, 100, that time in UTC)."""
    found = _NAME.fullmatch(volid)
    pbs = _PBS.fullmatch(volid) if found is None else None
    if found is None and pbs is None:
        return None
    when_zone: tzinfo = zone
    if pbs is not None:
        group, vmid, *fields = pbs.groups()
        kind, when_zone = _PBS_KIND[group], UTC
    else:
        assert found is not None
        kind, vmid, *fields = found.groups()
    try:
        year, month, day, hour, minute, second = (int(f) for f in fields)
        when = datetime(year, month, day, hour, minute, second, tzinfo=when_zone)
    except ValueError:
        return None
    return kind, int(vmid), when


def all_archives(content: Iterable[Mapping[str, Any]], zone: tzinfo) -> list[Archive]:
    """Every vzdump archive or PBS snapshot in a storage listing, newest first (other
    files skipped)."""
    found = []
    for item in content:
        volid = str(item.get("volid", ""))
        parsed = parse_volid(volid, zone)
        if parsed is not None:
            kind, vmid, when = parsed
            ctime = item.get("ctime")
            if isinstance(ctime, int | float) and not isinstance(ctime, bool) and ctime > 0:
                when = datetime.fromtimestamp(ctime, zone)
            size, protected = int(item.get("size") or 0), bool(item.get("protected"))
            found.append(
                Archive(volid, kind, vmid, when, size, protected, str(item.get("notes") or ""))
            )
    return sorted(found, key=lambda a: a.time, reverse=True)


def archives_of(
    content: Iterable[Mapping[str, Any]], vmid: int, kind: str, zone: tzinfo
) -> list[Archive]:
    """The archives in a storage listing that belong to guest ``vmid`` of ``kind``."""
    return [a for a in all_archives(content, zone) if a.kind == kind and a.vmid == vmid]


def plan_prune(archives: Iterable[Archive], keep: Keep, zone: tzinfo) -> Pruned:
    """Proxmox's rule over one guest's archives; protected ones are never removed."""
    return prune([Item(a.time, a.protected, a.volid) for a in archives], keep, zone)


def removals(decisions: Pruned) -> list[str]:
    """The volids retention removes."""
    return [
        it.ref for it, m in zip(decisions.items, decisions.marks, strict=True) if m is Mark.REMOVE
    ]


def human_size(size: int) -> str:
    """``1234567890`` -> ``1.1 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
