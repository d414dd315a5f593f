"""Pure decisions for one replicated dataset: what to send, what blocks it, what to prune.

Only nixmox's own snapshots (``nixmox_<UTC time>``, see :mod:`nixmox.snapshot.policy`)
are sent. A snapshot on the target is the source's when its GUID is the
same: names can be reused, GUIDs cannot. Nothing here runs a command.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum

from nixmox.adapters.zfs import Snapshot, SnapshotId
from nixmox.rules.retention import Keep
from nixmox.snapshot.policy import PrunePlan, plan_prune, taken_at

#: The user property nixmox sets on every replica it created (value: the source dataset).
OWNER_PROPERTY = "nixmox:source"


def replica_name(target_root: str, source_root: str, dataset: str) -> str:
    """Where ``dataset`` (``source_root`` or a dataset below it) is received.

    ``rpool/data`` to ``usb/pve`` is ``usb/pve/data``; ``rpool/data/vm-100-disk-0``
    below it is ``usb/pve/data/vm-100-disk-0``.
    """
    if dataset != source_root and not dataset.startswith(source_root + "/"):
        raise ValueError(f"{dataset} is not {source_root} or below it")
    leaf = source_root.rsplit("/", 1)[-1]
    return f"{target_root}/{leaf}{dataset[len(source_root) :]}"


def hold_tag(target: str) -> str:
    """The hold that keeps the source's newest common snapshot for ``target``."""
    return f"nixmox-replica-{target}"


def bookmark_name(target: str, snapshot: str) -> str:
    """The bookmark that stands in for ``snapshot`` as ``target``'s incremental base."""
    return f"nixmox-{target}_{snapshot}"


class Kind(StrEnum):
    """What a dataset's run does."""

    FULL = "full"  # no replica yet: a full stream, then the rest incrementally
    INCREMENTAL = "incremental"  # from the newest common snapshot
    RESUME = "resume"  # finish an interrupted receive first
    UP_TO_DATE = "up-to-date"
    BLOCKED = "blocked"  # diverged, not ours, or nothing to send: an error with a fix


