"""Progress of long operations, as they go: one reporter per run, passed down to the jobs.

A job names what it starts (``backing up nixos-vm``), what it learns while
that runs (vzdump's own ``42% ... read: 205 MiB/s``) and how it ended; single
steps in between are one line each. Three ways to show it:

- :data:`SILENT` (``-q``, and the default of every job parameter);
- :class:`Lines`: plain, timestamped lines on stderr for the systemd journal
  and pipes, each activity's news as it comes and, when there is none,
  ``Still backing up nixos-vm... [10s elapsed]`` every :data:`STILL_EVERY`
  seconds (also while one long command runs: a ticker thread looks);
- :class:`Live`: a rich live display on a terminal, one spinner line per
  activity with its latest news and elapsed time, finished lines above it.

Progress goes to stderr only: ``--json`` output on stdout is never touched.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from nixmox.core.clock import SYSTEM_CLOCK, Clock, SystemClock
from nixmox.core.text import printable

#: Seconds without news after which an activity says it is still running.
STILL_EVERY = 10.0


class Progress:
    """The reporter interface, and the silent reporter itself."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop showing (a live display ends here)."""

    def step(self, text: str) -> None:
        """One thing done or about to be done."""

    def start(self, key: str, text: str) -> None:
        """An activity begins (``key`` names it in later calls): ``backing up nixos-vm``."""

    def update(self, key: str, news: str | None = None) -> None:
        """What the activity reports now (``None``: no news, only time passed)."""

    def end(self, key: str, text: str) -> None:
        """The activity ended, ``text`` says how."""


#: Shows nothing.
SILENT = Progress()


@dataclass
class _Activity:
    text: str
    started: float
    told: float  # when a line about it was last printed
    news: str = ""


class Lines(Progress):
    """Plain timestamped lines (``2026-12-04 18:40:52 backing up nixos-vm``)."""

    def __init__(
        self,
        stream: IO[str],
        clock: Clock = SYSTEM_CLOCK,
        still_every: float = STILL_EVERY,
        *,
        ticker: float | None = None,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.still_every = still_every
        self._activities: dict[str, _Activity] = {}
        self._lock = threading.Lock()
        # A job says "still" when it looks at what it waits for (a task's log, a
        # scrub's state); one long command (apt's dist-upgrade, a NixOS build, a
        # stalled zfs send) gives it no such moment. With ``ticker`` set, a thread
        # looks every ``ticker`` seconds and says "Still ..." for any activity
        # that has been quiet for ``still_every``.
        self._ticker = ticker
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def _print(self, text: str) -> None:
        stamp = self.clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        try:
            self.stream.write(f"{stamp} {printable(text)}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # progress never fails the work it reports

    def step(self, text: str) -> None:
        with self._lock:
            self._print(text)

    def start(self, key: str, text: str) -> None:
        with self._lock:
            now = self.clock.monotonic()
            self._activities[key] = _Activity(text, now, now)
            self._print(text)
            if self._ticker is not None and self._thread is None:
                self._thread = threading.Thread(
                    target=self._tick, name="nixmox-progress", daemon=True
                )
                self._thread.start()

    def update(self, key: str, news: str | None = None) -> None:
        with self._lock:
            activity = self._activities.get(key)
            if activity is None:
                return
            now = self.clock.monotonic()
            if news and news != activity.news:
                activity.news, activity.told = news, now
                self._print(f"{key}: {news} {_elapsed(activity, now)}")
            else:
                self._still(activity, now)

    def _still(self, activity: _Activity, now: float) -> None:
        """``Still ...`` when the activity has been quiet long enough (lock held)."""
        if now - activity.told >= self.still_every:
            activity.told = now
            self._print(f"Still {activity.text}... {_elapsed(activity, now)}")

    def _tick(self) -> None:
        assert self._ticker is not None
        while not self._stopped.wait(self._ticker):
            with self._lock:
                now = self.clock.monotonic()
                for activity in list(self._activities.values()):
                    self._still(activity, now)

    def end(self, key: str, text: str) -> None:
        with self._lock:
            self._activities.pop(key, None)
            self._print(text)

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _elapsed(activity: _Activity, now: float) -> str:
    return f"[{now - activity.started:.0f}s elapsed]"


class Live(Progress):
    """A rich live display: a spinner line per running activity, finished lines above."""

    def __init__(self, console: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        from rich.progress import Progress as RichProgress
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.clock = clock
        self._bar = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[news]}", style="dim"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._shown = False

    def _show(self) -> None:
        if not self._shown:
            self._bar.start()
            self._shown = True

    def close(self) -> None:
        with self._lock:
            if self._shown:
                self._bar.stop()
                self._shown = False

    def step(self, text: str) -> None:
        with self._lock:
            self._bar.console.print(printable(text), markup=False, highlight=False)

    def start(self, key: str, text: str) -> None:
        with self._lock:
            self._show()
            self._tasks[key] = self._bar.add_task(printable(text), total=None, news="")

    def update(self, key: str, news: str | None = None) -> None:
        with self._lock:
            task = self._tasks.get(key)
            if task is not None and news:
                self._bar.update(task, news=printable(news))

    def end(self, key: str, text: str) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
            if task is not None:
                self._bar.remove_task(task)
            self._bar.console.print(printable(text), markup=False, highlight=False)


_quiet = {"on": True}


def configure(verbosity: int) -> None:
    """Set by the command line: ``-q`` (verbosity -1) shows no progress."""
    _quiet["on"] = verbosity < 0


def for_stderr(clock: Clock = SYSTEM_CLOCK) -> Progress:
    """The reporter for this process: silent with ``-q`` (and when no command line
    configured one), a live display when stderr is a terminal, lines otherwise."""
    if _quiet["on"]:
        return SILENT
    if sys.stderr.isatty():
        from rich.console import Console

        return Live(Console(stderr=True), clock)
    # The ticker runs on real time: a clock a test passes in moves only when the
    # job moves it, and the job says "still" itself at each of its waits.
    real = isinstance(clock, SystemClock)
    return Lines(sys.stderr, clock, STILL_EVERY, ticker=min(1.0, STILL_EVERY / 4) if real else None)
