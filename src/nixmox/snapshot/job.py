"""The snapshot job: take each dataset tree's snapshot, then prune nixmox's own.

Per configured dataset (tree): one listing, one snapshot (``-r``: atomic for
the whole tree), then retention per dataset over the snapshots nixmox took.
A tree whose snapshot failed is not pruned; one tree's failure never stops
the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from nixmox.adapters.zfs import DatasetNotFound, Snapshot, Zfs, ZfsError
from nixmox.core import interrupt
from nixmox.inventory.model import SnapshotPolicy, SnapshotTarget
from nixmox.snapshot.policy import (
    by_dataset,
    default_thresholds,
    freshness,
    newest,
    plan_prune,
    snapshot_name,
)


@dataclass
class DatasetResult:
    """What happened to one dataset of a tree."""

    dataset: str
    kept: int = 0
    held: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass
class TreeResult:
    """One configured snapshot target."""

    dataset: str
    policy: str
    recursive: bool
    taken: str | None = None
    error: str | None = None
    datasets: list[DatasetResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not any(d.failed for d in self.datasets)


def run_target(
    zfs: Zfs, target: SnapshotTarget, policy: SnapshotPolicy, zone: tzinfo, now: datetime
) -> TreeResult:
    """Snapshot one target and prune its datasets; never raises for ZFS failures."""
    result = TreeResult(target.dataset, target.policy, target.recursive)
    if interrupt.stopping():
        result.error = f"not started: interrupted by {interrupt.signal_name()}"
        return result
    try:
        listing = zfs.list_snapshots(target.dataset, recursive=target.recursive)
    except DatasetNotFound:
        result.error = f"dataset {target.dataset} does not exist"
        return result
    except ZfsError as exc:
        result.error = str(exc)
        return result
    name = snapshot_name(now)
    try:
        zfs.snapshot(target.dataset, name, recursive=target.recursive)
    except ZfsError as exc:
        # Nothing new was taken: keep every older snapshot of this tree.
        result.error = f"{exc}; nothing pruned"
        return result
    result.taken = name
    groups = by_dataset(listing)
    groups.setdefault(target.dataset, [])
    keep = policy.rule()
    for dataset, snaps in sorted(groups.items()):
        # -r gave every dataset of the tree the new snapshot; a descendant
        # created since the listing just has nothing to prune yet.
        current = [*snaps, Snapshot(dataset, name, 0, 0)]
        plan = plan_prune(dataset, current, keep, zone, spare=name)
        outcome = DatasetResult(dataset, kept=plan.kept, held=plan.held)
        failures = dict(zfs.destroy_snapshots(dataset, plan.remove)) if plan.remove else {}
        outcome.removed = [n for n in plan.remove if n not in failures]
        outcome.failed = [str(exc) for exc in failures.values()]
        outcome.kept += len(failures)  # still there
        result.datasets.append(outcome)
    return result


@dataclass(frozen=True)
class Freshness:
    """--monitor's verdict for one configured dataset."""

    dataset: str
    status: int  # Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    message: str
    age: timedelta | None
    warn: timedelta
    crit: timedelta


def check_freshness(
    zfs: Zfs,
    target: SnapshotTarget,
    policy: SnapshotPolicy,
    now: datetime,
    warn: timedelta | None,
    crit: timedelta | None,
) -> Freshness:
    """How old the newest nixmox snapshot of ``target`` is, against its thresholds."""
    default_warn, default_crit = default_thresholds(policy.rule())
    warn = warn or default_warn
    crit = crit or default_crit
    try:
        listing: list[Snapshot] = zfs.list_snapshots(target.dataset, recursive=False)
    except ZfsError as exc:
        return Freshness(target.dataset, 3, str(exc), None, warn, crit)
    taken = newest(listing, target.dataset)
    age = None if taken is None else now - taken
    status, message = freshness(age, warn, crit)
    return Freshness(target.dataset, status, message, age, warn, crit)
