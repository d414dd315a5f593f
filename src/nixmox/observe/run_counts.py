"""Run counts that only ever grow: the state behind nixmox's ``_total`` counters.

A Prometheus counter may never go down, but the journal it is read from can
lose rows (pruned) or be replaced (a damaged journal moved aside, issue 15).
So the counts live in their own file in the state directory,
``metrics-counters.json``, and each journal row is added to them once, when it
is first seen finished.

The journal's row ids only grow within one journal file (SQLite
AUTOINCREMENT). :class:`Tally` remembers a floor (every finished row below it
is counted), the ids at or above it already counted (rows can finish out of
order when runs overlap), and the id and start time of the newest row seen: when
that row is no longer in the journal as it was, the journal was replaced and
its rows are all new.

:func:`first` and :func:`advance` are pure; :func:`update` reads and writes the
file under a lock, as two runs can end at the same moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.core.errors import NixmoxError
from nixmox.core.files import open_private, write_atomically

log = logging.getLogger(__name__)

FILE = "metrics-counters.json"
_VERSION = 1

#: (command, result) -> runs
RunCounts = dict[tuple[str, str], int]
#: (id, name) of a guest or node -> updates rolled back
RollbackCounts = dict[tuple[str, str], int]
#: The (id, name) of each target a run rolled back.
RollbacksOf = Callable[[Run], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class Tally:
    """Counts so far, and which journal rows they already include."""

    runs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    rollbacks: Mapping[tuple[str, str], int] = field(default_factory=dict)
    floor: int = 0
    counted: frozenset[int] = frozenset()
    newest: tuple[int, float] | None = None  # (id, started) of the newest row seen


def _result(run: Run) -> str:
    return run.result or "unknown"


def first(
    window: Sequence[Run], totals: Mapping[tuple[str, str], int], rollbacks_of: RollbacksOf
) -> Tally:
    """A tally started from a journal: ``totals`` of all its finished rows, and
    ``window`` (its newest rows, newest first) for the rows still running."""
    rollbacks: RollbackCounts = {}
    for run in window:
        if run.ended is not None:
            for labels in rollbacks_of(run):
                rollbacks[labels] = rollbacks.get(labels, 0) + 1
    runs = {(command, result or "unknown"): n for (command, result), n in totals.items()}
    counted = frozenset(r.id for r in window if r.ended is not None)
    return _moved_on(Tally(runs, rollbacks, 0, counted), window)


def advance(tally: Tally, window: Sequence[Run], rollbacks_of: RollbacksOf) -> Tally:
    """``tally`` with every finished row of ``window`` (newest first) it did not count yet."""
    if tally.newest is not None and not _still_there(tally.newest, window):
        # Another journal (the old one moved aside): its rows are all new to us.
        tally = replace(tally, floor=0, counted=frozenset())
    runs = dict(tally.runs)
    rollbacks = dict(tally.rollbacks)
    counted = set(tally.counted)
    for run in window:
        if run.ended is None or run.id < tally.floor or run.id in counted:
            continue
        key = (run.command, _result(run))
        runs[key] = runs.get(key, 0) + 1
        for labels in rollbacks_of(run):
            rollbacks[labels] = rollbacks.get(labels, 0) + 1
        counted.add(run.id)
    return _moved_on(Tally(runs, rollbacks, tally.floor, frozenset(counted), tally.newest), window)


def _still_there(newest: tuple[int, float], window: Sequence[Run]) -> bool:
    row_id, started = newest
    return any(r.id == row_id and r.started == started for r in window)


def _moved_on(tally: Tally, window: Sequence[Run]) -> Tally:
    """Raise the floor to the oldest row still running (or past the newest row)."""
    if not window:
        return tally
    running = [r.id for r in window if r.ended is None and r.id >= tally.floor]
    # A row older than the window is out of sight: it can no longer be counted.
    floor = max(tally.floor, min(r.id for r in window))
    floor = min(running) if running else max(floor, max(r.id for r in window) + 1)
    newest = max(window, key=lambda r: r.id)
    return Tally(
        tally.runs,
        tally.rollbacks,
        floor,
        frozenset(i for i in tally.counted if i >= floor),
        (newest.id, newest.started),
    )


# -- the file --------------------------------------------------------------------


def _to_json(tally: Tally) -> dict[str, Any]:
    return {
        "version": _VERSION,
        "runs": sorted([c, r, n] for (c, r), n in tally.runs.items()),
        "rollbacks": sorted([i, name, n] for (i, name), n in tally.rollbacks.items()),
        "floor": tally.floor,
        "counted": sorted(tally.counted),
        "newest": list(tally.newest) if tally.newest is not None else None,
    }


def _from_json(data: Any) -> Tally:
    """The tally in ``data``; ValueError/TypeError/KeyError when it is not one."""
    if data.get("version") != _VERSION:
        raise ValueError(f"version {data.get('version')!r}")
    newest = data["newest"]
    return Tally(
        {(str(c), str(r)): int(n) for c, r, n in data["runs"]},
        {(str(i), str(name)): int(n) for i, name, n in data["rollbacks"]},
        int(data["floor"]),
        frozenset(int(i) for i in data["counted"]),
        None if newest is None else (int(newest[0]), float(newest[1])),
    )


def load(path: Path) -> Tally | None:
    """The tally saved at ``path``; None when there is none or it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NixmoxError(f"{path}: cannot read the run counters: {exc.strerror}") from None
    try:
        return _from_json(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("%s: unreadable (%s); counting again from the journal", path, exc)
        return None


def save(path: Path, tally: Tally) -> None:
    """Write ``tally`` to ``path`` atomically, private (a fresh temporary file renamed
    over it: never through a link planted in the state directory)."""
    try:
        write_atomically(path, json.dumps(_to_json(tally)).encode(), 0o600)
    except NixmoxError as exc:
        raise NixmoxError(f"{path}: cannot write the run counters: {exc}") from None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = open_private(directory / (FILE + ".lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(
    directory: Path,
    window: Sequence[Run],
    totals: Callable[[], Mapping[tuple[str, str], int]],
    rollbacks_of: RollbacksOf,
) -> Tally:
    """Add the newly finished rows of ``window`` to the counts saved in ``directory``.

    Without a saved tally the counts start from the journal's ``totals()``.
    """
    path = directory / FILE
    with _locked(directory):
        saved = load(path)
        tally = (
            first(window, totals(), rollbacks_of)
            if saved is None
            else advance(saved, window, rollbacks_of)
        )
        if tally != saved:
            save(path, tally)
    return tally
