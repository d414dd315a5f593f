"""Process helpers shared by the peer wrappers.

Every wait here is bounded: a peer that hangs must fail a test, never the
whole run.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self


class PeerError(RuntimeError):
    """A peer program failed to start or answer in time."""


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: SIGTERM the child when the test process dies.

    Teardown covers normal exits and Ctrl-C; this covers pytest being
    SIGKILLed (a CI timeout), which would otherwise leave root daemons
    running. The setting survives exec, so it reaches the daemon itself.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM ``proc``, wait, SIGKILL if it ignores that; always reap it.

    Reaping (``wait``) matters: an unreaped child stays a zombie, which still
    shows up in ``ps`` and answers ``kill(pid, 0)``.
    """
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=timeout)


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``ready`` until it is true; fail early if ``proc`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"{what}: exited with {proc.returncode}{_tail(log)}")
        if time.monotonic() >= deadline:
            raise PeerError(f"{what}: not ready after {timeout:g}s{_tail(log)}")
        time.sleep(interval)


def _tail(log: Path | None, lines: int = 20) -> str:
    """The end of a peer's log, for error messages that explain themselves."""
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n" + "\n".join(text) if text else ""


class Daemon:
    """Lifecycle shared by the peer daemons: a temp dir, one process, cleanup.

    Subclasses set ``name`` (for messages and the temp dir's prefix) and
    implement ``_start()``, which runs with ``tmp`` created and must set
    ``proc``. ``start()`` undoes a half-done start; ``stop()`` runs
    ``_before_stop()`` while the daemon is still alive, then stops it and
    removes ``tmp``. Use as a context manager or with ``start()``/``stop()``.
    """

    name: ClassVar[str]
    tmp_prefix: ClassVar[str]
    stop_timeout: ClassVar[float] = 10.0

    def __init__(self) -> None:
        self.tmp: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """PID of the daemon process."""
        if self.proc is None:
            raise PeerError(f"{self.name} is not running")
        return self.proc.pid

    @property
    def _tmp(self) -> Path:
        if self.tmp is None:
            raise PeerError(f"{self.name} is not running")
        return self.tmp

    def start(self) -> Self:
        """Create the temp dir and run ``_start()``; on failure, clean up."""
        if self.proc is not None:
            raise PeerError(f"{self.name} already started")
        self.tmp = Path(tempfile.mkdtemp(prefix=f"nixmox-{self.tmp_prefix}-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def _before_stop(self) -> None:
        """Hook: runs in ``stop()`` only while the daemon is still alive."""

    def stop(self) -> None:
        """Run ``_before_stop()``, stop the daemon, remove the temp dir."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self._before_stop()
        finally:
            stop_process(self.proc, timeout=self.stop_timeout)
            self.proc = None
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
