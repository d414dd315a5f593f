"""Run locks by what they protect: a job, a guest, a node, a ZFS dataset tree.

Each protected thing is one ``flock`` file under ``STATE/locks/``. A run
claims what it touches before it changes anything, all at once and in one
order (so two runs never wait on each other in a circle):

- ``job:NAME`` exclusive: two runs of the same job never overlap;
- ``guest:VMID`` exclusive, with its ``node:NAME`` shared: a backup and an
  update of one guest serialise, two jobs on different guests do not;
- ``node:NAME`` exclusive: a host update waits for (and holds off) every run
  on a guest of that node;
- ``dataset:POOL/A/B`` exclusive, every ancestor shared: overlapping trees
  serialise (``rpool/data`` and ``rpool/data/vm``), siblings do not.

A snapshot run claims datasets only, so a backup or an update never blocks it.
Whoever holds a lock is recorded in ``STATE/locks/held-PID.json`` (PID, job,
since when), which is how a waiting run says what it waits for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import LockBusy, NixmoxError
from nixmox.core.files import open_private, write_atomically

#: Seconds between two "still waiting" reports.
REPORT_EVERY = 10.0


@dataclass(frozen=True, order=True)
class Claim:
    """One lock a run takes: ``name`` (``guest:101``), exclusive or shared."""

    name: str
    exclusive: bool = True

    @property
    def label(self) -> str:
        """The thing in a person's words: ``guest 101``, ``dataset tree rpool/data``."""
        kind, _, what = self.name.partition(":")
        if kind == "job":
            return f"the {what} job"
        if kind == "dataset":
            return f"dataset tree {what}"
        return f"{kind} {what}"


def job_claim(job: str) -> Claim:
    return Claim(f"job:{job}")


def guest_claims(guests: Iterable[tuple[int, str]]) -> list[Claim]:
    """Each ``(vmid, node)`` exclusive, and its node shared."""
    out: list[Claim] = []
    for vmid, node in guests:
        out += [Claim(f"guest:{vmid}"), Claim(f"node:{node}", exclusive=False)]
    return out


def node_claims(nodes: Iterable[str]) -> list[Claim]:
    """Whole nodes, exclusive (a host update: every guest on them waits)."""
    return [Claim(f"node:{n}") for n in nodes]


def dataset_claims(datasets: Iterable[str]) -> list[Claim]:
    """Each dataset tree exclusive, its ancestors shared."""
    out: list[Claim] = []
    for dataset in datasets:
        parts = dataset.strip("/").split("/")
        above = ["/".join(parts[:i]) for i in range(1, len(parts))]
        out += [Claim(f"dataset:{a}", exclusive=False) for a in above]
        out.append(Claim(f"dataset:{dataset.strip('/')}"))
    return out


def merged(claims: Iterable[Claim]) -> list[Claim]:
    """One claim per name (exclusive wins), in the one order every run takes them."""
    strongest: dict[str, bool] = {}
    for c in claims:
        strongest[c.name] = strongest.get(c.name, False) or c.exclusive
    # The job's own lock first: a queued run of the same job then waits on that, and says so.
    order = sorted(strongest, key=lambda name: (not name.startswith("job:"), name))
    return [Claim(name, strongest[name]) for name in order]


@dataclass(frozen=True)
class Holder:
    """A run that holds locks: its PID, job and since when."""

    pid: int
    command: str
    since: float
    holds: dict[str, bool]

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"PID {self.pid} (nixmox {self.command}, since {since})"


