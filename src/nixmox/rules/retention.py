"""Proxmox's keep-* retention rule, exactly (see docs/retention.md).

Pure: items in, a mark and a reason for every item out; no I/O, no clock.
The same rule prunes vzdump archives (one guest's, on one storage) and
nixmox's own ZFS snapshots (one dataset's), and drives ``nixmox prune-sim``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from itertools import islice, repeat
from operator import add, attrgetter, gt, methodcaller, mul, sub
from typing import NamedTuple, cast, overload


class Mark(StrEnum):
    """What happens to an item."""

    KEEP = "keep"
    REMOVE = "remove"
    PROTECTED = "protected"


class Item(NamedTuple):
    """One backup or snapshot: when it was taken, and whether it is protected.

    ``time`` must be timezone-aware. ``ref`` is the caller's handle (a volume
    id, a snapshot name, the input line); it also breaks ties between items
    taken at the same instant, so results never depend on input order.
    """

    time: datetime
    protected: bool = False
    ref: str = ""


@dataclass(frozen=True)
class Keep:
    """The keep-* options; ``None`` and 0 both mean "not set"."""

    last: int | None = None
    hourly: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    yearly: int | None = None
    all: bool = False

    def __post_init__(self) -> None:
        for name, value in self.counts():
            if value is not None and value < 0:
                raise ValueError(f"keep-{name} must be 0 or more, not {value}")
        if self.all and any(value for _, value in self.counts()):
            raise ValueError("keep-all cannot be combined with another keep option")

    def counts(self) -> list[tuple[str, int | None]]:
        """The options in the order the rule applies them."""
        return [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]

    @property
    def keeps_everything(self) -> bool:
        """keep-all, or no option with a positive count (Proxmox then keeps all)."""
        return self.all or not any(value for _, value in self.counts())


class Decision(NamedTuple):
    """The mark of one item and why."""

    item: Item
    mark: Mark
    reason: str


# Period ids in local time as plain ints, computed for a run of items at once
# with C-level maps: this is the hot path (100,000 items in a fraction of a
# second), and ints cost neither Python calls nor garbage-collector work.
_ORDINAL = methodcaller("toordinal")


def _period_ids(name: str, local: list[datetime]) -> list[int]:
    if name == "hourly":
        # Naive local fields: the repeated hour of a fall-back night is one period.
        days = map(mul, map(_ORDINAL, local), repeat(24))
        return list(map(add, days, map(attrgetter("hour"), local)))
    if name == "daily":
        return list(map(_ORDINAL, local))
    if name == "weekly":
        # An ISO week is identified by its Monday (2019-12-31 is in the week of
        # 2019-12-30, 2020-W01), one-to-one with %G/%V.
        return list(map(sub, map(_ORDINAL, local), map(methodcaller("weekday"), local)))
    if name == "monthly":
        years = map(mul, map(attrgetter("year"), local), repeat(12))
        return list(map(add, years, map(attrgetter("month"), local)))
    if name == "yearly":
        return list(map(attrgetter("year"), local))
    raise ValueError(name)


_UNIT = {
    "last": "item",
    "hourly": "hour",
    "daily": "day",
    "weekly": "ISO week",
    "monthly": "month",
    "yearly": "year",
}


def _newest_first(items: Sequence[Item]) -> list[Item]:
    """Items newest first; ties broken by protected, then ref (input order never matters)."""
    times = [it.time for it in items]
    if all(map(gt, times, islice(times, 1, None))):
        return list(items)  # the usual case: already newest first, no ties
    stamps = [t.timestamp() for t in times]
    # Stable sorts, least significant key first.
    order = sorted(range(len(items)), key=lambda i: items[i].ref)
    order.sort(key=lambda i: items[i].protected)
    order.sort(key=stamps.__getitem__, reverse=True)
    return [items[i] for i in order]


def prune(items: Sequence[Item], keep: Keep, zone: tzinfo) -> Pruned:
    """Decide every item, newest first, with Proxmox's rule in ``zone``.

    Protected items are never removed and never use a slot. Each option in
    the order last, hourly, daily, weekly, monthly, yearly keeps the newest
    item of up to N periods not already covered by items kept before it.
    """
    ordered = _newest_first(items)
    count = len(ordered)
    if keep.keeps_everything:
        why = "keep-all" if keep.all else "no keep option set: everything is kept"
        return Pruned(
            ordered,
            [Mark.PROTECTED if it.protected else Mark.KEEP for it in ordered],
            ["protected" if it.protected else why for it in ordered],
        )

    marks: list[Mark | None] = [Mark.PROTECTED if it.protected else None for it in ordered]
    reasons: list[str] = ["protected" if it.protected else "" for it in ordered]
    times = [it.time for it in ordered]
    local: list[datetime] = []
    kept: list[int] = []
    # Why an item no option kept was passed over: the note of the latest
    # option wins. Walks that stopped: (option order, first index, text).
    stops: list[tuple[int, int, str]] = []
    covered_note: dict[int, tuple[int, str]] = {}

    def local_until(end: int) -> list[datetime]:
        if len(local) < end:
            local.extend(map(methodcaller("astimezone", zone), times[len(local) : end]))
        return local

    for order, (name, limit) in enumerate(keep.counts()):
        if not limit:
            continue
        option = f"keep-{name}"
        same_period = f"{option}: a newer item already kept for this {_UNIT[name]}"
        ids: list[int] = []
        if name == "last":
            kept_ids = list(kept)
        else:
            everything = local_until(max(kept, default=-1) + 1)
            kept_ids = _period_ids(name, [everything[i] for i in kept])
        covered = dict(zip(kept_ids, kept, strict=True))
        covered_by = {pid: f"covered by {_owner(reasons[i])}" for pid, i in covered.items()}
        taken: set[int] = set()
        filled = 0
        for i in range(count):
            if marks[i] is not None:
                continue
            if i >= filled:
                # Periods are computed in growing runs: a walk for keep-hourly=24
                # usually stops after a few dozen items and should not pay for all.
                filled = min(count, max(2 * filled, i + 64))
                if name == "last":
                    ids.extend(range(len(ids), filled))
                else:
                    ids.extend(_period_ids(name, local_until(filled)[len(ids) : filled]))
            pid = ids[i]
            if pid in covered:
                covered_note[i] = (order, covered_by[pid])
            elif pid in taken:
                marks[i] = Mark.REMOVE
                reasons[i] = same_period
            elif len(taken) >= limit:
                stops.append((order, i, f"beyond {option} ({limit} already kept)"))
                break
            else:
                taken.add(pid)
                marks[i] = Mark.KEEP
                reasons[i] = f"{option} {len(taken)}/{limit}"
                kept.append(i)

    unselected = (-1, "not selected by any keep option")
    for i in range(count):
        if marks[i] is None:
            note = covered_note.get(i, unselected)
            for stop in stops:
                if stop[1] <= i and stop[0] > note[0]:
                    note = (stop[0], stop[2])
            marks[i] = Mark.REMOVE
            reasons[i] = note[1]
    return Pruned(ordered, cast(list[Mark], marks), reasons)  # every mark is set by now


class Pruned(Sequence[Decision]):
    """Every item's decision, newest first.

    Held as three parallel lists (items, marks, reasons), not as one object
    per item: a caller that writes 100,000 decisions out never pays for
    100,000 tuples. Indexing and iterating give :class:`Decision` values.
    """

    __slots__ = ("items", "marks", "reasons")

    def __init__(self, items: list[Item], marks: list[Mark], reasons: list[str]) -> None:
        self.items = items
        self.marks = marks
        self.reasons = reasons

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> Decision: ...

    @overload
    def __getitem__(self, index: slice) -> list[Decision]: ...

    def __getitem__(self, index: int | slice) -> Decision | list[Decision]:
        if isinstance(index, slice):
            return [
                Decision(*row)
                for row in zip(
                    self.items[index], self.marks[index], self.reasons[index], strict=True
                )
            ]
        return Decision(self.items[index], self.marks[index], self.reasons[index])

    def __iter__(self) -> Iterator[Decision]:
        return map(Decision, self.items, self.marks, self.reasons)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Pruned):
            return (self.items, self.marks, self.reasons) == (
                other.items,
                other.marks,
                other.reasons,
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Pruned({list(self)!r})"


def _owner(reason: str) -> str:
    """``keep-daily 2/7`` -> ``keep-daily``."""
    return reason.split(" ", 1)[0]
