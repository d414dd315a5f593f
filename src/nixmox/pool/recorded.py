"""What the journal last knew about each pool and its disks (pure).

``status`` and the metrics textfile read pool health from the journal, never
from zpool or smartctl: a ``pool check`` run records each pool's state, vdev
counters, space, forecast and its disks' SMART readings; a ``pool scrub`` run
records what the scrub found. Per pool, :func:`recorded_pools` takes the
newest ``pool check`` that read it (a ``--pool`` check covers one pool), the
newest space any pool run recorded, and the newest finished scrub, whether
nixmox ran it (the scrub run) or zpool reported it (a check's ``scan``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.core import jsonrows
from nixmox.pool.smart import DiskHealth

#: The journal's commands whose summaries carry pool readings.
COMMANDS = ("pool scrub", "pool trim", "pool check")


@dataclass(frozen=True)
class VdevCounters:
    """One device's error counters as the newest check read them."""

    name: str
    state: str
    read: int
    write: int
    checksum: int


@dataclass(frozen=True)
class LastScrub:
    """The newest scrub that ended: when, and what it found."""

    ended: float  # Unix time
    outcome: str  # finished | canceled
    errors: int
    repaired: int  # bytes


@dataclass(frozen=True)
class Fill:
    """The fill forecast the newest check made."""

    target: int  # percent
    days_left: float | None  # None: not filling, or too little history
    words: str


@dataclass(frozen=True)
class RecordedPool:
    """One pool as the journal last knew it; ``None`` where no run said."""

    pool: str
    checked: float | None = None  # when the newest check that read it ended
    state: str | None = None
    data_errors: int = 0
    vdevs: tuple[VdevCounters, ...] = ()
    size: int | None = None
    allocated: int | None = None
    fragmentation: int | None = None  # percent
    scrub: LastScrub | None = None
    fill: Fill | None = None
    disks: tuple[DiskHealth, ...] = ()

    @property
    def capacity(self) -> float | None:
        """Percent allocated."""
        if self.size is None or self.allocated is None or self.size <= 0:
            return None
        return self.allocated * 100.0 / self.size


@dataclass
class _Builder:
    pool: str
    checked: float | None = None
    state: str | None = None
    data_errors: int = 0
    vdevs: tuple[VdevCounters, ...] = ()
    space_at: float | None = None
    size: int | None = None
    allocated: int | None = None
    fragmentation: int | None = None
    scrub: LastScrub | None = None
    fill: Fill | None = None
    disks: tuple[DiskHealth, ...] = ()

    def done(self) -> RecordedPool:
        return RecordedPool(
            self.pool,
            self.checked,
            self.state,
            self.data_errors,
            self.vdevs,
            self.size,
            self.allocated,
            self.fragmentation,
            self.scrub,
            self.fill,
            self.disks,
        )


def recorded_pools(runs: Iterable[Run]) -> list[RecordedPool]:
    """Each pool the pool runs in ``runs`` (any order, any commands) mention, by name."""
    mine = sorted(
        (r for r in runs if r.command in COMMANDS and r.ended is not None),
        key=lambda r: r.ended or 0.0,
        reverse=True,
    )
    found: dict[str, _Builder] = {}
    for run in mine:
        ended = run.ended or 0.0
        read = (DiskHealth.from_json(r) for r in jsonrows.rows(run.summary, "disks"))
        disks = {d.device: d for d in read}
        fills = {jsonrows.text(f, "pool"): f for f in jsonrows.rows(run.summary, "forecasts")}
        for row in jsonrows.rows(run.summary, "pools"):
            name = jsonrows.text(row, "pool")
            if not name:
                continue
            pool = found.setdefault(name, _Builder(name))
            _space(pool, row, ended)
            _scrub(pool, run.command, row, ended)
            if run.command == "pool check" and pool.checked is None and row.get("state"):
                pool.checked = ended
                _check(pool, row, disks, fills.get(name))
    return [found[name].done() for name in sorted(found)]


def _space(pool: _Builder, row: Mapping[str, Any], ended: float) -> None:
    size = jsonrows.optional_integer(row, "size")
    if pool.space_at is not None or not size:
        return
    pool.space_at, pool.size = ended, size
    pool.allocated = jsonrows.optional_integer(row, "allocated")
    pool.fragmentation = jsonrows.optional_integer(row, "fragmentation")


def _scrub(pool: _Builder, command: str, row: Mapping[str, Any], ended: float) -> None:
    found: LastScrub | None = None
    if command == "pool scrub":
        outcome = jsonrows.text(row, "outcome")
        if outcome in ("finished", "canceled"):
            errors = jsonrows.integer(row, "errors")
            found = LastScrub(ended, outcome, errors, jsonrows.integer(row, "repaired"))
    elif command == "pool check":
        scan = row.get("scan")
        if isinstance(scan, Mapping) and scan.get("function") == "scrub":
            state = jsonrows.text(scan, "state")
            when = scan.get("ended")
            if state in ("finished", "canceled") and isinstance(when, int | float):
                errors = jsonrows.integer(scan, "errors")
                found = LastScrub(float(when), state, errors, jsonrows.integer(scan, "repaired"))
    if found is not None and (pool.scrub is None or found.ended > pool.scrub.ended):
        pool.scrub = found


def _check(
    pool: _Builder,
    row: Mapping[str, Any],
    disks: Mapping[str, DiskHealth],
    fill: Mapping[str, Any] | None,
) -> None:
    pool.state = jsonrows.text(row, "state")
    pool.data_errors = jsonrows.integer(row, "data_errors")
    pool.vdevs = tuple(
        VdevCounters(
            jsonrows.text(v, "name"),
            jsonrows.text(v, "state"),
            jsonrows.integer(v, "read"),
            jsonrows.integer(v, "write"),
            jsonrows.integer(v, "checksum"),
        )
        for v in jsonrows.rows(row, "vdevs")
    )
    pool.disks = tuple(disks[d] for d in jsonrows.texts(row, "disks") if d in disks)
    if fill is not None:
        left = fill.get("days_left")
        pool.fill = Fill(
            jsonrows.integer(fill, "target"),
            float(left) if isinstance(left, int | float) else None,
            jsonrows.text(fill, "words"),
        )
