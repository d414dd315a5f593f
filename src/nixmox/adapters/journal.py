"""nixmox's state directory: the run journal (SQLite) and the runs' locks.

``NIXMOX_STATE_DIR`` overrides the default ``/var/lib/nixmox``. Every job run
is one journal row (command, start, end, result, a JSON summary); jobs that
change the lab hold the locks of what they touch (:mod:`nixmox.adapters.locks`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixmox.adapters.locks import Claim, LockSet, job_claim, process_alive
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.files import open_private
from nixmox.core.text import printable_data

DEFAULT_STATE_DIR = Path("/var/lib/nixmox")
log = logging.getLogger(__name__)


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where state lives: ``$NIXMOX_STATE_DIR`` or ``/var/lib/nixmox``."""
    env = os.environ if environ is None else environ
    configured = env.get("NIXMOX_STATE_DIR")
    return Path(configured) if configured else DEFAULT_STATE_DIR


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory (mode 0700: the journal can name hosts), or check it.

    Someone else who can write into it could plant links where nixmox writes as
    root, so a directory writable by group or others, or owned by another user,
    is refused; one readable by others is tightened to 0700.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise NixmoxError(
            f"cannot create the state directory {path}: {exc.strerror} (set NIXMOX_STATE_DIR)"
        ) from None
    if info.st_uid not in (0, os.getuid()):
        raise NixmoxError(
            f"state directory {path} belongs to uid {info.st_uid}, not to the user running "
            f"nixmox; refusing to use it (fix with: chown {os.getuid()} {path})"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise NixmoxError(
            f"state directory {path} is writable by group or others "
            f"(mode {stat.filemode(info.st_mode)}); refusing to use it (fix with: chmod 700 {path})"
        )
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        # A read-only state directory says so at its first write.
        with contextlib.suppress(OSError):
            path.chmod(0o700)
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


#: The journal's file name inside the state directory.
JOURNAL_FILE = "journal.sqlite3"


class Journal:
    """The run journal: ``journal.sqlite3`` in the state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = ensure_state_dir(directory) / JOURNAL_FILE
        # Created 0600 and never through a link; sqlite opens it afterwards.
        os.close(open_private(self.path))
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            # The journal never blocks the work: a damaged file is kept for a look, not reused.
            aside = self.path.with_name(
                f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
            )
            try:
                self.path.rename(aside)
                os.close(open_private(self.path))
                self._db = self._open()
            except (OSError, sqlite3.Error) as again:
                raise NixmoxError(
                    f"{self.path}: the run journal is damaged ({exc}) and cannot be moved "
                    f"aside ({again}); move it away by hand"
                ) from None
            log.warning(
                "the run journal %s was damaged (%s); moved it to %s and started a new one",
                self.path,
                exc,
                aside,
            )
        self._mark_vanished()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            # A truncated or overwritten file often opens fine; reading it all tells.
            if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("quick_check failed")
        except sqlite3.OperationalError as exc:
            db.close()
            if "malformed" in str(exc) or "not a database" in str(exc):
                raise sqlite3.DatabaseError(str(exc)) from None
            raise NixmoxError(f"{self.path}: cannot open the run journal: {exc}") from None
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _mark_vanished(self) -> None:
        """A run left ``running`` by a process that is gone (SIGKILL, a crash) was interrupted."""
        try:
            rows = self._db.execute(
                "SELECT id, pid FROM runs WHERE ended IS NULL AND pid != ?", (os.getpid(),)
            ).fetchall()
            for run_id, pid in rows:
                if process_alive(int(pid)):
                    continue
                note = {
                    "error": f"process {pid} ended without finishing the run (killed?)",
                    "vanished": True,  # ended by this, not by the run: it told nobody
                }
                self._db.execute(
                    "UPDATE runs SET ended = ?, result = 'interrupted', summary = ?"
                    " WHERE id = ? AND ended IS NULL",
                    (time.time(), json.dumps(note), run_id),
                )
        except sqlite3.Error as exc:  # a read-only journal still reads
            log.debug("cannot mark vanished runs in %s: %s", self.path, exc)

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
            (
                time.time(),
                result,
                # Guests and the API write some of it: no terminal escapes are stored.
                json.dumps(printable_data(summary), sort_keys=True, default=str),
                run_id,
            ),
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
        return [run for r in rows if (run := _run(r)) is not None]

    def latest(self) -> dict[str, Run]:
        """The newest finished run of each command."""
        rows = self._db.execute(
            "SELECT id, command, started, ended, result, summary, pid FROM runs AS r"
            " WHERE ended IS NOT NULL AND id = (SELECT id FROM runs WHERE command = r.command"
            " AND ended IS NOT NULL ORDER BY started DESC, id DESC LIMIT 1)"
        ).fetchall()
        return {run.command: run for r in rows if (run := _run(r)) is not None}

    def totals(self) -> dict[tuple[str, str], int]:
        """How many finished runs each command had, by result."""
        rows = self._db.execute(
            "SELECT command, result, COUNT(*) FROM runs WHERE ended IS NOT NULL"
            " GROUP BY command, result"
        ).fetchall()
        return {(r[0], r[1]): int(r[2]) for r in rows}


def _run(row: tuple[Any, ...]) -> Run | None:
    """One row as a :class:`Run`; a row whose summary cannot be read is skipped."""
    try:
        summary = json.loads(row[5])
    except (TypeError, ValueError):
        log.warning("run %s in the journal has an unreadable summary; skipped", row[0])
        return None
    if not isinstance(summary, dict):
        return None
    return Run(row[0], row[1], row[2], row[3], row[4], summary, row[6])


@dataclass
class JobRun:
    """What a job reports about its run; filled in while it runs."""

    command: str
    summary: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"


@contextlib.contextmanager
def job_run(
    directory: Path,
    command: str,
    *,
    claims: Iterable[Claim] = (),
    lock_wait: float = 30.0,
    report: Callable[[str], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Iterator[JobRun]:
    """Hold the run's locks and journal one run of ``command``.

    The locks are ``command``'s own (two runs of one job never overlap) and
    ``claims`` (the guests, nodes and dataset trees it touches), waited for at
    most ``lock_wait`` seconds with ``report`` told what is awaited. The run's
    result is what the job sets (``ok``, ``failed``, ...); an exception
    records ``error`` with its message and propagates. After a stop request
    (SIGINT/SIGTERM) the run is ``interrupted``, with what the job reported
    (what finished, what was skipped); a second signal journals it as stopped
    at once before the process ends.
    """
    interrupt.reset()
    state: dict[str, Any] = {}

    def last_words(signum: int) -> None:
        journal, run_id, run = state.get("journal"), state.get("id"), state.get("run")
        left = interrupt.still_running_lines()
        with contextlib.suppress(OSError):
            os.write(2, "".join(f"nixmox: {line}\n" for line in left).encode())
        if journal is not None and run_id is not None and run is not None:
            summary = {**run.summary, "interrupted": interrupt.signal_name()}
            summary["error"] = f"stopped at once by a second {signal.Signals(signum).name}"
            _note_still_running(summary)
            journal.finish(run_id, "interrupted", summary)

    with interrupt.handling(last_words):
        where = ensure_state_dir(directory)
        if not os.access(where, os.W_OK):
            raise _unwritable(where, "read-only or not writable")
        locks = LockSet(where, command, clock)
        locks.acquire([job_claim(command), *claims], lock_wait, report)
        try:
            # Before anything is changed: a read-only or full state directory is one clear line.
            check_writable(where)
            journal = Journal(directory)
            try:
                run_id = journal.start(command)
            except sqlite3.Error as exc:
                journal.close()
                raise _unwritable(where, str(exc)) from None
        except BaseException:
            locks.release()
            raise
        run = JobRun(command)
        state.update(journal=journal, id=run_id, run=run)
        try:
            yield run
        except BaseException as exc:
            run.summary.setdefault("error", str(exc) or type(exc).__name__)
            if interrupt.stopping():
                run.summary["interrupted"] = interrupt.signal_name()
            result = "interrupted" if interrupt.stopping() else "error"
            _note_still_running(run.summary)
            _finish(journal, run_id, result, run.summary)
            raise
        else:
            if interrupt.stopping():
                run.result = "interrupted"
                run.summary["interrupted"] = interrupt.signal_name()
            _note_still_running(run.summary)
            _finish(journal, run_id, run.result, run.summary)
        finally:
            state.clear()
            journal.close()
            locks.release()


def _note_still_running(summary: dict[str, Any]) -> None:
    """Name the server-side tasks the run did not see end (``history`` shows them)."""
    left = interrupt.still_running()
    if left:
        summary["still_running"] = [{"upid": u, "what": w} for u, w in left.items()]


def _finish(journal: Journal, run_id: int, result: str, summary: Mapping[str, Any]) -> None:
    """Journal how the run ended; a failing write never hides the job's own result."""
    try:
        journal.finish(run_id, result, summary)
    except (sqlite3.Error, OSError) as exc:
        log.warning(
            "the run finished (%s) but the journal %s could not record it: %s",
            result,
            journal.path,
            exc,
        )


def _unwritable(directory: Path, why: str) -> NixmoxError:
    return NixmoxError(
        f"state directory {directory} is not writable ({why}); nothing was changed. "
        "Free space there or make it writable (or point NIXMOX_STATE_DIR elsewhere), then re-run"
    )


def check_writable(directory: Path) -> None:
    """Write, sync and remove a small probe file, so a read-only or full directory is found
    before the job changes anything (not when the journal is written at the end)."""
    probe = directory / f".probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, b"\0" * 16384)  # room for the run's journal row and its summary
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _unwritable(directory, exc.strerror or str(exc)) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
