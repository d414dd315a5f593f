"""A stop request (SIGINT, SIGTERM) that jobs poll instead of being torn apart.

The runtime installs :func:`handling` around a journaled run. The first signal
only sets a flag: loops ask :func:`stopping` before they start the next guest,
dataset or step, so whatever is in flight reaches a safe point and the run
reports what finished and what was skipped. A second signal ends the process at
once, after the runtime's last words (the journal row) are written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from nixmox.core.errors import NixmoxError

_HANDLED = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_last_words: list[Callable[[int], None]] = []
# Server-side tasks (UPID -> what) being waited for, and those left without seeing their end.
_in_flight: dict[str, str] = {}
_left: dict[str, str] = {}
_tasks_lock = threading.Lock()


class Interrupted(NixmoxError):
    """Work not started (or given up) because a stop was requested."""

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)
        self.exit_code = exit_code() or 130


def stopping() -> bool:
    """Whether a stop was requested: start nothing new."""
    return bool(_received)


def raise_if_stopping(what: str = "") -> None:
    """Raise :class:`Interrupted` when a stop was requested (``what`` was not started)."""
    if _received:
        raise Interrupted(f"interrupted by {signal_name()}" + (f"; {what}" if what else ""))


def signal_name() -> str:
    """``SIGINT``/``SIGTERM`` of the first stop request ("" without one)."""
    return signal.Signals(_received[0]).name if _received else ""


def exit_code() -> int | None:
    """The shell's code for the first stop request: 130 (SIGINT), 143 (SIGTERM)."""
    return 128 + _received[0] if _received else None


def reset() -> None:
    """Forget stop requests and tasks (a new run in the same process, e.g. a test)."""
    _received.clear()
    with _tasks_lock:
        _in_flight.clear()
        _left.clear()


@contextlib.contextmanager
def server_task(task_id: str, what: str) -> Iterator[None]:
    """Mark a task that runs on the server (a Proxmox UPID) as awaited inside the block.

    Leaving the block by an exception (a timeout, the API gone, the process
    told to stop) means the task was not seen to finish: it is reported as
    possibly still running, so a report never says "nothing left running"
    while a vzdump or a restore goes on.
    """
    with _tasks_lock:
        _in_flight[task_id] = what
    finished = False
    try:
        yield
        finished = True
    finally:
        with _tasks_lock:
            _in_flight.pop(task_id, None)
            if not finished:
                _left[task_id] = what


def still_running() -> dict[str, str]:
    """Server-side tasks not seen to finish (UPID -> what): awaited now, or given up on."""
    with _tasks_lock:
        return {**_left, **_in_flight}


def still_running_lines() -> list[str]:
    """:func:`still_running` for a person: one line per task."""
    return [
        f"still running on the server: {what} ({upid})" for upid, what in still_running().items()
    ]


def _handle(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    if len(_received) == 1:
        # Written straight to the file descriptor: a print could be mid-write.
        with contextlib.suppress(OSError):
            os.write(
                2,
                f"nixmox: {signal.Signals(signum).name}: finishing what is in flight, "
                "starting nothing new (again to stop at once)\n".encode(),
            )
        return
    for words in list(_last_words):
        with contextlib.suppress(Exception):
            words(signum)
    os._exit(128 + _received[0])


@contextlib.contextmanager
def handling(last_words: Callable[[int], None] | None = None) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into stop requests while inside (only in the main thread).

    ``last_words`` runs before a second signal ends the process.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _HANDLED}
    if last_words is not None:
        _last_words.append(last_words)
    for s in _HANDLED:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if last_words is not None:
            _last_words.remove(last_words)
