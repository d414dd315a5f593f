"""Parse and validate systemd calendar specs (``OnCalendar=``), without systemd.

The config file declares job schedules as systemd ``OnCalendar=`` expressions
and delays as time spans.  We want to reject a bad schedule when the config is
loaded, not when the generated timer unit fails on the host, so this module
implements the grammar of systemd.time(7) and agrees with systemd 252's
``systemd-analyze calendar`` on which specs are valid and on their normalized
form.  The test suite checks that agreement against the real binary.

Known gaps (all rejected or accepted exactly as systemd does unless noted):

* A trailing abbreviation of the *host's* local time zone (``tzname``, e.g.
  ``CET`` when the host runs in Europe/Berlin) is special-cased by systemd to
  mean local time with/without DST.  We only know the zone database, so such
  a suffix is checked like any other zone name.
* Zone names are looked up with :mod:`zoneinfo`, i.e. in the zone database of
  the machine running nixmox; that is the only environment-dependent step.
* ``~`` (last days of month) lists follow an empirically measured systemd 252
  rule (see ``_check_end_of_month_list``) rather than a documented one.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from dataclasses import dataclass

__all__ = [
    "CalendarComponent",
    "CalendarError",
    "CalendarSpec",
    "is_valid_calendar",
    "longest_gap",
    "parse_calendar",
]


USEC_PER_SEC = 1_000_000
# systemd stores chain values as C ints; larger numbers are refused outright.
_INT_MAX = 2**31 - 1
_MIN_YEAR = 1970
_MAX_YEAR = 2199
# "~N" counts back from the last day; only the shortest month bounds it.
_EOM_MAX_DAY = 28

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_BY_NAME = {name.lower(): i for i, name in enumerate(WEEKDAYS)} | {
    name: i for i, name in enumerate(_LONG_WEEKDAYS)
}

# Shorthands expand to ordinary specs; parsing the expansion keeps one code path.
_SHORTHANDS = {
    "minutely": "*-*-* *:*:00",
    "hourly": "*-*-* *:00:00",
    "daily": "*-*-* 00:00:00",
    "monthly": "*-*-01 00:00:00",
    "weekly": "Mon *-*-* 00:00:00",
    "yearly": "*-01-01 00:00:00",
    "annually": "*-01-01 00:00:00",
    "quarterly": "*-01,04,07,10-01 00:00:00",
    "semiannually": "*-01,07-01 00:00:00",
    "semi-annually": "*-01,07-01 00:00:00",
    "biannually": "*-01,07-01 00:00:00",
    "bi-annually": "*-01,07-01 00:00:00",
}


class CalendarError(ValueError):
    """A calendar spec or time span that systemd would refuse."""


@dataclass(frozen=True, order=True)
class CalendarComponent:
    """One element of a comma list: ``start[..stop][/repeat]``.

    For the seconds field all three numbers are in microseconds.  ``stop`` is
    None for a single value; ``repeat`` is 0 when nothing repeats.  A range
    without ``/N`` repeats every unit (1, or one second for seconds).
    """

    start: int
    stop: int | None
    repeat: int

    def _sort_key(self) -> tuple[int, int, int]:
        # systemd orders a single value before ranges starting at the same value.
        return (self.start, -1 if self.stop is None else self.stop, self.repeat)


Chain = tuple[CalendarComponent, ...] | None
"""A field's components in normalized order, or None for ``*``."""


