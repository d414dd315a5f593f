"""``pool scrub``, ``pool trim`` and ``pool check`` as the CLI starts them.

The ``prepare_*`` functions check the inventory, pick the pools and return
the work for :func:`nixmox.runtime.run.run_job`; the summaries are what the
journal keeps. Every pool run records each pool's space, so the journal is
the capacity history the fill forecast reads (:func:`capacity_history`);
``pool check`` also records each disk's SMART readings, the "previous
reading" the next run (and doctor) compares with. ``findings`` lists each
WARN/FAIL; a notification goes out when they change, not on every run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from nixmox.adapters.journal import Journal, Run, state_dir
from nixmox.adapters.runner import Runner
from nixmox.adapters.smart import Smartctl, SmartError
from nixmox.adapters.zfs import PoolSpace, ZfsError, Zpool, zpool_command
from nixmox.core import jsonrows
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.results import AllPartsOk
from nixmox.core.verdict import Check, Status
from nixmox.core.zones import zone as inventory_zone
from nixmox.inventory.model import Inventory, PoolHealth
from nixmox.pool import checks as verdicts
from nixmox.pool.forecast import CapacityPoint, Forecast, forecast
from nixmox.pool.job import (
    FollowSettings,
    OperationResult,
    PoolReader,
    scrub_pool,
    space_row,
    trim_pool,
    vdev_rows,
)
from nixmox.pool.recorded import COMMANDS
from nixmox.pool.smart import DiskHealth, parse_smart, pool_disks
from nixmox.pool.status import PoolState
from nixmox.rules.timespan import parse_timedelta

log = logging.getLogger(__name__)

#: How many pool runs the forecast and the SMART comparison read back.
HISTORY = 400


def inventory_zpool(inv: Inventory, runner: Runner) -> Zpool:
    """The ``zpool`` the inventory names."""
    return Zpool(runner, zpool_command(inv.zfs.command, inv.zfs.zpool_command))


def declared_pools(inv: Inventory) -> list[str]:
    """``[pool_health] pools``, else the inventory's ``[[pools]]`` (maybe none)."""
    return list(inv.pool_health.pools) or [p.name for p in inv.pools]


def pool_names(inv: Inventory, zpool: Zpool, only: str | None = None) -> list[str]:
    """The pools looked after: :func:`declared_pools`, else every imported pool;
    ``only`` narrows to one (which must be imported)."""
    declared = declared_pools(inv)
    if only is None and declared:
        return declared
    imported = [p.name for p in zpool.list_pools()]
    if only is None:
        return imported
    if only not in imported:
        raise ConfigError(
            f"--pool {only}: no imported pool of that name "
            f"(zpool list shows: {', '.join(imported) or 'none'})"
        )
    return [only]


def follow_settings(inv: Inventory) -> FollowSettings:
    health = inv.pool_health
    return FollowSettings(
        parse_timedelta(health.poll).total_seconds(),
        health.pause_during,
        inventory_zone(inv.timezone),
    )


# -- scrub and trim ---------------------------------------------------------------------


@dataclass(frozen=True)
class OperationSummary(AllPartsOk):
    """A ``pool scrub`` or ``pool trim`` run: each pool's result."""

    operation: str
    pools: tuple[OperationResult, ...]

    def parts(self) -> Iterable[OperationResult]:
        return self.pools

    @property
    def findings(self) -> list[str]:
        found = []
        for p in self.pools:
            if p.operation == "scrub" and p.errors:
                found.append(f"pool-scrub {p.pool} FAIL")
            elif p.operation == "scrub" and p.repaired:
                found.append(f"pool-scrub {p.pool} WARN")
        return sorted(found)

    @property
    def judged(self) -> list[str]:
        """What a scrub has the last word on: each scrubbed pool's ``pool-scrub``
        (a clean scrub clears what an earlier run found there)."""
        return sorted(
            f"pool-scrub {p.pool}"
            for p in self.pools
            if p.operation == "scrub" and p.outcome in ("finished", "canceled")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "pools": [p.to_json() for p in self.pools],
            "findings": self.findings,
            "judged": self.judged,
        }


