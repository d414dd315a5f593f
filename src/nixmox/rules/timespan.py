"""systemd time spans (``RandomizedDelaySec=``, ``5min 30s``), parsed as systemd does.

``systemd-analyze timespan`` is the reference; the tests compare against it.
"""

from __future__ import annotations

import datetime as _dt
import math

from nixmox.rules.oncalendar import USEC_PER_SEC, CalendarError, is_ascii_digit

__all__ = ["parse_timedelta", "parse_timespan"]

_SPAN_UNITS_USEC: dict[str, int] = {}
for _names, _usec in (
    # Both the micro sign and the Greek mu are accepted.
    (("us", "usec", "\u00b5s", "\u03bcs"), 1),
    (("ms", "msec"), 1_000),
    (("s", "sec", "second", "seconds"), USEC_PER_SEC),
    (("m", "min", "minute", "minutes"), 60 * USEC_PER_SEC),
    (("h", "hr", "hour", "hours"), 3_600 * USEC_PER_SEC),
    (("d", "day", "days"), 86_400 * USEC_PER_SEC),
    (("w", "week", "weeks"), 7 * 86_400 * USEC_PER_SEC),
    # systemd's month and year are averages: 30.44 and 365.25 days.
    (("M", "month", "months"), 2_629_800 * USEC_PER_SEC),
    (("y", "year", "years"), 31_557_600 * USEC_PER_SEC),
):
    for _name in _names:
        _SPAN_UNITS_USEC[_name] = _usec
# Longest first, so "ms" wins over "m" and "minutes" over "min".
_SPAN_UNIT_NAMES = sorted(_SPAN_UNITS_USEC, key=len, reverse=True)
_USEC_INFINITY = 2**64 - 1
_SPAN_SPACE = " \t\n\r\v\f"


def _span_usec(text: str) -> int:
    stripped = text.strip(_SPAN_SPACE)
    if stripped == "infinity":
        return _USEC_INFINITY
    if not stripped:
        raise CalendarError("empty time span")
    total = 0
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos] in _SPAN_SPACE:
            pos += 1
        if pos >= n:
            break
        if text[pos] == "-":
            raise CalendarError(f"negative time span {text!r}")
        if text[pos] == "+":
            pos += 1
            # An explicit sign must be followed by digits: "+5" but not "+.5".
            if pos >= n or not is_ascii_digit(text[pos]):
                raise CalendarError(f"expected digits after '+' in time span {text!r}")
        begin = pos
        while pos < n and is_ascii_digit(text[pos]):
            pos += 1
        whole = text[begin:pos]
        frac = ""
        if pos < n and text[pos] == ".":
            pos += 1
            fbegin = pos
            while pos < n and is_ascii_digit(text[pos]):
                pos += 1
            frac = text[fbegin:pos]
            if not frac:
                raise CalendarError(f"missing digits after '.' in {text!r}")
        if not whole and not frac:
            raise CalendarError(f"expected a number in time span {text!r}")
        number_end = pos
        while pos < n and text[pos] in _SPAN_SPACE:
            pos += 1
        unit = 0
        for name in _SPAN_UNIT_NAMES:
            if text.startswith(name, pos):
                unit = _SPAN_UNITS_USEC[name]
                pos += len(name)
                break
        if not unit:
            # A bare number means seconds, but only as a whole word: "5+3"
            # and "1.2.5" are refused, "5 +3s" and "1min30" are not.
            if pos == number_end and pos < n:
                raise CalendarError(f"unexpected {text[pos]!r} in time span {text!r}")
            unit = USEC_PER_SEC
        # Each fractional digit is worth a tenth of the previous one,
        # truncated to whole microseconds digit by digit (systemd does too).
        value = int(whole or "0") * unit
        step = unit
        for ch in frac:
            step //= 10
            value += int(ch) * step
        total += value
        if total >= _USEC_INFINITY:
            raise CalendarError(f"time span {text!r} out of range")
    return total


def parse_timespan(text: str) -> float:
    """Parse a systemd time span (``"5m"``, ``"1h 30min"``, ``"500ms"``) to seconds.

    A bare number means seconds; components add up.  Units: us, ms, s/sec/
    second(s), m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s),
    M/month(s), y/year(s).  ``infinity`` returns ``math.inf``.  Raises
    :class:`CalendarError` for anything ``systemd-analyze timespan`` refuses.
    """
    usec = _span_usec(text)
    if usec == _USEC_INFINITY:
        return math.inf
    return usec / USEC_PER_SEC


def parse_timedelta(text: str) -> _dt.timedelta:
    """A systemd time span as a :class:`~datetime.timedelta` (``infinity``: the largest one)."""
    seconds = parse_timespan(text)
    return _dt.timedelta.max if math.isinf(seconds) else _dt.timedelta(seconds=seconds)
