"""Getting files and datasets back from ZFS snapshots: list, browse, guarded rollback.

- :func:`list_snapshots`: every snapshot under a dataset (or every pool),
  nixmox's own and everyone else's, with their holds.
- :func:`browse` clones a snapshot to a read-only mount (marked with the user
  property ``nixmox:browse``) and :func:`unbrowse` removes exactly such a clone:
  files come back by copying them out, nothing is rolled back.
- :func:`rollback` refuses when snapshots newer than the target would be
  destroyed unless each is named, keeps the current state first (a safety
  snapshot, copied with send/recv into ``DATASET-nixmox-safety-STAMP``, because
  a rollback destroys every snapshot newer than its target, the fresh safety
  snapshot included), and never rolls back a dataset a running guest uses
  without stopping the guest through the Proxmox API first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nixmox.adapters.zfs import Zfs, send_to
from nixmox.core.errors import NixmoxError, UsageError
from nixmox.core.results import result_word
from nixmox.core.words import plural
from nixmox.inventory.model import Inventory
from nixmox.snapshot.policy import PREFIX, taken_at

BROWSE_PROPERTY = "nixmox:browse"
BROWSE_ROOT = "/run/nixmox/browse"
SAFETY = "nixmox-safety"
#: Proxmox's volume names on a zfspool storage: whose guest a dataset is.
_VOLUME = re.compile(r"(?:vm|subvol|base)-(\d+)-disk-\d+")


@dataclass(frozen=True)
class SnapshotRow:
    """One snapshot for ``snapshot list``."""

    dataset: str
    name: str
    holds: int
    ours: bool

    @property
    def full(self) -> str:
        return f"{self.dataset}@{self.name}"


def split_snapshot(text: str) -> tuple[str, str]:
    """``pool/ds@name`` -> (dataset, name); one clear line otherwise."""
    dataset, at, name = text.partition("@")
    if not at or not dataset or not name or "@" in name:
        raise UsageError(f"{text!r}: name a snapshot as DATASET@SNAPSHOT")
    return dataset, name


def list_snapshots(zfs: Zfs, dataset: str | None) -> list[SnapshotRow]:
    """Every snapshot under ``dataset`` (default: every pool), oldest first per dataset."""
    roots = [dataset] if dataset else sorted(d for d in zfs.datasets() if "/" not in d)
    rows = []
    for root in roots:
        for snap in zfs.list_snapshots(root, recursive=True):
            ours = snap.name.startswith(PREFIX) and taken_at(snap.name) is not None
            rows.append(SnapshotRow(snap.dataset, snap.name, snap.userrefs, ours))
    return rows


def browse_names(snapshot: str, mountpoint: str | None) -> tuple[str, str]:
    """The clone's dataset and mount point for ``snapshot``."""
    dataset, name = split_snapshot(snapshot)
    clean = re.sub(r"[^A-Za-z0-9_.:-]", "_", name)
    where = mountpoint or f"{BROWSE_ROOT}/{dataset.replace('/', '_')}@{clean}"
    return f"{dataset}-nixmox-browse-{clean}", where


def browse(zfs: Zfs, snapshot: str, mountpoint: str | None = None) -> tuple[str, str]:
    """Clone ``snapshot`` read-only to a mount; returns (clone, mount point)."""
    dataset, name = split_snapshot(snapshot)
    if not any(s.name == name for s in zfs.list_snapshots(dataset, recursive=False)):
        raise NixmoxError(f"{snapshot}: no such snapshot")
    clone, where = browse_names(snapshot, mountpoint)
    zfs.clone(snapshot, clone, {"readonly": "on", "mountpoint": where, BROWSE_PROPERTY: snapshot})
    return clone, where


def unbrowse(zfs: Zfs, snapshot: str) -> str:
    """Remove the browse clone of ``snapshot`` (only one nixmox made); returns its name."""
    clone, _ = browse_names(snapshot, None)
    mark = zfs.get(clone, BROWSE_PROPERTY)
    if mark != snapshot:
        raise NixmoxError(f"{clone} is not a browse clone nixmox made of {snapshot}: left alone")
    zfs.unmount(clone)
    zfs.destroy_filesystem(clone)
    return clone