def prepare_operation(
    inv: Inventory,
    operation: str,
    only: str | None,
    *,
    dry_run: bool,
    progress: Progress = SILENT,
    clock: Clock = SYSTEM_CLOCK,
) -> Callable[[], OperationSummary]:
    """Scrub or trim the pools (or ``only``), ready to run; each pool is one
    activity of ``progress``."""
    zpool = inventory_zpool(inv, Runner(dry_run=dry_run))
    pools = pool_names(inv, zpool, only)
    settings = follow_settings(inv)
    reader = PoolReader(zpool, settings.zone)
    act = scrub_pool if operation == "scrub" else trim_pool

    def work() -> OperationSummary:
        results: list[OperationResult] = []
        for pool in pools:
            if results and _stopping():
                break
            results.append(
                act(zpool, reader, pool, settings, dry_run=dry_run, progress=progress, clock=clock)
            )
        return OperationSummary(operation, tuple(results))

    return work


def _stopping() -> bool:
    from nixmox.core import interrupt

    return interrupt.stopping()


# -- health: pools, disks, forecast ------------------------------------------------------


@dataclass(frozen=True)
class PoolReading:
    """One pool as ``pool check`` (and doctor) read it."""

    pool: str
    state: PoolState | None
    space: PoolSpace | None
    disks: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"pool": self.pool, "error": self.error, "disks": list(self.disks)}
        if self.state is not None:
            scan = self.state.scan
            row.update(
                state=self.state.state,
                source=self.state.source,
                data_errors=self.state.data_errors,
                scan={
                    "function": scan.function,
                    "state": scan.state,
                    "percent": scan.percent,
                    "repaired": scan.repaired,
                    "errors": scan.errors,
                    "ended": None if scan.ended is None else scan.ended.timestamp(),
                },
                vdevs=vdev_rows(self.state),
            )
        if self.space is not None:
            row.update(space_row(self.space))
        return row


@dataclass(frozen=True)
class HealthReport:
    """Everything ``pool check`` found: readings, disks, forecasts and the checks."""

    pools: tuple[PoolReading, ...]
    disks: tuple[DiskHealth, ...]
    forecasts: tuple[Forecast, ...]
    checks: tuple[Check, ...]

    @property
    def result(self) -> str:
        # Problems found are findings (doctor, notifications), not a failed run.
        return "failed" if any(p.error for p in self.pools) else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "pools": [p.to_json() for p in self.pools],
            "disks": [d.to_json() for d in self.disks],
            "forecasts": [forecast_row(f) for f in self.forecasts],
            "checks": [c.as_json() for c in self.checks],
            "findings": verdicts.findings(self.checks),
        }


def forecast_row(fc: Forecast) -> dict[str, Any]:
    return {
        "pool": fc.pool,
        "target": fc.target,
        "percent": round(fc.percent, 2),
        "span_days": round(fc.span_days, 2),
        "rate_per_day": None if fc.rate_per_day is None else round(fc.rate_per_day, 4),
        "days_left": None if fc.days_left is None else round(fc.days_left, 1),
        "words": fc.words,
    }


def capacity_history(runs: Iterable[Run]) -> dict[str, list[CapacityPoint]]:
    """Each pool's recorded space from the pool runs in the journal."""
    out: dict[str, list[CapacityPoint]] = {}
    for run in runs:
        if run.command not in COMMANDS or run.ended is None:
            continue
        at = datetime.fromtimestamp(run.ended, UTC)
        for row in jsonrows.rows(run.summary, "pools"):
            size = jsonrows.optional_integer(row, "size")
            allocated = jsonrows.optional_integer(row, "allocated")
            if size and allocated is not None:
                out.setdefault(jsonrows.text(row, "pool"), []).append(
                    CapacityPoint(at, allocated, size)
                )
    return out


def previous_disks(runs: Iterable[Run]) -> dict[str, DiskHealth]:
    """Each disk's newest journaled SMART reading (``runs`` newest first)."""
    found: dict[str, DiskHealth] = {}
    for run in runs:
        if run.command != "pool check" or run.ended is None:
            continue
        for row in jsonrows.rows(run.summary, "disks"):
            disk = DiskHealth.from_json(row)
            if disk.error is None:
                found.setdefault(disk.device, disk)
    return found


