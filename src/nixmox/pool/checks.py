"""Doctor's verdicts on pools and disks, each with its fix (pure).

Over what :mod:`nixmox.pool.status`, :mod:`nixmox.pool.smart` and
:mod:`nixmox.pool.forecast` made of zpool's and smartctl's output: vdev state
and error counters, data errors, the last scrub's age and result,
fragmentation, the fill forecast, and each disk's SMART health and the
growth of its counters since the previous reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from nixmox.adapters.zfs import PoolSpace
from nixmox.core.verdict import Check, Status
from nixmox.pool.forecast import Forecast
from nixmox.pool.smart import DiskHealth, growth, whole_disk
from nixmox.pool.status import BROKEN, PoolState, Vdev

#: ZFS slows down and may fail writes above this.
FULL_PERCENT = 95
#: NVMe endurance used (percent) from which a drive is worth replacing soon.
WORN_PERCENT = 90


def _age(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{delta.total_seconds() / 3600:.0f} hours"


def by_id_words(vdev: Vdev) -> str:
    """Which disk a vdev is, by its by-id name where zpool knows one."""
    for name in (vdev.name, vdev.path):
        if name and whole_disk(name):
            return f"/dev/disk/by-id/{whole_disk(name)}"
    return vdev.path or vdev.name


def vdev_checks(state: PoolState) -> list[Check]:
    """Broken devices (with the ``zpool replace`` line), error counters, data errors."""
    out: list[Check] = []
    pool = state.name
    for vdev in state.leaves:
        subject = f"{pool}/{vdev.name}"
        if vdev.state in BROKEN:
            disk = by_id_words(vdev)
            out.append(
                Check(
                    "pool-vdev",
                    Status.FAIL,
                    subject,
                    f"{vdev.state} (disk {disk}); the pool is {state.state}",
                    f"put in a new disk and `zpool replace {pool} {vdev.name} "
                    f"/dev/disk/by-id/NEW-DISK` (its by-id name), then follow the resilver "
                    f"with `zpool status {pool}`",
                )
            )
        elif vdev.errors:
            out.append(
                Check(
                    "pool-vdev",
                    Status.WARN,
                    subject,
                    f"{vdev.read} read, {vdev.write} write, {vdev.checksum} checksum errors "
                    f"(disk {by_id_words(vdev)})",
                    f"check its SMART (`smartctl -a {by_id_words(vdev)}`) and cabling; "
                    f"`zpool clear {pool} {vdev.name}` once fixed; replace the disk if they return",
                )
            )
    if not out:
        out.append(
            Check(
                "pool-vdev",
                Status.PASS,
                pool,
                f"{state.state}, {len(state.leaves)} devices without errors",
            )
        )
    if state.data_errors:
        out.append(
            Check(
                "pool-data-errors",
                Status.FAIL,
                pool,
                f"{state.data_errors} permanent data errors",
                f"`zpool status -v {pool}` lists the damaged files: restore them from a "
                f"snapshot or backup, then `nixmox pool scrub --pool {pool}`",
            )
        )
    return out


def scrub_check(state: PoolState, now: datetime, max_age: timedelta) -> Check:
    """The last scrub: how long ago, and what it found."""
    pool, scan = state.name, state.scan
    run_it = f"`nixmox pool scrub --pool {pool}`, and give it a timer ([schedules] pool_scrub)"
    if scan.function == "resilver" and scan.active:
        return Check(
            "pool-scrub",
            Status.INFO,
            pool,
            f"resilvering, {scan.percent or 0:.0f}% done"
            + (f", {scan.to_go} to go" if scan.to_go else ""),
        )
    if scan.function is None:
        return Check("pool-scrub", Status.WARN, pool, "never scrubbed", run_it)
    if scan.state == "running":
        return Check(
            "pool-scrub", Status.INFO, pool, f"scrub running, {scan.percent or 0:.0f}% done"
        )
    if scan.state == "paused":
        return Check(
            "pool-scrub",
            Status.INFO,
            pool,
            f"scrub paused at {scan.percent or 0:.0f}%",
            f"`zpool scrub {pool}` resumes it",
        )
    if scan.function == "scrub" and scan.errors:
        return Check(
            "pool-scrub",
            Status.FAIL,
            pool,
            f"the last scrub found {scan.errors} errors it could not repair",
            f"`zpool status -v {pool}` lists the damaged files: restore them from a backup",
        )
    if scan.state == "canceled":
        return Check("pool-scrub", Status.WARN, pool, "the last scrub was canceled", run_it)
    if scan.function != "scrub" or scan.ended is None:
        return Check("pool-scrub", Status.WARN, pool, "no finished scrub on record", run_it)
    age = now - scan.ended
    repaired = f", repaired {scan.repaired} bytes" if scan.repaired else ""
    said = f"last scrub {_age(age)} ago, 0 errors{repaired}"
    if age > max_age:
        return Check("pool-scrub", Status.WARN, pool, f"{said}; older than {_age(max_age)}", run_it)
    if scan.repaired:
        return Check(
            "pool-scrub",
            Status.WARN,
            pool,
            said,
            f"a disk returned bad data: see the per-device counters (`zpool status {pool}`) "
            "and the disks' SMART",
        )
    return Check("pool-scrub", Status.PASS, pool, said)


def space_checks(space: PoolSpace, fragmentation_warn: int, max_used: int | None) -> list[Check]:
    """Fragmentation (where zpool reports it), and capacity for pools the
    storage area does not check already (``max_used`` given)."""
    out = []
    pool = space.name
    if space.fragmentation is not None:
        frag = f"{space.fragmentation}% fragmented free space"
        if space.fragmentation > fragmentation_warn:
            out.append(
                Check(
                    "pool-fragmentation",
                    Status.WARN,
                    pool,
                    f"{frag}, over {fragmentation_warn}%",
                    "writes slow down as it grows: free space (prune snapshots), or "
                    "rewrite the data (zfs send | zfs recv to a new dataset)",
                )
            )
        else:
            out.append(Check("pool-fragmentation", Status.PASS, pool, frag))
    if max_used is not None:
        used = f"{space.capacity}% used"
        if space.capacity > max_used:
            out.append(
                Check(
                    "pool-capacity",
                    Status.FAIL if space.capacity >= FULL_PERCENT else Status.WARN,
                    pool,
                    f"{used}, over {max_used}%",
                    f"free space: `zfs list -o space -r {pool}`; prune snapshots and backups",
                )
            )
        else:
            out.append(Check("pool-capacity", Status.PASS, pool, used))
    return out


def forecast_check(fc: Forecast, horizon: timedelta) -> Check:
    """WARN when the pool reaches its forecast target within ``horizon``."""
    if fc.days_left is not None and fc.days_left <= horizon.total_seconds() / 86400:
        return Check(
            "pool-forecast",
            Status.WARN,
            fc.pool,
            fc.words,
            f"free space or add disks before then (`zfs list -o space -r {fc.pool}`)",
        )
    return Check(
        "pool-forecast",
        Status.PASS if fc.rate_per_day is not None else Status.INFO,
        fc.pool,
        fc.words,
    )


def disk_checks(disk: DiskHealth, before: DiskHealth | None, temperature_warn: int) -> list[Check]:
    """A disk's SMART verdict, and growth of its counters since ``before``."""
    subject = disk.name
    if disk.error is not None:
        return [
            Check(
                "disk-smart",
                Status.UNKNOWN,
                subject,
                disk.error,
                "install smartmontools, or set [pool_health] smartctl_command",
            )
        ]
    replace = (
        "copy off what matters and replace the disk (`zpool replace POOL OLD "
        "/dev/disk/by-id/NEW-DISK`)"
    )
    if disk.passed is False or disk.critical_warning:
        said = []
        if disk.passed is False:
            said.append("SMART overall health: FAILING")
        if disk.critical_warning:
            said.append(f"NVMe critical warning {disk.critical_warning:#x}")
        return [Check("disk-smart", Status.FAIL, subject, "; ".join(said), replace)]
    out: list[Check] = []
    grown = growth(disk, before)
    if grown:
        words = ", ".join(f"{k.replace('_', ' ')} {a} -> {b}" for k, (a, b) in grown.items())
        out.append(
            Check(
                "disk-smart-growth",
                Status.WARN,
                subject,
                f"grew since the previous reading: {words}",
                "watch it: a disk whose counters keep climbing is failing; "
                "plan its replacement and run a scrub",
            )
        )
    problems = []
    if disk.pending:
        problems.append(f"{disk.pending} pending sectors")
    if disk.media_errors:
        problems.append(f"{disk.media_errors} media errors")
    if disk.percentage_used is not None and disk.percentage_used >= WORN_PERCENT:
        problems.append(f"{disk.percentage_used}% of its rated endurance used")
    if disk.temperature is not None and disk.temperature > temperature_warn:
        problems.append(f"{disk.temperature} °C, over {temperature_warn} °C")
    if problems:
        out.append(
            Check(
                "disk-smart",
                Status.WARN,
                subject,
                "; ".join(problems),
                "check cooling for heat; for sectors and errors, plan its replacement",
            )
        )
    else:
        out.append(Check("disk-smart", Status.PASS, subject, summary(disk)))
    return out


def summary(disk: DiskHealth) -> str:
    """A disk's readings in one line."""
    parts = ["healthy" if disk.passed else "health unknown"]
    for label, value in (
        ("reallocated", disk.reallocated),
        ("pending", disk.pending),
        ("media errors", disk.media_errors),
    ):
        if value is not None:
            parts.append(f"{value} {label}")
    if disk.percentage_used is not None:
        parts.append(f"{disk.percentage_used}% used")
    if disk.temperature is not None:
        parts.append(f"{disk.temperature} °C")
    if disk.power_on_hours is not None:
        parts.append(f"{disk.power_on_hours} h on")
    return ", ".join(parts)


def findings(checks: Iterable[Check]) -> list[str]:
    """What a notification is about: each WARN/FAIL as ``id subject STATUS`` (sorted).
    A run notifies when this list differs from the previous run's."""
    return sorted(
        f"{c.id} {c.subject} {c.status.value}"
        for c in checks
        if c.status in (Status.WARN, Status.FAIL)
    )


def worst(checks: Sequence[Check]) -> Status:
    """FAIL, WARN or PASS."""
    seen = {c.status for c in checks}
    return (
        Status.FAIL if Status.FAIL in seen else Status.WARN if Status.WARN in seen else Status.PASS
    )
