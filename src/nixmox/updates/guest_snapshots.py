"""Proxmox snapshots of a guest around an update: take, roll back, delete, prune.

Guest snapshots go through the API (``qm snapshot`` / ``pct snapshot``
equivalents): a raw ``zfs snapshot`` of a guest volume is invisible to Proxmox
and would block its rollback. nixmox's update snapshots are named
``nixmox_update_YYYYMMDDTHHMMSSZ_xxxx`` (UTC, then four random hex digits so
that two runs within one second do not want the same name; names without the
suffix, from earlier versions, are nixmox's too); only those are ever pruned or
deleted.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path
from nixmox.adapters.proxmox.tasks import wait
from nixmox.core.errors import NixmoxError
from nixmox.rules.retention import Item, Keep, Mark, prune

log = logging.getLogger(__name__)

PREFIX = "nixmox_update_"
_SUFFIX = re.compile(r"[0-9a-f]{4}")
_NAME = re.compile(r"nixmox_update_(\d{8}T\d{6})Z(?:_[0-9a-f]{4})?")
DEFAULT_KEEP = Keep(last=3)


def update_snapshot_name(now: datetime, suffix: str | None = None) -> str:
    """The name of a pre-update snapshot taken at ``now``: its UTC second and ``suffix``
    (four hex digits; random by default)."""
    suffix = secrets.token_hex(2) if suffix is None else suffix
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(f"snapshot name suffix {suffix!r}: want four hex digits")
    return f"{PREFIX}{now.astimezone(UTC):%Y%m%dT%H%M%SZ}_{suffix}"


def update_snapshot_time(name: str) -> datetime | None:
    """When nixmox took the update snapshot ``name``; ``None`` if it is not nixmox's."""
    found = _NAME.fullmatch(name)
    if found is None:
        return None
    try:
        return datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def snapshots_to_prune(names: list[str], keep: Keep, zone: tzinfo) -> list[str]:
    """Which of ``names`` (a guest's snapshot names) retention removes; only nixmox's."""
    items = []
    for name in names:
        taken = update_snapshot_time(name)
        if taken is not None:
            items.append(Item(taken, ref=name))
    decided = prune(items, keep, zone)
    return [it.ref for it, m in zip(decided.items, decided.marks, strict=True) if m == Mark.REMOVE]


class SnapshotUnsupported(NixmoxError):
    """Proxmox cannot snapshot the guest's disks (their storage or format lacks the feature)."""


@dataclass(frozen=True)
class GuestSnapshots:
    """The snapshots of one guest (``kind`` is ``qemu`` or ``lxc``)."""

    api: Proxmox
    node: str
    kind: str
    vmid: int
    timeout: float = 1800.0

    @property
    def path(self) -> str:
        return f"{guest_path(self.node, self.kind, self.vmid)}/snapshot"

    def names(self) -> list[str]:
        """Every snapshot of the guest (``current`` left out)."""
        rows = self.api.get(self.path) or []
        return [str(r["name"]) for r in rows if r.get("name") != "current"]

    def supported(self) -> bool:
        """Whether Proxmox can snapshot every disk of the guest now.

        ``GET .../feature?feature=snapshot`` (PVE::QemuServer::has_feature and
        PVE::LXC::Config::has_feature ask each volume's storage plugin): a raw
        disk on a dir, NFS or CIFS storage has no snapshot feature
        (PVE::Storage::Plugin::volume_has_feature knows it only for qcow2).
        """
        path = guest_path(self.node, self.kind, self.vmid)
        answer = self.api.get(f"{path}/feature", feature="snapshot") or {}
        return bool(int(answer.get("hasFeature") or 0)) if isinstance(answer, dict) else False

    def require(self) -> None:
        """:class:`SnapshotUnsupported` unless the guest's disks can be snapshotted."""
        if not self.supported():
            raise SnapshotUnsupported(
                f"Proxmox cannot snapshot {self.kind}/{self.vmid}: a disk is on a storage or "
                "in a format without snapshots (a raw disk on a dir, NFS or CIFS storage); "
                "move it to a zfspool, lvmthin or Ceph storage, or convert it to qcow2 "
                "(`qm disk move VMID DISK STORAGE --format qcow2`)"
            )

    def take(self, name: str, *, description: str = "before a nixmox update") -> None:
        """A disk-only snapshot (no RAM state: a passed-through GPU cannot be saved).

        Checks the snapshot feature first: :class:`SnapshotUnsupported` says why
        instead of a failed task.
        """
        self.require()
        params: dict[str, Any] = {"snapname": name, "description": description}
        if self.kind == "qemu":
            params["vmstate"] = 0
        upid = self.api.post(self.path, done=lambda: name in self.names(), **params)
        if isinstance(upid, str):
            wait(self.api, upid, what=f"snapshot {name} of {self.vmid}", timeout=self.timeout)

    def rollback(self, name: str, *, start: bool = True) -> None:
        """Roll the guest back to ``name``; with ``start``, PVE starts it again afterwards."""
        params: dict[str, Any] = {"start": 1} if start else {}
        upid = self.api.post(f"{self.path}/{name}/rollback", **params)
        if isinstance(upid, str):
            wait(self.api, upid, what=f"rollback of {self.vmid} to {name}", timeout=self.timeout)

    def delete(self, name: str) -> None:
        """Delete snapshot ``name``; refuses names nixmox did not give."""
        if update_snapshot_time(name) is None:
            raise ValueError(f"refusing to delete snapshot {name!r}: nixmox did not take it")
        upid = self.api.delete(f"{self.path}/{name}", done=lambda: name not in self.names())
        if isinstance(upid, str):
            wait(self.api, upid, what=f"delete snapshot {name} of {self.vmid}")

    def prune(self, keep: Keep, zone: tzinfo, *, dry_run: bool = False) -> list[str]:
        """Delete nixmox's update snapshots retention no longer keeps; their names."""
        return prune_update_snapshots(self, keep, zone, dry_run=dry_run)


class SnapshotList(Protocol):
    """A guest's snapshots, however reached (the API here, ``qm`` on the host)."""

    @property
    def vmid(self) -> int: ...

    def names(self) -> list[str]: ...

    def delete(self, name: str) -> None: ...


def prune_update_snapshots(
    snaps: SnapshotList, keep: Keep, zone: tzinfo, *, dry_run: bool = False
) -> list[str]:
    """Delete the update snapshots of ``snaps`` retention no longer keeps (only nixmox's
    own names are candidates); their names."""
    doomed = snapshots_to_prune(snaps.names(), keep, zone)
    for name in doomed:
        if dry_run:
            log.info("would delete snapshot %s of %s", name, snaps.vmid)
        else:
            snaps.delete(name)
    return doomed