class LockSet:
    """The locks of one run, taken together and released together."""

    def __init__(self, directory: Path, command: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.directory = directory / "locks"
        self.command = command
        self.clock = clock
        self._fds: dict[str, int] = {}
        self._since = clock.now().timestamp()

    def acquire(
        self,
        claims: Iterable[Claim],
        wait: float,
        report: Callable[[str], None] | None = None,
    ) -> None:
        """Take every claim, waiting at most ``wait`` seconds in all.

        ``report`` hears what the run waits for (holder, elapsed time) when it
        starts waiting and every :data:`REPORT_EVERY` seconds after; a stop
        request (SIGINT/SIGTERM) ends the wait.
        """
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            if self.directory.is_symlink():
                raise NixmoxError(
                    f"{self.directory}: a symlink where nixmox keeps its own locks; remove it"
                )
        except OSError as exc:
            raise _unwritable(self.directory, exc) from None
        started = self.clock.monotonic()
        try:
            for claim in merged(claims):
                self._take(claim, started, wait, report)
        except BaseException:
            self.release()
            raise

    def _take(
        self,
        claim: Claim,
        started: float,
        wait: float,
        report: Callable[[str], None] | None,
    ) -> None:
        fd = open_private(self.directory / (quote(claim.name, safe="") + ".lock"))
        mode = fcntl.LOCK_EX if claim.exclusive else fcntl.LOCK_SH
        reported = 0.0
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = self.clock.monotonic() - started
                if interrupt.stopping():
                    os.close(fd)
                    interrupt.raise_if_stopping(f"gave up waiting for {claim.label}")
                holders = self._holders_of(claim)
                if waited >= wait:
                    os.close(fd)
                    raise LockBusy(
                        f"{claim.label} is in use by {holders}; gave up waiting after "
                        f"{_span(wait)} (another run still works on it; nothing was changed)"
                    ) from None
                if report is not None and (reported == 0.0 or waited - reported >= REPORT_EVERY):
                    if reported == 0.0:
                        report(
                            f"waiting for {claim.label}: in use by {holders} "
                            f"(gives up after {_span(wait)})"
                        )
                    else:
                        report(
                            f"still waiting for {claim.label} ({holders}) [{waited:.0f}s elapsed]"
                        )
                    reported = max(waited, 1e-9)
                self.clock.sleep(0.1)
        self._fds[claim.name] = fd
        self._record({**self._held(), claim.name: claim.exclusive})

    def _held(self) -> dict[str, bool]:
        mine = self._read(self._record_path(os.getpid()))
        return mine.holds if mine else {}

    def _record_path(self, pid: int) -> Path:
        return self.directory / f"held-{pid}.json"

    def _record(self, holds: dict[str, bool]) -> None:
        data = {"pid": os.getpid(), "command": self.command, "since": self._since, "holds": holds}
        # Without the record only the waiting runs' messages lose a name; the lock is held.
        with contextlib.suppress(NixmoxError):
            write_atomically(self._record_path(os.getpid()), json.dumps(data).encode(), 0o600)

    @staticmethod
    def _read(path: Path) -> Holder | None:
        try:
            data = json.loads(path.read_bytes())
            return Holder(
                int(data["pid"]),
                str(data["command"]),
                float(data["since"]),
                {str(k): bool(v) for k, v in dict(data["holds"]).items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _holders_of(self, claim: Claim) -> str:
        """Who holds ``claim`` (or, for a shared tree claim, something under it)."""
        found = []
        for path in sorted(self.directory.glob("held-*.json")):
            holder = self._read(path)
            if holder is None or holder.pid == os.getpid() or not process_alive(holder.pid):
                continue
            if claim.name in holder.holds:
                found.append(holder.describe())
        return ", ".join(found) or "another process"

    def release(self) -> None:
        """Let go of every lock (also what a killed process's kernel does)."""
        with contextlib.suppress(OSError):
            self._record_path(os.getpid()).unlink()
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    @property
    def held(self) -> list[str]:
        return sorted(self._fds)


@contextlib.contextmanager
def holding(
    directory: Path,
    command: str,
    claims: Iterable[Claim],
    wait: float,
    report: Callable[[str], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Iterator[LockSet]:
    """Hold ``claims`` for the block (see :meth:`LockSet.acquire`)."""
    locks = LockSet(directory, command, clock)
    locks.acquire(claims, wait, report)
    try:
        yield locks
    finally:
        locks.release()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs here (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _span(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _unwritable(directory: Path, exc: OSError) -> NixmoxError:
    return NixmoxError(
        f"state directory {directory.parent} is not writable ({exc.strerror or exc}); "
        "nothing was changed. Free space there or make it writable (or point "
        "NIXMOX_STATE_DIR elsewhere), then re-run"
    )
