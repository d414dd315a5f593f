"""Pure decisions for ZFS snapshots: names, which to prune, how fresh is fresh.

nixmox's snapshots are named ``nixmox_YYYY-MM-DDTHH:MM:SSZ``: the name alone
tells that nixmox took it and when (UTC), so listing needs no per-snapshot
``creation`` lookup, and every other snapshot (manual ones, sanoid's
``autosnap_*``, syncoid's, Proxmox's ``__replicate_*`` and guest snapshots) is
never a candidate for pruning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from nixmox.adapters.zfs import Snapshot
from nixmox.rules.retention import Item, Keep, Mark, Pruned, prune

PREFIX = "nixmox_"
_NAME = re.compile(r"nixmox_(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")


def snapshot_name(now: datetime) -> str:
    """The name of a snapshot taken at ``now`` (converted to UTC, whole seconds)."""
    return PREFIX + now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def taken_at(name: str) -> datetime | None:
    """When nixmox took the snapshot called ``name``; ``None`` if nixmox did not take it."""
    found = _NAME.fullmatch(name)
    if found is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in found.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:  # 2026-02-30 and the like: not one of ours
        return None


def by_dataset(snapshots: Iterable[Snapshot]) -> dict[str, list[Snapshot]]:
    """Group a tree's listing per dataset, keeping the listing's order."""
    groups: dict[str, list[Snapshot]] = {}
    for snap in snapshots:
        groups.setdefault(snap.dataset, []).append(snap)
    return groups


@dataclass(frozen=True)
class PrunePlan:
    """What retention decided for one dataset's nixmox snapshots."""

    dataset: str
    decisions: Pruned

    @property
    def remove(self) -> list[str]:
        return [
            it.ref
            for it, m in zip(self.decisions.items, self.decisions.marks, strict=True)
            if m is Mark.REMOVE
        ]

    @property
    def kept(self) -> int:
        return sum(m is Mark.KEEP for m in self.decisions.marks)

    @property
    def held(self) -> int:
        return sum(m is Mark.PROTECTED for m in self.decisions.marks)


def plan_prune(
    dataset: str,
    snapshots: Iterable[Snapshot],
    keep: Keep,
    zone: tzinfo,
    *,
    spare: str | None = None,
) -> PrunePlan:
    """Apply ``keep`` to ``dataset``'s own snapshots; a held one (userrefs > 0) is protected.

    ``spare`` (the snapshot this run just took) is never removed: after the clock
    moved back a newer snapshot can already fill its period, and the run must
    still keep a copy of the data as of now.
    """
    items = []
    for snap in snapshots:
        when = taken_at(snap.name)
        if when is not None and snap.dataset == dataset:
            items.append(Item(when, snap.userrefs > 0, snap.name))
    decisions = prune(items, keep, zone)
    for i, item in enumerate(decisions.items):
        if item.ref == spare and decisions.marks[i] is Mark.REMOVE:
            decisions.marks[i] = Mark.KEEP
            decisions.reasons[i] = "this run's own new snapshot"
    return PrunePlan(dataset, decisions)


def newest(snapshots: Iterable[Snapshot], dataset: str) -> datetime | None:
    """The time of ``dataset``'s newest nixmox snapshot, if any."""
    times = [t for s in snapshots if s.dataset == dataset and (t := taken_at(s.name)) is not None]
    return max(times, default=None)


# -- freshness (snapshot --monitor) ---------------------------------------------

_PERIOD = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
    "monthly": timedelta(days=31),
    "yearly": timedelta(days=366),
}


def default_thresholds(keep: Keep) -> tuple[timedelta, timedelta]:
    """Warn after two of the policy's finest periods without a snapshot, critical after four.

    A policy with only keep-last (or keep-all) has no period: a day is assumed.
    """
    finest = next(
        (_PERIOD[name] for name, n in keep.counts() if n and name in _PERIOD), timedelta(days=1)
    )
    return 2 * finest, 4 * finest


def freshness(age: timedelta | None, warn: timedelta, crit: timedelta) -> tuple[int, str]:
    """Nagios status (0 OK, 1 WARNING, 2 CRITICAL) and a phrase for the newest snapshot's age."""
    if age is None:
        return 2, "no nixmox snapshot"
    text = f"newest snapshot {human(age)} old"
    if age >= crit:
        return 2, f"{text} (critical after {human(crit)})"
    if age >= warn:
        return 1, f"{text} (warning after {human(warn)})"
    return 0, text


def human(span: timedelta) -> str:
    """A short age: ``45 s``, ``12 min``, ``5 h``, ``3 d``."""
    seconds = max(int(span.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit == "min" and seconds >= size):
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
