"""nixmox's state directory: the run journal (SQLite) and the run lock.

``NIXMOX_STATE_DIR`` overrides the default ``/var/lib/nixmox``. Every job run
is one journal row (command, start, end, result, a JSON summary); jobs that
change the lab hold one lock (``flock``) so two runs never overlap, and a
second run says which PID and command holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import LockBusy, NixmoxError

DEFAULT_STATE_DIR = Path("/var/lib/nixmox")


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where state lives: ``$NIXMOX_STATE_DIR`` or ``/var/lib/nixmox``."""
    env = os.environ if environ is None else environ
    configured = env.get("NIXMOX_STATE_DIR")
    return Path(configured) if configured else DEFAULT_STATE_DIR


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory (mode 0700: the journal can name hosts)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise NixmoxError(
            f"cannot create the state directory {path}: {exc.strerror} (set NIXMOX_STATE_DIR)"
        ) from None
    return path


@dataclass(frozen=True)
class Run:
    """One journal row."""

    id: int
    command: str
    started: float
    ended: float | None
    result: str | None
    summary: dict[str, Any]
    pid: int

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    result TEXT,
    summary TEXT NOT NULL DEFAULT '{}',
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_command_started ON runs (command, started);
"""


class Journal:
    """The run journal: ``journal.sqlite3`` in the state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = ensure_state_dir(directory) / "journal.sqlite3"
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise NixmoxError(f"{self.path}: cannot open the run journal: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def start(self, command: str) -> int:
        """Record that ``command`` started now; return the run id."""
        cur = self._db.execute(
            "INSERT INTO runs (command, started, pid) VALUES (?, ?, ?)",
            (command, time.time(), os.getpid()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish(self, run_id: int, result: str, summary: Mapping[str, Any]) -> None:
        """Record how run ``run_id`` ended."""
        self._db.execute(
            "UPDATE runs SET ended = ?, result = ?, summary = ? WHERE id = ?",
            (time.time(), result, json.dumps(summary, sort_keys=True, default=str), run_id),
        )

    def runs(
        self, command: str | None = None, limit: int = 50, *, exact: bool = False
    ) -> list[Run]:
        """The newest runs first, optionally of one command (``backup``, ``update nixos``).

        ``backup`` also matches ``backup verify`` unless ``exact``.
        """
        query = "SELECT id, command, started, ended, result, summary, pid FROM runs"
        args: tuple[Any, ...] = ()
        if command is not None and exact:
            query += " WHERE command = ?"
            args = (command,)
        elif command is not None:
            query += " WHERE command = ? OR command LIKE ?"
            args = (command, command + " %")
        query += " ORDER BY started DESC, id DESC LIMIT ?"
        rows = self._db.execute(query, (*args, limit)).fetchall()
        return [Run(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def latest(self) -> dict[str, Run]:
        """The newest finished run of each command."""
        rows = self._db.execute(
            "SELECT id, command, started, ended, result, summary, pid FROM runs AS r"
            " WHERE ended IS NOT NULL AND id = (SELECT id FROM runs WHERE command = r.command"
            " AND ended IS NOT NULL ORDER BY started DESC, id DESC LIMIT 1)"
        ).fetchall()
        return {r[1]: Run(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows}

    def totals(self) -> dict[tuple[str, str], int]:
        """How many finished runs each command had, by result."""
        rows = self._db.execute(
            "SELECT command, result, COUNT(*) FROM runs WHERE ended IS NOT NULL"
            " GROUP BY command, result"
        ).fetchall()
        return {(r[0], r[1]): int(r[2]) for r in rows}


class StateLock:
    """One exclusive lock per state directory, held for a whole job run."""

    def __init__(self, directory: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = ensure_state_dir(directory) / "lock"
        self.clock = clock
        self._fd: int | None = None

    def acquire(self, command: str, wait: float = 30.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for another run to end."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = self.clock.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self.clock.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise LockBusy(
                        f"another nixmox run holds {self.path}: {holder}; gave up after {wait:g} s"
                    ) from None
                self.clock.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}).encode(),
            0,
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"PID {info['pid']} (nixmox {info['command']}, since {since})"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


@dataclass
class JobRun:
    """What a job reports about its run; filled in while it runs."""

    command: str
    summary: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"


@contextlib.contextmanager
def job_run(directory: Path, command: str, *, lock_wait: float = 30.0) -> Iterator[JobRun]:
    """Hold the lock and journal one run of ``command``.

    The run's result is what the job sets (``ok``, ``failed``, ...); an
    exception records ``error`` with its message and propagates.
    """
    lock = StateLock(directory)
    lock.acquire(command, lock_wait)
    journal = Journal(directory)
    run = JobRun(command)
    run_id = journal.start(command)
    try:
        yield run
    except BaseException as exc:
        run.summary.setdefault("error", str(exc) or type(exc).__name__)
        journal.finish(run_id, "error", run.summary)
        raise
    else:
        journal.finish(run_id, run.result, run.summary)
    finally:
        journal.close()
        lock.release()
