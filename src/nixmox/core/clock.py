"""Time as nixmox reads it: the one seam for deadlines, waits and "now".

Every job or waiter that polls until something happens takes a :class:`Clock`
(the real one by default), so a test can let hours of waiting pass in an
instant without patching the ``time`` module.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Where a job reads the time and waits."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: deadlines are measured on it."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def now(self) -> datetime:
        """The wall-clock time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)


#: The default of every ``clock`` parameter (it holds no state).
SYSTEM_CLOCK: Clock = SystemClock()
