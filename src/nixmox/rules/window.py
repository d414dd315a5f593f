"""Maintenance windows: is a moment inside a calendar spec's window?

A reboot window is written as a systemd calendar spec (``Sun *-*-* 03..05:*``):
a moment is inside it when every field of the spec matches that moment.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from calendar import monthrange as _monthrange
from collections.abc import Callable

from nixmox.rules.oncalendar import USEC_PER_SEC, CalendarComponent, parse_calendar

_Chain = tuple[CalendarComponent, ...] | None


def _single_zero(chain: _Chain) -> bool:
    return chain is not None and len(chain) == 1 and chain[0] == CalendarComponent(0, None, 0)


def _matches(chain: _Chain, value: int, in_range: Callable[[CalendarComponent], bool]) -> bool:
    """Whether a component of ``chain`` (none: every value) names ``value``: a single
    value by itself, a range or repetition as ``in_range`` reads it."""
    if chain is None:
        return True
    return any(value == c.start if c.stop is None and not c.repeat else in_range(c) for c in chain)


def _hits(chain: _Chain, value: int, unit: int = 1) -> bool:
    def in_range(c: CalendarComponent) -> bool:
        top = c.stop if c.stop is not None else value
        return c.start <= value <= top and (value - c.start) % (c.repeat or unit) == 0

    return _matches(chain, value, in_range)


def _hits_from_end(chain: _Chain, days_left: int) -> bool:
    """``~`` days count from the month's end (``~01`` is the last day); ``~07/1`` runs to it."""

    def in_range(c: CalendarComponent) -> bool:
        low, high = (c.start, c.stop) if c.stop is not None else (1, c.start)
        low, high = min(low, high), max(low, high)
        return low <= days_left <= high and (c.start - days_left) % (c.repeat or 1) == 0

    return _matches(chain, days_left, in_range)


def _days_in_month(year: int, month: int) -> int:
    return _monthrange(year, month)[1]


def window_open(spec: str, now: _dt.datetime, zone: _dt.tzinfo) -> bool:
    """Whether ``now`` (aware) lies in the reboot window ``spec``, a calendar spec.

    A window is the set of times the spec matches, with trailing ``:00`` time
    fields counting as ``*``: ``Sun 04:00`` is Sundays 04:00-04:59,
    ``Sat 03..05:00`` Saturdays 03:00-05:59, ``*-*~01 04:00`` the month's last
    day 04:00-04:59; the spec's own time zone if it names one, else ``zone``.
    """
    cal = parse_calendar(spec)
    tz: _dt.tzinfo = zone if cal.timezone is None else zoneinfo.ZoneInfo(cal.timezone)
    t = now.astimezone(tz)
    second, minute, hour = cal.second, cal.minute, cal.hour
    if _single_zero(second):
        second = None
        if _single_zero(minute):
            minute = None
            if _single_zero(hour):
                hour = None
    if cal.weekdays and t.weekday() not in cal.weekdays:
        return False
    if not (_hits(cal.year, t.year) and _hits(cal.month, t.month)):
        return False
    if cal.end_of_month:
        if not _hits_from_end(cal.day, _days_in_month(t.year, t.month) - t.day + 1):
            return False
    elif not _hits(cal.day, t.day):
        return False
    return (
        _hits(hour, t.hour)
        and _hits(minute, t.minute)
        and _hits(second, t.second * USEC_PER_SEC, USEC_PER_SEC)
    )