def journal_history(limit: int = HISTORY) -> list[Run]:
    """The pool runs in the journal, newest first; none when it cannot be read."""
    try:
        journal = Journal(state_dir())
    except (NixmoxError, OSError) as exc:
        log.debug("no journal to read the pool history from: %s", exc)
        return []
    try:
        return [r for r in journal.runs("pool", limit=limit) if r.command in COMMANDS]
    finally:
        journal.close()


def read_pool(reader: PoolReader, pool: str) -> PoolReading:
    try:
        state = reader.state(pool)
    except ZfsError as exc:
        return PoolReading(pool, None, None, error=str(exc))
    space = None
    with contextlib.suppress(ZfsError):
        space = reader.zpool.space(pool)
    disks = pool_disks((v.name, v.path) for v in state.leaves)
    return PoolReading(pool, state, space, tuple(disks))


def read_disks(smartctl: Smartctl, devices: Iterable[str]) -> list[DiskHealth]:
    out = []
    for device in devices:
        try:
            out.append(parse_smart(smartctl.read(device), device))
        except (SmartError, NixmoxError) as exc:
            out.append(DiskHealth(device, error=str(exc)))
    return out


def health_checks(
    readings: Sequence[PoolReading],
    disks: Sequence[DiskHealth],
    history: Sequence[Run],
    settings: PoolHealth,
    declared: Mapping[str, int],
    now: datetime,
) -> tuple[list[Check], list[Forecast]]:
    """Every pool and disk verdict (pure over the readings and the journal)."""
    out: list[Check] = []
    forecasts: list[Forecast] = []
    capacity = capacity_history(history)
    max_age = parse_timedelta(settings.scrub_max_age)
    horizon = parse_timedelta(settings.forecast_horizon)
    for reading in readings:
        if reading.state is None:
            out.append(
                Check(
                    "pool-vdev",
                    Status.UNKNOWN,
                    reading.pool,
                    reading.error or "not read",
                    "install zfsutils-linux, or set [zfs] zpool_command in the inventory",
                )
            )
            continue
        out += verdicts.vdev_checks(reading.state)
        out.append(verdicts.scrub_check(reading.state, now, max_age))
        if reading.space is not None:
            # [[pools]] have their capacity checked by the storage area already.
            max_used = None if reading.pool in declared else 80
            out += verdicts.space_checks(reading.space, settings.fragmentation_warn, max_used)
            points = [
                *capacity.get(reading.pool, []),
                CapacityPoint(now, reading.space.allocated, reading.space.size),
            ]
            fc = forecast(
                reading.pool,
                points,
                now,
                days=settings.forecast_days,
                target=settings.forecast_percent,
            )
            if fc is not None:
                forecasts.append(fc)
                out.append(verdicts.forecast_check(fc, horizon))
    before = previous_disks(history)
    for disk in disks:
        out += verdicts.disk_checks(disk, before.get(disk.device), settings.temperature_warn)
    return out, forecasts


def read_health(
    inv: Inventory,
    runner: Runner,
    history: Sequence[Run],
    now: datetime,
    *,
    only: str | None = None,
    pools: Sequence[str] | None = None,
) -> HealthReport:
    """Read every pool (``pools``, else :func:`pool_names`) and its disks' SMART; judge them."""
    zpool = inventory_zpool(inv, runner)
    zone: tzinfo = inventory_zone(inv.timezone)
    reader = PoolReader(zpool, zone)
    names = list(pools) if pools is not None else pool_names(inv, zpool, only)
    readings = [read_pool(reader, pool) for pool in names]
    disks: list[DiskHealth] = []
    if inv.pool_health.smart:
        smartctl = Smartctl(runner, inv.pool_health.smartctl_command)
        devices = dict.fromkeys(d for r in readings for d in r.disks)
        disks = read_disks(smartctl, devices)
    declared = {p.name: p.max_used_percent for p in inv.pools}
    found, forecasts = health_checks(readings, disks, history, inv.pool_health, declared, now)
    return HealthReport(tuple(readings), tuple(disks), tuple(forecasts), tuple(found))


def prepare_check(
    inv: Inventory, only: str | None = None, clock: Clock = SYSTEM_CLOCK
) -> Callable[[], HealthReport]:
    """``pool check``: read and judge, ready to run (it changes nothing)."""
    history = journal_history()

    def work() -> HealthReport:
        return read_health(inv, Runner(), history, clock.now(), only=only)

    return work
