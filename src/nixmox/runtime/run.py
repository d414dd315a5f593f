"""A journaled job run followed by its metrics and notification.

The CLI wraps each job in :func:`observed_run` instead of
:func:`nixmox.adapters.journal.job_run`: the jobs stay unaware of metrics and
notifications. After the run is journaled (also when the job failed or
raised), :func:`after_run` rewrites the textfile and sends the message; either
is skipped when its inventory section is absent, and neither can fail the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from nixmox.adapters.journal import JobRun, Journal, job_run, state_dir
from nixmox.core.errors import NixmoxError
from nixmox.core.zones import zone
from nixmox.inventory.model import Inventory, Metrics, Notify

log = logging.getLogger(__name__)


@contextlib.contextmanager
def observed_run(inv: Inventory, command: str, directory: Path | None = None) -> Iterator[JobRun]:
    """:func:`job_run` for ``command``, then :func:`after_run` once it is journaled."""
    where = directory or state_dir()
    journaled = False
    try:
        with job_run(where, command) as run:
            journaled = True
            yield run
    finally:
        if journaled:
            after_run(inv, where, command)


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
    if "NIXMOX_NOTIFY_URLS" in env:
        urls = env["NIXMOX_NOTIFY_URLS"].split()
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
                try:
                    notify_run(inv, runs[0], runs[1] if len(runs) > 1 else None)
                except Exception as exc:  # a notification never fails the job it reports
                    log.warning("notify: %s", exc)
    finally:
        journal.close()
