"""The fill forecast against synthetic capacity histories with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixmox.core.verdict import Status
from nixmox.pool.checks import forecast_check
from nixmox.pool.forecast import CapacityPoint, forecast

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SIZE = 8 * 2**40


def line(
    start_percent: float, per_day: float, days: int, every_hours: int = 24
) -> list[CapacityPoint]:
    """Readings on an exact straight line ending now."""
    points = []
    for hours in range(0, days * 24 + 1, every_hours):
        at = NOW - timedelta(hours=days * 24 - hours)
        percent = start_percent + per_day * hours / 24
        points.append(CapacityPoint(at, round(SIZE * percent / 100), SIZE))
    return points


def test_the_example_from_the_issue() -> None:
    # 49% now, +1%/day for the last 30 days: 90% in 41 days.
    fc = forecast("tank", line(19.0, 1.0, 30), NOW, days=30, target=90)
    assert fc is not None and fc.days_left == pytest.approx(41, abs=0.01)
    assert fc.words == "at the last 30 days' rate (+1.00%/day), 90% in 41 days (49% used now)"
    check = forecast_check(fc, timedelta(days=60))
    assert check.status is Status.WARN and "zfs list -o space -r tank" in check.fix
    assert forecast_check(fc, timedelta(days=30)).status is Status.PASS


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(min_value=1, max_value=60),
    per_day=st.floats(min_value=0.01, max_value=3),
    days=st.integers(min_value=2, max_value=60),
    every=st.sampled_from([1, 6, 24]),
    target=st.integers(min_value=70, max_value=99),
)
def test_a_straight_line_gives_its_own_answer(
    start: float, per_day: float, days: int, every: int, target: int
) -> None:
    history = line(start, per_day, days, every)
    now_percent = start + per_day * days
    fc = forecast("p", history, NOW, days=30, target=target)
    assert fc is not None
    if now_percent >= target:
        assert fc.days_left == 0
        return
    assert fc.rate_per_day == pytest.approx(per_day, rel=1e-3, abs=1e-4)
    expected = (target - now_percent) / per_day
    assert fc.days_left == pytest.approx(expected, rel=1e-3, abs=0.05)
    # Only the last 30 days count, however long the history.
    assert fc.span_days <= 30 + 1e-9


@given(percent=st.floats(min_value=1, max_value=89), days=st.integers(min_value=1, max_value=60))
def test_a_flat_or_shrinking_pool_is_not_filling(percent: float, days: int) -> None:
    for per_day in (0.0, -0.5):
        fc = forecast("p", line(percent, per_day, days), NOW, days=30, target=90)
        assert fc is not None
        if fc.rate_per_day is not None:
            assert fc.days_left is None and "not filling" in fc.words
            assert forecast_check(fc, timedelta(days=3650)).status is Status.PASS


def test_too_little_history_says_so() -> None:
    assert forecast("p", [], NOW) is None
    fc = forecast("p", line(40, 5, 0), NOW)
    assert fc is not None and fc.rate_per_day is None and fc.days_left is None
    assert "not enough history" in fc.words
    assert forecast_check(fc, timedelta(days=60)).status is Status.INFO


def test_the_fit_is_not_fooled_by_one_noisy_reading() -> None:
    history = line(30, 0.5, 30)
    spike = history[15]
    history[15] = CapacityPoint(spike.at, spike.allocated + SIZE // 20, SIZE)  # +5 points once
    fc = forecast("p", history, NOW, days=30, target=90)
    assert fc is not None and fc.rate_per_day == pytest.approx(0.5, abs=0.05)
