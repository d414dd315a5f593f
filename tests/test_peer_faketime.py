"""faketime sets the clock of a child process (how days of snapshots are simulated)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.peer


def _run(faketime_bin: str, tz: str, *argv: str) -> str:
    env = {**os.environ, "TZ": tz}
    result = subprocess.run(
        [faketime_bin, "2026-01-01 03:00:00", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def test_fakes_the_date_in_utc(faketime_bin: str) -> None:
    # faketime reads the given time in the local zone (TZ), so pin TZ=UTC
    # for a deterministic instant; the real clock is nowhere near 2026-01-01.
    assert _run(faketime_bin, "UTC", "date", "-u", "+%F") == "2026-01-01"
    stamp = _run(faketime_bin, "UTC", "date", "-u", "+%F %H:%M")
    assert stamp == "2026-01-01 03:00"


def test_start_time_is_local_time(faketime_bin: str) -> None:
    # POSIX "UTC-14" is UTC+14 (no tzdata needed): 03:00 there is 13:00 UTC
    # the day before. Callers must set TZ to get the instant they mean.
    assert _run(faketime_bin, "UTC-14", "date", "-u", "+%F %H:%M") == "2025-12-31 13:00"
    assert _run(faketime_bin, "UTC-14", "date", "+%F %H:%M") == "2026-01-01 03:00"


def test_python_child_sees_the_fake_clock(faketime_bin: str) -> None:
    # nixmox itself is Python: check time.time() is faked too, not just date(1).
    code = "import time; print(time.strftime('%Y-%m-%d', time.gmtime(time.time())))"
    assert _run(faketime_bin, "UTC", sys.executable, "-c", code) == "2026-01-01"