@dataclass(frozen=True)
class CalendarSpec:
    """A parsed, normalized calendar spec.

    ``weekdays`` holds 0 (Monday) to 6 (Sunday); empty means every day.
    ``second`` components are in microseconds.  ``timezone`` is None for the
    host's local time, ``"UTC"`` for UTC, else an IANA zone name.
    """

    weekdays: frozenset[int]
    year: Chain
    month: Chain
    day: Chain
    hour: Chain
    minute: Chain
    second: Chain
    end_of_month: bool
    timezone: str | None

    def normalized(self) -> str:
        """Return the spec as ``systemd-analyze calendar`` prints its "Normalized form"."""
        parts: list[str] = []
        if self.weekdays:
            parts.append(_format_weekdays(self.weekdays))
        sep = "~" if self.end_of_month else "-"
        parts.append(
            f"{_format_chain(self.year, 1)}-{_format_chain(self.month, 1)}"
            f"{sep}{_format_chain(self.day, 1)}"
        )
        parts.append(
            f"{_format_chain(self.hour, 1)}:{_format_chain(self.minute, 1)}"
            f":{_format_chain(self.second, USEC_PER_SEC)}"
        )
        if self.timezone is not None:
            parts.append(self.timezone)
        return " ".join(parts)


# --------------------------------------------------------------------------
# Formatting


def _format_weekdays(days: frozenset[int]) -> str:
    # Runs of three or more days become "A..C"; shorter runs stay a list.
    out: list[str] = []
    i = 0
    while i < 7:
        if i not in days:
            i += 1
            continue
        j = i
        while j + 1 < 7 and j + 1 in days:
            j += 1
        if j - i >= 2:
            out.append(f"{WEEKDAYS[i]}..{WEEKDAYS[j]}")
        else:
            out.extend(WEEKDAYS[k] for k in range(i, j + 1))
        i = j + 1
    return ",".join(out)


def _format_value(value: int, unit: int) -> str:
    if unit == 1:
        return f"{value:02d}"
    whole, frac = divmod(value, unit)
    return f"{whole:02d}.{frac:06d}" if frac else f"{whole:02d}"


def _format_repeat(value: int, unit: int) -> str:
    if unit == 1:
        return str(value)
    whole, frac = divmod(value, unit)
    return f"{whole}.{frac:06d}" if frac else str(whole)


def _format_chain(chain: Chain, unit: int) -> str:
    if chain is None:
        return "*"
    items: list[str] = []
    for comp in chain:
        text = _format_value(comp.start, unit)
        if comp.stop is not None:
            text += ".." + _format_value(comp.stop, unit)
            # A plain range repeats every unit; only other steps are spelled out.
            if comp.repeat != unit:
                text += "/" + _format_repeat(comp.repeat, unit)
        elif comp.repeat:
            text += "/" + _format_repeat(comp.repeat, unit)
        items.append(text)
    return ",".join(items)


# --------------------------------------------------------------------------
# Parsing


