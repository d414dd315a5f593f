"""Pool runs' summaries made by the product's own code from the captured data files.

A degraded mirror ``tank`` (tests/data/zpool/degraded.txt) whose disks are
read from the smartctl outputs in tests/data/smart; the observability tests
journal these as `pool check` and `pool scrub` runs.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.adapters.zfs import PoolSpace
from nixmox.inventory.model import PoolHealth
from nixmox.pool.job import OperationResult
from nixmox.pool.runs import HealthReport, OperationSummary, PoolReading, health_checks
from nixmox.pool.smart import parse_smart, pool_disks
from nixmox.pool.status import parse_text

DATA = Path(__file__).parent / "data"
TIB = 2**40
GROWING = "ata-ST8000VN004-3CP101_WWZ2EFGH"


def smart(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "smart" / name).read_text())
    return doc


def tank_check(
    now: datetime,
    *,
    growing: str = "sata-growing-before.json",
    history: tuple[Run, ...] = (),
    allocated: int = 6 * TIB,
) -> dict[str, Any]:
    """A `pool check` summary of the degraded ``tank`` (tests/data/zpool/degraded.txt),
    its disks read from the smartctl data files, judged by the product's checks."""
    state = parse_text((DATA / "zpool" / "degraded.txt").read_text(), UTC)["tank"]
    space = PoolSpace(
        "tank", 8 * TIB, allocated, 8 * TIB - allocated, allocated * 100 // (8 * TIB), 12
    )
    devices = pool_disks(((v.name, v.path) for v in state.leaves), exists=lambda _: True)
    reading = PoolReading("tank", state, space, tuple(devices))

    def doc(device: str) -> dict[str, Any]:
        if GROWING in device:
            return smart(growing)
        return smart("nvme-good.json" if "nvme-" in device else "sata-good.json")

    disks = [parse_smart(doc(d), d) for d in devices]
    found, forecasts = health_checks([reading], disks, history, PoolHealth(), {}, now)
    return HealthReport((reading,), tuple(disks), tuple(forecasts), tuple(found)).to_json()


def scrub_summary(pool: str, *, errors: int = 0, repaired: int = 0) -> dict[str, Any]:
    """A `pool scrub` run's summary for one finished scrub."""
    result = OperationResult(pool, "scrub", "finished", "", repaired=repaired, errors=errors)
    return OperationSummary("scrub", (result,)).to_json()


def capacity_run(days_ago: float, allocated: int) -> Run:
    """An earlier `pool check` that recorded tank's space (the forecast's history)."""
    ended = time.time() - days_ago * 86400
    summary = {"pools": [{"pool": "tank", "size": 8 * TIB, "allocated": allocated}]}
    return Run(1, "pool check", ended - 5, ended, "ok", summary, 1)
