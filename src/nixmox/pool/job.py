"""The pool jobs: scrub and trim followed to the end, and the health reading.

:class:`PoolReader` reads a pool through :class:`~nixmox.adapters.zfs.Zpool`
(JSON where zpool has it, the text otherwise). :func:`scrub_pool` refuses to
start while a scrub or resilver runs, starts (or resumes) the scrub, follows
it with progress lines, pauses it while the ``pause_during`` window is open
(``zpool scrub -p``; where zpool cannot pause, the scrub is stopped and
started again after the window) and reports what it repaired per vdev.
:func:`trim_pool` does the same for TRIM. Both report to a
:class:`~nixmox.core.progress.Progress` (one activity per pool, keyed by its
name) and take a ``clock`` (:mod:`nixmox.core.clock`) so that tests can walk
a scrub through a window.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import tzinfo
from typing import Any

from nixmox.adapters.zfs import PoolSpace, ZfsError, ZfsUsage, Zpool
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.progress import SILENT, Progress
from nixmox.core.words import plural
from nixmox.pool.status import PoolState, Scan, parse_json, parse_text
from nixmox.rules.window import window_open


class PoolReader:
    """One pool's state through zpool: ``zpool status -j`` where it exists, else text."""

    def __init__(self, zpool: Zpool, zone: tzinfo) -> None:
        self.zpool = zpool
        self.zone = zone

    def state(self, pool: str) -> PoolState:
        doc = self.zpool.status_json(pool)
        if doc is not None:
            try:
                found = parse_json(doc, self.zone)
            except ValueError as exc:
                raise ZfsError(f"zpool status -j {pool}: {exc}") from None
        else:
            found = parse_text(self.zpool.pool_status(pool), self.zone)
        if pool not in found:
            raise ZfsError(f"zpool status shows no pool {pool}")
        return found[pool]

    def trim_state(self, pool: str) -> PoolState:
        """The text of ``zpool status -t`` (TRIM per vdev); :class:`ZfsUsage` without it."""
        found = parse_text(self.zpool.pool_status(pool, trim=True), self.zone)
        if pool not in found:
            raise ZfsError(f"zpool status shows no pool {pool}")
        return found[pool]


@dataclass(frozen=True)
class FollowSettings:
    """How a scrub or trim is followed."""

    poll: float  # seconds between two reads
    pause_during: str | None  # calendar-spec window, or None
    zone: tzinfo


def vdev_rows(state: PoolState) -> list[dict[str, Any]]:
    """Each device's counters as the journal keeps them."""
    return [
        {
            "name": v.name,
            "state": v.state,
            "read": v.read,
            "write": v.write,
            "checksum": v.checksum,
            "repaired": v.repaired,
            **({"trim": v.trim, "trim_percent": v.trim_percent} if v.trim else {}),
        }
        for v in state.leaves
    ]


def progress_line(scan: Scan) -> str:
    """``scrub 45.0% done, 1.2G / 4.5G issued at 100M/s, 00:01:10 to go``."""
    parts = [f"{scan.function or 'scan'} {scan.percent or 0:.1f}% done"]
    if scan.issued:
        parts.append(f"{scan.issued} issued" + (f" at {scan.rate}" if scan.rate else ""))
    elif scan.scanned:
        parts.append(f"{scan.scanned} scanned")
    if scan.to_go:
        parts.append(f"{scan.to_go} to go")
    return ", ".join(parts)


@dataclass
class OperationResult:
    """One pool's scrub or trim."""

    pool: str
    operation: str  # scrub | trim
    outcome: str  # finished | refused | unsupported | canceled | failed | interrupted | dry-run
    message: str
    repaired: int = 0
    errors: int = 0
    pauses: int = 0
    pause_method: str | None = None  # pause (zpool scrub -p) | stop (stopped and restarted)
    seconds: float = 0.0
    vdevs: list[dict[str, Any]] = field(default_factory=list)
    space: PoolSpace | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("finished", "dry-run")

    def to_json(self) -> dict[str, Any]:
        # The fields in their order, the space's flat at the end (the forecast reads them).
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "space"}
        row["seconds"] = round(self.seconds, 1)
        if self.space is not None:
            row.update(space_row(self.space))
        return row