class _Cursor:
    """Position in the text being parsed; avoids threading indexes by hand."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1


def is_ascii_digit(ch: str) -> bool:
    # str.isdigit() also accepts non-ASCII digits, which systemd does not.
    return len(ch) == 1 and "0" <= ch <= "9"


def _parse_number(cur: _Cursor, unit: int, field: str) -> int:
    """Parse an unsigned decimal; with unit 1e6 allow a fraction (seconds)."""
    start = cur.pos
    while is_ascii_digit(cur.peek()):
        cur.pos += 1
    if cur.pos == start:
        raise CalendarError(f"expected a number for {field} at {cur.text[start:]!r}")
    value = int(cur.text[start : cur.pos])
    if value > _INT_MAX:
        raise CalendarError(f"{field} value {value} is too large")
    value *= unit
    # A single "." starts a fraction, ".." is a range.
    if unit != 1 and cur.peek() == "." and cur.peek(2) != "..":
        cur.pos += 1
        fstart = cur.pos
        while is_ascii_digit(cur.peek()):
            cur.pos += 1
        digits = cur.text[fstart : cur.pos]
        if not digits:
            raise CalendarError(f"missing digits after '.' in {field}")
        # Microsecond precision, rounding on the seventh digit like systemd.
        micro = int((digits + "000000")[:6])
        if len(digits) > 6 and digits[6] >= "5":
            micro += 1
        value += micro
    if value > _INT_MAX:
        raise CalendarError(f"{field} value is too large")
    return value


_AFTER_COMPONENT = ("", " ", ",", "-", "~", ":")


def _parse_chain(cur: _Cursor, unit: int, field: str) -> tuple[CalendarComponent, ...] | None:
    """Parse ``*`` or a comma list of components; no range checks yet."""
    if cur.peek() == "*":
        cur.pos += 1
        return None
    comps: list[CalendarComponent] = []
    while True:
        start = _parse_number(cur, unit, field)
        stop: int | None = None
        repeat = 0
        explicit_repeat = False
        if cur.peek(2) == "..":
            cur.pos += 2
            stop = _parse_number(cur, unit, field)
            repeat = unit
        if cur.peek() == "/":
            cur.pos += 1
            repeat = _parse_number(cur, unit, field)
            explicit_repeat = True
            if repeat == 0:
                raise CalendarError(f"{field} repetition must not be zero")
        if cur.peek() not in _AFTER_COMPONENT:
            raise CalendarError(f"unexpected {cur.peek()!r} in {field}")
        if stop is not None and not explicit_repeat and unit != 1 and start + repeat > stop:
            # A bare seconds range must span at least one whole second.
            raise CalendarError(f"{field} range {_fmt_range(start, stop, unit)} is empty")
        comps.append(CalendarComponent(start, stop, repeat))
        if cur.peek() != ",":
            return tuple(comps)
        cur.pos += 1


def _fmt_range(start: int, stop: int, unit: int) -> str:
    return f"{_format_value(start, unit)}..{_format_value(stop, unit)}"


def _parse_weekdays(cur: _Cursor) -> frozenset[int]:
    """Parse ``Mon``, ``mon,Wed``, ``Mon..Fri`` or ``Mon-Fri`` lists."""
    if not cur.peek().isalpha():
        return frozenset()
    days: set[int] = set()

    def name() -> int:
        begin = cur.pos
        while cur.peek().isalpha():
            cur.pos += 1
        word = cur.text[begin : cur.pos]
        try:
            return _WEEKDAY_BY_NAME[word.lower()]
        except KeyError:
            raise CalendarError(f"unknown weekday {word!r}") from None

    while True:
        first = name()
        last = first
        if cur.peek(2) == "..":
            cur.pos += 2
            last = name()
        elif cur.peek() == "-":
            cur.pos += 1
            last = name()
        if last < first:
            raise CalendarError(f"weekday range {WEEKDAYS[first]}..{WEEKDAYS[last]} runs backwards")
        days.update(range(first, last + 1))
        if cur.peek() == ",":
            cur.pos += 1
            # systemd tolerates a trailing comma before the next part.
            if cur.peek() in ("", " "):
                break
            continue
        break
    if cur.peek() not in ("", " "):
        raise CalendarError(f"unexpected {cur.peek()!r} after weekdays")
    cur.skip_spaces()
    # Every day of the week is the same as no restriction.
    return frozenset() if len(days) == 7 else frozenset(days)


@dataclass
class _Fields:
    year: tuple[CalendarComponent, ...] | None = None
    month: tuple[CalendarComponent, ...] | None = None
    day: tuple[CalendarComponent, ...] | None = None
    hour: tuple[CalendarComponent, ...] | None = (CalendarComponent(0, None, 0),)
    minute: tuple[CalendarComponent, ...] | None = (CalendarComponent(0, None, 0),)
    second: tuple[CalendarComponent, ...] | None = (CalendarComponent(0, None, 0),)
    end_of_month: bool = False


def _next_date_part(cur: _Cursor, f: _Fields) -> tuple[CalendarComponent, ...] | None:
    """The date part after a ``-`` (or a ``~``: days counted from the month's end)."""
    if cur.peek() == "~":
        f.end_of_month = True
    elif cur.peek() != "-":
        raise CalendarError(f"unexpected {cur.peek()!r} in date")
    cur.pos += 1
    return _parse_chain(cur, 1, "date")


def _parse_date(cur: _Cursor, f: _Fields) -> None:
    """Parse ``[YEAR-]MONTH-DAY`` (or ``MONTH~DAY``); leave a time untouched."""
    if cur.at_end():
        return
    begin = cur.pos
    first = _parse_chain(cur, 1, "date")
    if cur.peek() in ("", ":"):
        # It was the hour of a time without a date.
        cur.pos = begin
        return
    second = _next_date_part(cur, f)
    if cur.peek() in ("", " "):
        f.month, f.day = first, second
        cur.skip_spaces()
        return
    if f.end_of_month:
        raise CalendarError("'~' must separate month and day")
    third = _next_date_part(cur, f)
    if cur.peek() not in ("", " "):
        raise CalendarError(f"unexpected {cur.peek()!r} after date")
    f.year, f.month, f.day = first, second, third
    cur.skip_spaces()


def _parse_time(cur: _Cursor, f: _Fields) -> None:
    """Parse ``HOUR:MINUTE[:SECOND]``; an absent time means midnight."""
    if cur.at_end():
        return
    f.hour = _parse_chain(cur, 1, "hour")
    if cur.peek() != ":":
        raise CalendarError("time needs at least HH:MM")
    cur.pos += 1
    f.minute = _parse_chain(cur, 1, "minute")
    if cur.peek() == ":":
        cur.pos += 1
        f.second = _parse_chain(cur, USEC_PER_SEC, "second")
    else:
        f.second = (CalendarComponent(0, None, 0),)
    if not cur.at_end():
        raise CalendarError(f"unexpected {cur.text[cur.pos :]!r} after time")


def _fix_year(chain: tuple[CalendarComponent, ...] | None) -> tuple[CalendarComponent, ...] | None:
    # Two-digit years: 00-69 mean 20xx, 70-99 mean 19xx (as in systemd).
    def fix(y: int) -> int:
        if y < 70:
            return y + 2000
        if y < 100:
            return y + 1900
        return y

    if chain is None:
        return None
    return tuple(
        CalendarComponent(fix(c.start), None if c.stop is None else fix(c.stop), c.repeat)
        for c in chain
    )


def _check_chain(
    chain: tuple[CalendarComponent, ...] | None,
    field: str,
    lo: int,
    hi: int,
    unit: int = 1,
    backwards: bool = False,
) -> None:
    if chain is None:
        return

    def show(v: int) -> str:
        # Messages quote values as the user would write them ("hour 25").
        return str(v) if unit == 1 else _format_value(v, unit)

    rng = f"{show(lo)}-{show(hi)}"
    for c in chain:
        for v in (c.start, c.stop):
            if v is not None and not lo <= v <= hi:
                raise CalendarError(f"{field} {show(v)} out of range {rng}")
        if c.stop is not None:
            if c.start > c.stop:
                raise CalendarError(f"{field} range {show(c.start)}..{show(c.stop)} is empty")
        elif c.repeat:
            # A repetition must fire at least twice inside the field's range;
            # "~" counts days backwards, so there the room is below the start.
            if backwards and c.start - c.repeat < lo:
                raise CalendarError(f"{field} {c.start}/{c.repeat} leaves no repetition")
            if not backwards and c.start + c.repeat > hi:
                step = _format_repeat(c.repeat, unit)
                raise CalendarError(f"{field} {show(c.start)}/{step} leaves no repetition")


def _normalize_chain(
    chain: tuple[CalendarComponent, ...] | None,
) -> tuple[CalendarComponent, ...] | None:
    if chain is None:
        return None
    out: set[CalendarComponent] = set()
    for c in chain:
        stop, repeat = c.stop, c.repeat
        if stop is not None:
            # Trim the end of a stepped range to the last value actually hit;
            # backwards ranges are left for the range check to refuse.
            if stop > c.start:
                stop -= (stop - c.start) % repeat
            if stop == c.start:
                stop, repeat = None, 0
        out.add(CalendarComponent(c.start, stop, repeat))
    return tuple(sorted(out, key=CalendarComponent._sort_key))


_EVERY_SECOND = CalendarComponent(0, None, USEC_PER_SEC)


def _check_end_of_month_list(chain: tuple[CalendarComponent, ...]) -> None:
    # Measured against systemd 252 (not documented): in a "~" list of several
    # distinct elements, the i-th element in normalized order may reach at
    # most day 28 - 3*i.  A lone "~28" is fine, "~1,26" and "~1,2,23" are not.
    for i, c in enumerate(chain):
        limit = _EOM_MAX_DAY - 3 * i
        for v in (c.start, c.stop):
            if v is not None and v > limit:
                raise CalendarError(f"day ~{v} too late in a '~' list (systemd accepts <= {limit})")


def _zone_exists(name: str) -> bool:
    # systemd accepts any zone file of the host's tz database; zoneinfo reads
    # the same database (or the tzdata package where there is none).
    if not name or name.startswith("/") or ".." in name.split("/"):
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _split_timezone(spec: str) -> tuple[str, str | None]:
    if spec[-4:].lower() == " utc":
        return spec[:-4], "UTC"
    head, sep, tail = spec.rpartition(" ")
    if sep and _zone_exists(tail):
        return head, tail
    return spec, None


def _from_timestamp(body: str) -> CalendarSpec:
    digits = body[1:]
    if not digits or not all(is_ascii_digit(ch) for ch in digits):
        raise CalendarError(f"bad timestamp {body!r}")
    seconds = int(digits)
    limit = _dt.datetime(_MAX_YEAR + 1, 1, 1, tzinfo=_dt.UTC).timestamp()
    if seconds >= limit:
        raise CalendarError(f"timestamp {body!r} beyond year {_MAX_YEAR}")
    moment = _dt.datetime.fromtimestamp(seconds, tz=_dt.UTC)

    def one(v: int) -> tuple[CalendarComponent, ...]:
        return (CalendarComponent(v, None, 0),)

    # A point in time is always UTC; systemd ignores any zone given with it.
    return CalendarSpec(
        weekdays=frozenset(),
        year=one(moment.year),
        month=one(moment.month),
        day=one(moment.day),
        hour=one(moment.hour),
        minute=one(moment.minute),
        second=one(moment.second * USEC_PER_SEC),
        end_of_month=False,
        timezone="UTC",
    )


def parse_calendar(spec: str) -> CalendarSpec:
    """Parse a systemd calendar spec (``OnCalendar=`` syntax, systemd.time(7)).

    Accepts shorthands (``daily``, ``weekly``, ...), ``@UNIXTIME``, and
    ``[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [TIMEZONE]`` with
    lists, ``..`` ranges, ``/N`` repetitions and ``~`` (days from month end).
    Raises :class:`CalendarError` with a short message for anything systemd
    252 would refuse.  The result is normalized like systemd normalizes it.
    """
    if not spec:
        raise CalendarError("empty calendar spec")
    body, timezone = _split_timezone(spec)
    if not body:
        raise CalendarError(f"nothing before the time zone in {spec!r}")
    if body.startswith("@"):
        return _from_timestamp(body)
    expansion = _SHORTHANDS.get(body.lower())
    if expansion is not None:
        body = expansion

    cur = _Cursor(body)
    weekdays = _parse_weekdays(cur)
    fields = _Fields()
    _parse_date(cur, fields)
    _parse_time(cur, fields)

    # systemd trims stepped ranges before it range-checks them, so
    # "*:50..61/21" is fine (it only ever hits minute 50): normalize first.
    year = _normalize_chain(_fix_year(fields.year))
    month = _normalize_chain(fields.month)
    day = _normalize_chain(fields.day)
    hour = _normalize_chain(fields.hour)
    minute = _normalize_chain(fields.minute)
    second = _normalize_chain(fields.second)
    end_of_month = fields.end_of_month and day is not None

    _check_chain(year, "year", _MIN_YEAR, _MAX_YEAR)
    _check_chain(month, "month", 1, 12)
    if end_of_month:
        _check_chain(day, "day before month end", 1, _EOM_MAX_DAY, backwards=True)
    else:
        _check_chain(day, "day", 1, 31)
    _check_chain(hour, "hour", 0, 23)
    _check_chain(minute, "minute", 0, 59)
    _check_chain(second, "second", 0, 60 * USEC_PER_SEC - 1, USEC_PER_SEC)
    if end_of_month and day is not None:
        _check_end_of_month_list(day)

    # "0/1" seconds is how systemd stores "*"; once present, it swallows the
    # whole seconds list ("*:*:5,0/1" prints as "*:*:*").
    if second is not None and _EVERY_SECOND in second:
        second = None
    return CalendarSpec(
        weekdays=weekdays,
        year=year,
        month=month,
        day=day,
        hour=hour,
        minute=minute,
        second=second,
        end_of_month=end_of_month,
        timezone=timezone,
    )


def is_valid_calendar(spec: str) -> str | None:
    """Return None if ``spec`` is a valid calendar spec, else the error message."""
    try:
        parse_calendar(spec)
    except CalendarError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------
# How often a schedule fires

# For the finest field left as "*" (by index in year, month, day, hour, minute,
# second): the next finer field's (circle size, highest value, seconds per step,
# stored unit). Months count 31 days so that the answer errs long.
_BELOW = {
    0: (12, 12, 31 * 86_400, 1),
    1: (31, 31, 86_400, 1),
    2: (24, 23, 3_600, 1),
    3: (60, 59, 60, 1),
    4: (60, 59, 1, USEC_PER_SEC),
}


def _values(chain: tuple[CalendarComponent, ...], hi: int, unit: int) -> list[int]:
    """Every value a chain hits up to ``hi`` (``unit``: microseconds for seconds)."""
    out: set[int] = set()
    for c in chain:
        step = c.repeat or unit
        stop = c.stop if c.stop is not None else (hi * unit if c.repeat else c.start)
        out.update(v // unit for v in range(c.start, stop + 1, step))
    return sorted(out)


def _circular_gap(values: list[int], size: int) -> int:
    """The longest distance between consecutive values on a circle of ``size``."""
    if len(values) <= 1:
        return size
    pairs = zip(values, [*values[1:], values[0] + size], strict=True)
    return max(b - a for a, b in pairs)


def longest_gap(spec: CalendarSpec) -> _dt.timedelta | None:
    """About the longest time between two runs of ``spec``; ``None`` if it fires only once.

    The finest field left as ``*`` sets the period (``daily``: a day, ``hourly``:
    an hour), the values of the next finer field split it (``00,12:00``: 12 h),
    and weekdays replace the day (``Mon..Fri``: 3 days over the weekend). It errs
    long, never short (a month counts 31 days). Good for "how old may the
    newest backup be", not for computing the next run.
    """
    fields = (spec.year, spec.month, spec.day, spec.hour, spec.minute, spec.second)
    wildcard = [i for i, chain in enumerate(fields) if chain is None]
    if not wildcard:
        return None
    finest = wildcard[-1]
    if finest == 2 and spec.weekdays:
        return _dt.timedelta(days=_circular_gap(sorted(spec.weekdays), 7))
    if finest == len(fields) - 1:
        return _dt.timedelta(seconds=1)
    size, hi, seconds, unit = _BELOW[finest]
    below = fields[finest + 1]
    assert below is not None  # the finest "*" is the last None
    return _dt.timedelta(seconds=_circular_gap(_values(below, hi, unit), size) * seconds)
