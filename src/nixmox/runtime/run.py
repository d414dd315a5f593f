"""The one way a job is run: :func:`run_job`.

Every command that changes something hands its job to :func:`run_job`, which
decides whether the run is journaled (not for a dry run), holds the state lock
and writes the journal row with the job's typed summary, and afterwards
(:func:`after_run`) rewrites the metrics textfile and sends the notification;
either is skipped when its inventory section is absent, and neither can fail
the run. The jobs themselves stay unaware of the journal, metrics and
notifications. SIGINT/SIGTERM during a journaled run are stop requests: jobs
poll :func:`stopping` (kept in ``core.interrupt`` so features below this layer
can ask) before each new guest, dataset or step, and the run is journaled as
``interrupted``; the CLI then exits 130/143. Each run locks what it touches
(its job, guests, nodes, dataset trees), so unrelated jobs run side by side.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from nixmox.adapters.journal import JobRun, Journal, job_run, state_dir
from nixmox.adapters.locks import Claim
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.environment import variable
from nixmox.core.errors import NixmoxError
from nixmox.core.interrupt import Interrupted, raise_if_stopping, stopping
from nixmox.core.progress import SILENT, Progress, for_stderr
from nixmox.core.zones import zone
from nixmox.inventory.model import Inventory, Metrics, Notify
from nixmox.runtime.waits import lock_wait

log = logging.getLogger(__name__)

#: How many earlier runs of its group a run's findings are compared with.
FINDINGS_HISTORY = 200

__all__ = [
    "Interrupted",
    "JobSummary",
    "after_run",
    "observed_run",
    "raise_if_stopping",
    "run_job",
    "stopping",
    "with_overrides",
]


class JobSummary(Protocol):
    """What a finished job reports: the journal's result word and the JSON it stores."""

    @property
    def result(self) -> str:
        """``ok`` or ``failed`` (``error`` is the runtime's, when the job raised)."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The journal row's summary (history, status and metrics read it back)."""
        ...


SummaryT = TypeVar("SummaryT", bound=JobSummary)


def run_job(
    inv: Inventory | None,
    job: str,
    work: Callable[[], SummaryT],
    *,
    dry_run: bool,
    directory: Path | None = None,
    claims: Iterable[Claim] = (),
    clock: Clock = SYSTEM_CLOCK,
    progress: Progress | None = None,
) -> SummaryT:
    """Run ``work`` as one run of ``job`` and return what it reported.

    A dry run (and a run without an inventory, which has nowhere to report)
    is not journaled and takes no lock. A real run holds ``job``'s own lock and
    ``claims`` (the guests, nodes and dataset trees it touches; see
    :mod:`nixmox.adapters.locks`), waiting for them at most
    :func:`~nixmox.runtime.waits.lock_wait` and saying what it waits for. It is
    journaled with the summary's result and JSON, and followed by metrics and
    the notification; when ``work`` raises, the run is journaled as ``error``
    with the message and the exception propagates. ``clock`` measures the lock wait.

    ``progress`` (the one the command gave its job; else this process's, see
    :func:`~nixmox.core.progress.for_stderr`) is shown while the run lasts and
    hears the lock waits.
    """
    shown = progress if progress is not None else for_stderr(clock)
    with shown:
        if dry_run or inv is None:
            return work()
        # Quiet (or no command line): a lock wait is still worth a warning.
        report = _waiting if shown is SILENT else shown.step
        with observed_run(inv, job, directory, claims, clock, report) as run:
            summary = work()
            run.result = summary.result
            run.summary = summary.to_json()
        return summary


@contextlib.contextmanager
def observed_run(
    inv: Inventory,
    command: str,
    directory: Path | None = None,
    claims: Iterable[Claim] = (),
    clock: Clock = SYSTEM_CLOCK,
    report: Callable[[str], None] | None = None,
) -> Iterator[JobRun]:
    """:func:`job_run` for ``command``, then :func:`after_run` once it is journaled
    (the inside of :func:`run_job`; jobs go through that)."""
    where = directory or state_dir()
    journaled = False
    try:
        with job_run(
            where,
            command,
            claims=claims,
            lock_wait=lock_wait(inv, command),
            report=report or _waiting,
            clock=clock,
        ) as run:
            journaled = True
            yield run
    finally:
        if journaled:
            after_run(inv, where, command)


def _waiting(line: str) -> None:
    log.warning("%s", line)


def with_overrides(inv: Inventory, environ: Mapping[str, str] | None = None) -> Inventory:
    """``[metrics] textfile`` and ``[notify] urls`` as overridden by the environment:
    ``NIXMOX_METRICS_TEXTFILE`` (empty: no textfile) and ``NIXMOX_NOTIFY_URLS``
    (space-separated; empty: no notifications). The demo and the tests use them
    so nothing is written to /var/lib or sent to the example's home.arpa hosts."""
    env = os.environ if environ is None else environ
    updates: dict[str, object] = {}
    if "NIXMOX_METRICS_TEXTFILE" in env:
        path = env["NIXMOX_METRICS_TEXTFILE"]
        updates["metrics"] = Metrics(textfile=path) if path else None
    given = variable("NIXMOX_NOTIFY_URLS", environ)
    if given is not None:
        urls = given.split()
        base = inv.notify or Notify()
        updates["notify"] = base.model_copy(update={"urls": urls}) if urls else None
    return inv.model_copy(update=updates) if updates else inv


def after_run(inv: Inventory, directory: Path, command: str) -> None:
    """Write the metrics textfile and notify about ``command``'s newest run."""
    inv = with_overrides(inv)
    if inv.metrics is None and (inv.notify is None or not inv.notify.urls):
        return
    from nixmox.observe.metrics import update_textfile
    from nixmox.observe.notify import notify_run

    journal = Journal(directory)
    try:
        if inv.metrics is not None:
            try:
                update_textfile(inv, journal, zone(inv.timezone))
            except NixmoxError as exc:
                log.warning("metrics: %s", exc)
        if inv.notify is not None and inv.notify.urls:
            runs = journal.runs(command, limit=2, exact=True)
            if runs:
                # A run that keeps findings is compared with its command group's
                # earlier runs (`pool scrub` with `pool check`): see observe.findings.
                earlier = []
                if "findings" in runs[0].summary:
                    earlier = journal.runs(command.split()[0], limit=FINDINGS_HISTORY)
                try:
                    notify_run(inv, runs[0], runs[1] if len(runs) > 1 else None, earlier)
                except Exception as exc:  # a notification never fails the job it reports
                    log.warning("notify: %s", exc)
    finally:
        journal.close()