@dataclass(frozen=True)
class Send:
    """One stream: ``base`` (``None``: full; ``@snap`` or ``#bookmark``) to ``snapshot``."""

    snapshot: str
    base: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to do for one dataset, and why when it cannot."""

    kind: Kind
    sends: tuple[Send, ...] = ()
    common: str | None = None  # the newest common snapshot's name, before this run
    discard: tuple[str, ...] = ()  # target snapshots to destroy first (named by the user)
    rollback: bool = False  # roll the target back to ``common`` first (named by the user)
    error: str | None = None
    fix: str | None = None


@dataclass(frozen=True)
class Ends:
    """What was read from both ends for one dataset."""

    source: str
    replica: str
    snapshots: Sequence[SnapshotId]  # the source's, oldest first
    bookmarks: Sequence[SnapshotId] = ()  # the source's, where bookmarks work
    replica_exists: bool = False
    replica_owner: str | None = None  # OWNER_PROPERTY on the replica
    replica_snapshots: Sequence[SnapshotId] = ()  # oldest first
    resume_token: str | None = None


@dataclass(frozen=True)
class Discard:
    """What the user allows nixmox to throw away on targets (``--discard``), exactly named."""

    names: frozenset[str] = field(default_factory=frozenset)

    def snapshots(self, replica: str) -> set[str]:
        return {n.partition("@")[2] for n in self.names if n.partition("@")[0] == replica}

    def rollback(self, replica: str) -> bool:
        return replica in self.names


def ours(snapshots: Iterable[SnapshotId]) -> list[SnapshotId]:
    """The snapshots nixmox took, in the given order."""
    return [s for s in snapshots if taken_at(s.name) is not None]


def decide(ends: Ends, discard: Discard, *, target: str) -> Decision:
    """Full, incremental, resume, up to date, or blocked (with the error and the fix)."""
    mine = ours(ends.snapshots)
    if ends.resume_token:
        return Decision(Kind.RESUME)
    if not mine:
        return Decision(
            Kind.BLOCKED,
            error=f"{ends.source} has no nixmox snapshot to send",
            fix="add it to [[snapshots.datasets]] and run `nixmox snapshot` first",
        )
    if not ends.replica_exists:
        first = [Send(mine[0].name)]
        rest = [Send(b.name, f"@{a.name}") for a, b in itertools.pairwise(mine)]
        return Decision(Kind.FULL, (*first, *rest))
    if ends.replica_owner != ends.source:
        owner = f"made for {ends.replica_owner}" if ends.replica_owner else "not made by nixmox"
        return Decision(
            Kind.BLOCKED,
            error=f"{ends.replica} on target {target} exists and is {owner}; "
            "nixmox leaves it alone",
            fix=f"receive elsewhere, or adopt it: `zfs set {OWNER_PROPERTY}={ends.source} "
            f"{ends.replica}` if it really is a copy of {ends.source}",
        )
    by_guid = {s.guid: ("@", s) for s in ends.snapshots}
    for b in ends.bookmarks:
        by_guid.setdefault(b.guid, ("#", b))
    common_at = next(
        (
            i
            for i in range(len(ends.replica_snapshots) - 1, -1, -1)
            if ends.replica_snapshots[i].guid in by_guid
        ),
        None,
    )
    if common_at is None:
        return Decision(
            Kind.BLOCKED,
            error=f"{ends.replica} on target {target} shares no snapshot with {ends.source} "
            "(its common snapshot is gone): it cannot be updated incrementally",
            fix=f"rename or destroy {ends.replica} yourself (nixmox never destroys a dataset); "
            "the next run then sends a full stream",
        )
    common = ends.replica_snapshots[common_at]
    newer = [s.name for s in ends.replica_snapshots[common_at + 1 :]]
    allowed = discard.snapshots(ends.replica)
    if any(n not in allowed for n in newer):
        flags = " ".join(f"--discard {ends.replica}@{n}" for n in newer)
        return Decision(
            Kind.BLOCKED,
            common=common.name,
            error=f"{ends.replica} on target {target} diverged: snapshot(s) "
            f"{', '.join(newer)} after the common {common.name} are not {ends.source}'s",
            fix=f"check what they hold; to let nixmox destroy exactly them: "
            f"`nixmox replicate --dataset {ends.source} {flags}`",
        )
    sign, base = by_guid[common.guid]
    source_names = [s.name for s in ends.snapshots]
    if sign == "@":
        later = ends.snapshots[source_names.index(base.name) + 1 :]
    else:  # only a bookmark is left: everything created after it
        later = [s for s in ends.snapshots if s.createtxg > base.createtxg]
    later_mine = ours(later)
    chain: list[Send] = []
    previous = f"{sign}{base.name}"
    for snap in later_mine:
        chain.append(Send(snap.name, previous))
        previous = f"@{snap.name}"
    rollback = discard.rollback(ends.replica)
    return Decision(
        Kind.INCREMENTAL if chain else Kind.UP_TO_DATE,
        tuple(chain),
        common=common.name,
        discard=tuple(newer),
        rollback=rollback and bool(chain),
    )


def prune_replica(
    replica: str,
    snapshots: Iterable[SnapshotId],
    keep: Keep,
    zone: tzinfo,
    *,
    common: str | None,
) -> PrunePlan:
    """The target's own keep-* over nixmox's snapshots on ``replica``; ``common`` is kept.

    A held snapshot is protected; anything not named ``nixmox_...`` is not a candidate.
    """
    listing = [Snapshot(replica, s.name, s.createtxg, s.userrefs) for s in snapshots]
    return plan_prune(replica, listing, keep, zone, spare=common)


def newest_time(snapshots: Iterable[SnapshotId]) -> datetime | None:
    """When the newest nixmox snapshot among ``snapshots`` was taken."""
    return max((t for s in snapshots if (t := taken_at(s.name)) is not None), default=None)