# -- rollback -------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestUse:
    """A guest whose disk is the dataset being rolled back."""

    vmid: int
    node: str
    kind: str  # qemu | lxc
    running: bool


@dataclass
class RollbackResult:
    """What a rollback did."""

    snapshot: str
    destroyed: list[str] = field(default_factory=list)
    safety: str | None = None  # the copy of what was there
    stopped: int | None = None  # the guest stopped (and started again) for it
    commands: list[str] = field(default_factory=list)  # --dry-run
    ok: bool = False
    message: str = ""

    @property
    def result(self) -> str:
        return result_word(self.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "destroyed": self.destroyed,
            "safety": self.safety,
            "stopped": self.stopped,
            "ok": self.ok,
            "message": self.message,
        }


def later_snapshots(names: Sequence[str], target: str) -> list[str]:
    """The snapshots newer than ``target`` in an oldest-first listing (pure)."""
    if target not in names:
        raise NixmoxError(f"no snapshot {target!r}")
    return list(names[names.index(target) + 1 :])


def rollback_refusal(later: Sequence[str], allowed: Sequence[str]) -> str | None:
    """Why the rollback must not run (pure): newer snapshots not named exactly."""
    if set(later) == set(allowed):
        return None
    if not later:
        return "no snapshot is newer than the target: drop --destroy-later"
    unknown = sorted(set(allowed) - set(later))
    if unknown:
        return f"--destroy-later {unknown[0]}: not a snapshot newer than the target"
    return (
        f"rolling back destroys {plural(len(later), 'newer snapshot')}: {', '.join(later)}; "
        "name each with --destroy-later NAME to allow it"
    )


def guest_of(inv: Inventory, dataset: str) -> int | None:
    """The VMID whose disk ``dataset`` is, on one of the inventory's zfspool storages."""
    parent, _, leaf = dataset.rpartition("/")
    found = _VOLUME.fullmatch(leaf)
    pools = {s.dataset for s in inv.storages if s.type == "zfspool" and s.dataset}
    if found is None or parent not in pools:
        return None
    return int(found.group(1))


def rollback(
    zfs: Zfs,
    snapshot: str,
    allowed: Sequence[str],
    *,
    guest: GuestUse | None,
    stop_guest: Callable[[GuestUse], None],
    start_guest: Callable[[GuestUse], None],
    stop: bool,
    now: datetime | None = None,
) -> RollbackResult:
    """Roll ``dataset`` back to ``snapshot`` with every guard (see the module)."""
    dataset, name = split_snapshot(snapshot)
    result = RollbackResult(snapshot)
    names = [s.name for s in zfs.list_snapshots(dataset, recursive=False)]
    later = later_snapshots(names, name)
    refusal = rollback_refusal(later, allowed)
    if refusal is not None:
        raise NixmoxError(f"not rolled back: {refusal}")
    if guest is not None and guest.running and not stop:
        raise NixmoxError(
            f"not rolled back: guest {guest.vmid} is running on {dataset}; "
            "pass --stop to stop it through the Proxmox API first (it is started again after)"
        )
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    safety = f"{SAFETY}_{stamp}"
    if guest is not None and guest.running:
        stop_guest(guest)
        result.stopped = guest.vmid
    try:
        zfs.snapshot(dataset, safety, recursive=False)
        result.safety = f"{dataset}-{SAFETY}-{stamp}@{safety}"
        copy = f"{dataset}-{SAFETY}-{stamp}"
        send_to(
            zfs,
            zfs,
            zfs.send_argv(f"{dataset}@{safety}"),
            zfs.receive_argv(copy, resumable=False),
            what=f"cannot copy {dataset}@{safety} to {copy}",
        )
        zfs.rollback_destroying_newer(snapshot)
        result.destroyed = [*later, safety]
    finally:
        if result.stopped is not None:
            start_guest(guest)  # type: ignore[arg-type]
    result.ok = True
    result.message = f"{dataset} is back at {name}; what was there is kept as {result.safety}"
    return result
