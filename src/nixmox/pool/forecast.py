"""When will a pool be full: a straight line through its recorded capacity (pure).

The history is what ``nixmox pool ...`` runs journaled: (time, allocated
bytes, size bytes). The forecast fits a least-squares line to the used
percentage over the last ``days`` days and says, in words, when that line
reaches the target: "at the last 30 days' rate (+0.40%/day), 90% in 41 days".
A line is honest about what it is: it does not know about a backup job
that will be pruned next week, so the words always name the rate and span.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: Fewer hours of history than this give no forecast: one day's noise is no trend.
MIN_SPAN = timedelta(hours=20)


@dataclass(frozen=True)
class CapacityPoint:
    """One recorded reading of a pool's space."""

    at: datetime  # aware
    allocated: int  # bytes
    size: int  # bytes

    @property
    def percent(self) -> float:
        return self.allocated * 100.0 / self.size if self.size else 0.0


@dataclass(frozen=True)
class Forecast:
    """A pool's fill forecast; ``days_left`` is ``None`` when it is not filling
    (or when there is too little history: ``rate_per_day`` ``None`` too)."""

    pool: str
    target: int  # percent
    percent: float  # used now (the newest reading)
    span_days: float  # how much history the line was fitted on
    rate_per_day: float | None  # percentage points per day
    days_left: float | None  # until ``target``; 0 when already there

    @property
    def words(self) -> str:
        """The forecast in one sentence."""
        if self.days_left == 0:
            return f"{self.percent:.0f}% used: at or over {self.target}% already"
        if self.rate_per_day is None:
            return (
                f"{self.percent:.0f}% used; not enough history for a forecast yet "
                f"({self.span_days:.1f} days recorded)"
            )
        span = _span_words(self.span_days)
        rate = f"{self.rate_per_day:+.2f}%/day"
        if self.days_left is None:
            return f"{self.percent:.0f}% used; not filling at the {span} rate ({rate})"
        return (
            f"at the {span} rate ({rate}), {self.target}% in {_days(self.days_left)}"
            f" ({self.percent:.0f}% used now)"
        )


def _span_words(days: float) -> str:
    whole = max(1, round(days))
    return f"last {whole} days'" if whole != 1 else "last day's"


def _days(days: float) -> str:
    whole = math.floor(days)
    return "under a day" if whole < 1 else f"{whole} day" + ("s" if whole != 1 else "")


def forecast(
    pool: str,
    history: Sequence[CapacityPoint],
    now: datetime,
    *,
    days: int = 30,
    target: int = 90,
) -> Forecast | None:
    """The forecast for ``pool`` from ``history`` (any order); ``None`` without any reading."""
    since = now - timedelta(days=days)
    points = sorted((p for p in history if since <= p.at <= now and p.size > 0), key=lambda p: p.at)
    if not points:
        return None
    newest = points[-1]
    span = points[-1].at - points[0].at
    span_days = span.total_seconds() / 86400
    if newest.percent >= target:
        return Forecast(pool, target, newest.percent, span_days, None, 0.0)
    if span < MIN_SPAN or len(points) < 2:
        return Forecast(pool, target, newest.percent, span_days, None, None)
    rate = _slope(points)
    if rate <= 1e-9:
        return Forecast(pool, target, newest.percent, span_days, rate, None)
    # From the fitted line's value now, not the newest noisy reading.
    fitted_now = _fitted(points, rate, now)
    left = max(0.0, (target - fitted_now) / rate)
    return Forecast(pool, target, newest.percent, span_days, rate, left)


def _days_since(point: CapacityPoint, origin: datetime) -> float:
    return (point.at - origin).total_seconds() / 86400


def _slope(points: Sequence[CapacityPoint]) -> float:
    """Least-squares slope of percent over days."""
    origin = points[0].at
    xs = [_days_since(p, origin) for p in points]
    ys = [p.percent for p in points]
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def _fitted(points: Sequence[CapacityPoint], rate: float, now: datetime) -> float:
    origin = points[0].at
    xs = [_days_since(p, origin) for p in points]
    ys = [p.percent for p in points]
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    return mean_y + rate * ((now - origin).total_seconds() / 86400 - mean_x)