def space_row(space: PoolSpace) -> dict[str, Any]:
    """A pool's space as the journal keeps it (the forecast reads these back)."""
    return {
        "size": space.size,
        "allocated": space.allocated,
        "capacity": space.capacity,
        "fragmentation": space.fragmentation,
    }


class _Background:
    """A zpool command in a thread: OpenZFS's ``zpool scrub`` returns at once,
    zfs-fuse's only when the scrub is done; following works the same for both."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.error: ZfsError | None = None

        def run() -> None:
            try:
                work()
            except ZfsError as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, seconds: float) -> None:
        self.thread.join(seconds)


def _busy(scan: Scan) -> str | None:
    if scan.state != "running":
        return None
    what = "a resilver" if scan.function == "resilver" else "a scrub"
    return f"{what} is running ({scan.percent or 0:.0f}% done); nixmox starts none beside it"


def _reported(
    progress: Progress, result: OperationResult, doing: str, follow: Callable[[], None]
) -> OperationResult:
    """Run ``follow`` as one progress activity: its start line, then always its end line."""
    progress.start(result.pool, f"{doing} {result.pool}")
    try:
        follow()
    finally:
        progress.end(
            result.pool, f"{result.pool}: {result.operation} {result.outcome}: {result.message}"
        )
    return result


def scrub_pool(
    zpool: Zpool,
    reader: PoolReader,
    pool: str,
    settings: FollowSettings,
    *,
    dry_run: bool = False,
    progress: Progress = SILENT,
    clock: Clock = SYSTEM_CLOCK,
) -> OperationResult:
    """Scrub ``pool`` to the end (see the module); never raises for ZFS failures."""
    started = clock.monotonic()
    result = OperationResult(pool, "scrub", "failed", "")
    try:
        before = reader.state(pool)
    except ZfsError as exc:
        result.message = str(exc)
        return result
    busy = _busy(before.scan)
    if busy is not None:
        result.outcome, result.message = "refused", busy
        return result
    if dry_run:
        verb = "resume the paused scrub" if before.scan.state == "paused" else "start a scrub"
        result.outcome, result.message = "dry-run", f"would {verb} of {pool} and follow it"
        return result

    return _reported(
        progress,
        result,
        "scrubbing",
        lambda: _follow_scrub(
            zpool, reader, pool, settings, before, result, progress, clock, started
        ),
    )


def _follow_scrub(
    zpool: Zpool,
    reader: PoolReader,
    pool: str,
    settings: FollowSettings,
    before: PoolState,
    result: OperationResult,
    progress: Progress,
    clock: Clock,
    started: float,
) -> None:
    """Start (or resume) the scrub and follow it, filling in ``result``."""

    def window() -> bool:
        return settings.pause_during is not None and window_open(
            settings.pause_during, clock.now(), settings.zone
        )

    def wait_out_window() -> bool:
        """Sleep while the window is open; False when stopped meanwhile."""
        while window():
            if interrupt.stopping():
                return False
            progress.update(pool)  # a long window still says "Still scrubbing ..."
            clock.sleep(settings.poll)
        return True

    if window():
        progress.step(
            f"{pool}: inside the pause window ({settings.pause_during}); waiting for it to close"
        )
        if not wait_out_window():
            result.outcome, result.message = "interrupted", "stopped while waiting for the window"
            return
    progress.step(
        f"{pool}: {'resuming the paused' if before.scan.state == 'paused' else 'starting a'} scrub"
    )
    start = _Background(lambda: zpool.scrub(pool))
    state = before
    while True:
        start.wait(settings.poll)
        if start.error is not None:
            result.message = str(start.error)
            return
        try:
            state = reader.state(pool)
        except ZfsError as exc:
            result.message = str(exc)
            return
        scan = state.scan
        if scan.state in ("running", "paused"):
            progress.update(pool, progress_line(scan))
        elif not start.running:
            break  # finished or canceled (by someone else)
        if interrupt.stopping():
            # The scrub goes on without us; the next run finds it running.
            result.outcome = "interrupted"
            result.message = f"stopped following at {scan.percent or 0:.0f}%; the scrub goes on"
            return
        if scan.state == "running" and window():
            method = _pause(zpool, pool, start)
            result.pauses += 1
            result.pause_method = method
            progress.step(
                f"{pool}: pause window open: scrub "
                + ("paused" if method == "pause" else "stopped (this zpool cannot pause)")
            )
            if not wait_out_window():
                result.outcome = "interrupted"
                result.message = "stopped during the pause window; `zpool scrub` resumes it"
                return
            again = "resuming" if method == "pause" else "restarting"
            progress.step(f"{pool}: window closed: {again} the scrub")
            start = _Background(lambda: zpool.scrub(pool))
    result.seconds = clock.monotonic() - started
    scan = state.scan
    result.vdevs = vdev_rows(state)
    result.repaired, result.errors = scan.repaired, scan.errors
    if scan.state == "canceled":
        result.outcome, result.message = "canceled", "the scrub was canceled (not by nixmox)"
    else:
        result.outcome = "finished"
        result.message = f"repaired {scan.repaired} bytes with {scan.errors} errors" + (
            f" after {plural(result.pauses, 'pause')}" if result.pauses else ""
        )
    with contextlib.suppress(ZfsError):  # the forecast only misses one point
        result.space = zpool.space(pool)


def _pause(zpool: Zpool, pool: str, start: _Background) -> str:
    """Pause the scrub (``-p``); where zpool has no ``-p``, stop it (``-s``)."""
    try:
        zpool.pause_scrub(pool)
        return "pause"
    except ZfsUsage:
        zpool.stop_scrub(pool)
        start.wait(30.0)  # zfs-fuse's blocking `zpool scrub` returns once stopped
        return "stop"


def trim_pool(
    zpool: Zpool,
    reader: PoolReader,
    pool: str,
    settings: FollowSettings,
    *,
    dry_run: bool = False,
    progress: Progress = SILENT,
    clock: Clock = SYSTEM_CLOCK,
) -> OperationResult:
    """TRIM ``pool`` and follow it to the end (``zpool status -t``)."""
    started = clock.monotonic()
    result = OperationResult(pool, "trim", "failed", "")
    try:
        before = reader.trim_state(pool)
    except ZfsUsage:
        result.outcome = "unsupported"
        result.message = "this zpool has no TRIM (zpool status -t and zpool trim need OpenZFS 0.8+)"
        return result
    except ZfsError as exc:
        result.message = str(exc)
        return result
    if any(v.trim == "trimming" for v in before.leaves):
        result.outcome, result.message = "refused", "a trim is running already"
        return result
    if before.scan.state == "running" and before.scan.function == "resilver":
        result.outcome, result.message = "refused", "a resilver is running; trim waits for it"
        return result
    if dry_run:
        result.outcome, result.message = "dry-run", f"would trim {pool} and follow it"
        return result
    try:
        zpool.trim(pool)
    except ZfsUsage:
        result.outcome, result.message = "unsupported", "this zpool has no `zpool trim`"
        return result
    except ZfsError as exc:
        result.message = str(exc)
        return result
    return _reported(
        progress,
        result,
        "trimming",
        lambda: _follow_trim(
            zpool, reader, pool, settings, before, result, progress, clock, started
        ),
    )


def _follow_trim(
    zpool: Zpool,
    reader: PoolReader,
    pool: str,
    settings: FollowSettings,
    before: PoolState,
    result: OperationResult,
    progress: Progress,
    clock: Clock,
    started: float,
) -> None:
    """Follow the started TRIM to its end, filling in ``result``."""
    state = before
    while True:
        clock.sleep(settings.poll)
        try:
            state = reader.trim_state(pool)
        except ZfsError as exc:
            result.message = str(exc)
            return
        going = [v for v in state.leaves if v.trim == "trimming"]
        if not going:
            break
        done = min(v.trim_percent or 0 for v in going)
        progress.update(pool, f"trim {done}% done on the slowest of {plural(len(going), 'device')}")
        if interrupt.stopping():
            result.outcome = "interrupted"
            result.message = f"stopped following at {done}%; the trim goes on"
            return
    result.seconds = clock.monotonic() - started
    result.vdevs = vdev_rows(state)
    unsupported = [v.name for v in state.leaves if v.trim == "unsupported"]
    result.outcome = "finished"
    result.message = "trimmed" + (
        f"; {plural(len(unsupported), 'device')} cannot trim: {', '.join(unsupported)}"
        if unsupported
        else ""
    )
    with contextlib.suppress(ZfsError):
        result.space = zpool.space(pool)
