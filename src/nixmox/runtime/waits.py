"""How long a run waits for its locks: bounded per job.

A run that waits forever behind another is as bad as one that gives up at
once: an hourly snapshot stuck behind the previous one would pile up. The bound
is a quarter of the job's interval (its ``[schedules]`` calendar: an hourly
snapshot waits at most 15 minutes, so it never runs into the next one), and
never more than an hour; a job without a timer (``apply`` and the other
commands a person runs) waits up to ten minutes, saying what it waits for, and
Ctrl-C ends the wait. ``NIXMOX_LOCK_WAIT`` (a systemd time span) overrides it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nixmox.core.errors import ConfigError
from nixmox.inventory.model import Inventory
from nixmox.rules.oncalendar import CalendarError, longest_gap, parse_calendar
from nixmox.rules.timespan import parse_timespan

#: The share of its interval a scheduled job may spend waiting.
FRACTION = 0.25
#: At most this long for a scheduled job (seconds).
LONGEST = 3600.0
#: A job without a timer (seconds).
UNSCHEDULED = 600.0
#: A snapshot without a timer still runs about hourly (seconds).
SNAPSHOT_INTERVAL = 3600.0


def lock_wait(inv: Inventory | None, job: str, environ: Mapping[str, str] | None = None) -> float:
    """Seconds ``job`` may wait for its locks (see the module docstring)."""
    env = os.environ if environ is None else environ
    override = env.get("NIXMOX_LOCK_WAIT")
    if override:
        try:
            return parse_timespan(override)
        except CalendarError as exc:
            raise ConfigError(f"NIXMOX_LOCK_WAIT={override!r}: {exc}") from None
    interval = _interval(inv, job)
    if interval is None:
        return SNAPSHOT_INTERVAL * FRACTION if job == "snapshot" else UNSCHEDULED
    return min(interval * FRACTION, LONGEST)


def _interval(inv: Inventory | None, job: str) -> float | None:
    if inv is None or inv.schedules is None:
        return None
    spec = getattr(inv.schedules, job.replace(" ", "_"), None)
    if not isinstance(spec, str):
        return None
    try:
        gap = longest_gap(parse_calendar(spec))
    except CalendarError:
        return None
    return gap.total_seconds() if gap is not None else None
