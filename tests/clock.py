"""A clock for tests: time passes only when the code under test sleeps."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class FakeClock:
    """A :class:`nixmox.core.clock.Clock` whose ``sleep`` returns at once and moves time on.

    ``slept`` lists every wait asked for, so a test can check how a job polls.
    Jobs that wait in several threads (one per node) share it safely.
    """

    t: float = 0.0
    start: datetime = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
    slept: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.t += seconds

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)
