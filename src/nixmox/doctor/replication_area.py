"""Doctor area ``replication``: each replica's lag against the schedule.

The lag of a replica is the age of the newest nixmox snapshot it holds: what
a restore from the target would lose. Right after a run it is at most the
age of the source's newest snapshot, so it may grow to one period of
``schedules.replicate`` plus one of ``schedules.snapshot`` before anything
is wrong; beyond that the check WARNs. The target is read as it is (one
recursive snapshot listing per declared entry, over ssh for a remote
target), the source only for which datasets a tree holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import DatasetNotFound, Snapshot, Zfs, ZfsError
from nixmox.core.verdict import Check, Status
from nixmox.inventory.model import Inventory, ReplicationSource
from nixmox.replicate.job import replicas, tree
from nixmox.replicate.runs import target_zfs
from nixmox.rules.oncalendar import CalendarError, longest_gap, parse_calendar
from nixmox.snapshot.policy import human, taken_at

#: Without schedules.replicate, a daily run is assumed.
DEFAULT_PERIOD = timedelta(days=1)


def _gap(schedule: str | None) -> timedelta | None:
    if schedule is None:
        return None
    try:
        return longest_gap(parse_calendar(schedule))
    except CalendarError:
        return None


def allowed_lag(replicate: str | None, snapshot: str | None) -> tuple[timedelta, str]:
    """How old a replica's newest snapshot may be, and how the doctor got there."""
    period = _gap(replicate)
    why = (
        f"schedules.replicate {replicate!r}"
        if period is not None
        else "no period in schedules.replicate, daily assumed"
        if replicate is not None
        else "no schedules.replicate, daily assumed"
    )
    period = period or DEFAULT_PERIOD
    taken = _gap(snapshot)
    if taken is not None:
        why += f" + schedules.snapshot {snapshot!r}"
    return period + (taken or timedelta(0)), why


def lag_check(
    dataset: str,
    target: str,
    replica: str,
    newest: datetime | None,
    now: datetime,
    allowed: timedelta,
    why: str,
) -> Check:
    """One replica's verdict: its newest nixmox snapshot's age against ``allowed``."""
    subject = f"{dataset} -> {target}"
    fix = f"`nixmox replicate --dataset {dataset}`; check `nixmox history --job replicate`"
    if newest is None:
        return Check(
            "replication-lag",
            Status.WARN,
            subject,
            f"{replica} holds no nixmox snapshot: not replicated yet",
            fix,
        )
    lag = max(now - newest, timedelta(0))
    text = f"{replica} is {human(lag)} behind ({why})"
    if lag > allowed:
        return Check(
            "replication-lag", Status.WARN, subject, f"{text}; WARN after {human(allowed)}", fix
        )
    return Check("replication-lag", Status.PASS, subject, text)


def newest_by_dataset(listing: Iterable[Snapshot]) -> Mapping[str, datetime]:
    """Each dataset's newest nixmox snapshot time in a (recursive) listing."""
    out: dict[str, datetime] = {}
    for snap in listing:
        when = taken_at(snap.name)
        if when is not None and (snap.dataset not in out or when > out[snap.dataset]):
            out[snap.dataset] = when
    return out


def _entry_checks(
    inv: Inventory,
    entry: ReplicationSource,
    source: Zfs,
    runner: Runner,
    now: datetime,
    allowed: timedelta,
    why: str,
) -> list[Check]:
    assert inv.replication is not None
    target = inv.replication.targets[entry.target]
    subject = f"{entry.dataset} -> {entry.target}"
    where = target.host or "this host"
    try:
        pairs = replicas(
            entry.dataset, target.dataset, tree(source, entry.dataset, entry.recursive)
        )
    except ZfsError as exc:
        return [Check("replication-lag", Status.UNKNOWN, subject, str(exc), "check the source")]
    zfs, _ = target_zfs(runner, target)
    root = pairs[0][1] if pairs else None
    try:
        listing = zfs.list_snapshots(root, recursive=entry.recursive) if root else []
    except DatasetNotFound:
        listing = []  # no replica yet: each dataset below says so
    except ZfsError as exc:
        return [
            Check(
                "replication-lag",
                Status.UNKNOWN,
                subject,
                f"cannot read target {entry.target} ({where}): {exc}",
                "check that the target is reachable and its pool imported",
            )
        ]
    newest = newest_by_dataset(listing)
    return [
        lag_check(ds, entry.target, replica, newest.get(replica), now, allowed, why)
        for ds, replica in pairs
    ]


def check_replication(inv: Inventory, source: Zfs, now: datetime) -> list[Check]:
    """Every declared replica's lag against the schedules."""
    rep = inv.replication
    if rep is None or not rep.datasets:
        return [
            Check(
                "replication-lag",
                Status.INFO,
                "replication",
                "no [[replication.datasets]] declared",
            )
        ]
    schedules = inv.schedules
    allowed, why = allowed_lag(
        schedules.replicate if schedules else None, schedules.snapshot if schedules else None
    )
    out: list[Check] = []
    for entry in rep.datasets:
        out += _entry_checks(inv, entry, source, source.runner, now, allowed, why)
    return out
