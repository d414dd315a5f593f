"""Notifications through apprise: one message per run, when it is news.

A run is news on ``failure`` (it did not end ``ok``), on ``recovery`` (it
ended ``ok`` and the job's previous run did not) and, when asked for, on
``success`` (every ``ok`` run). A run that keeps findings (the pool runs:
a scrub's errors, a disk's health, the fill forecast) is also news when they
change (:mod:`nixmox.observe.findings`): a new finding as ``failure``, only
cleared ones as ``recovery``; the same findings again are no news. The
message is the run's summary in words.
Notification URLs carry tokens and passwords: each is registered as a secret
before apprise sees it, and nixmox logs only their scheme.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.core.log import register_url
from nixmox.inventory.model import Inventory
from nixmox.observe.findings import FindingChanges, finding_changes
from nixmox.observe.history import duration, summary_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One notification: its event, title and body."""

    event: str  # failure | recovery | success
    title: str
    body: str


def event(run: Run, previous: Run | None, changes: FindingChanges | None = None) -> str:
    """``failure``, ``recovery`` or ``success`` for ``run`` after ``previous`` (same job),
    with ``changes`` in its findings since the earlier runs."""
    if run.result != "ok" or (changes is not None and changes.new):
        return "failure"
    if changes is not None and changes.cleared:
        return "recovery"
    if previous is not None and previous.result != "ok":
        return "recovery"
    return "success"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def message(
    run: Run, previous: Run | None, host: str, changes: FindingChanges | None = None
) -> Message:
    """The notification for ``run``, whether or not it is sent."""
    what = event(run, previous, changes)
    verb = {"failure": "failed", "recovery": "recovered", "success": "succeeded"}[what]
    title = f"nixmox {run.command} {verb} on {host}"
    lines = []
    if run.result == "ok" and changes:
        if changes.new:
            found = _count(len(changes.new), "new problem")
            title = f"nixmox {run.command} found {found} on {host}"
        else:
            cleared = _count(len(changes.cleared), "problem")
            title = f"nixmox {run.command} on {host}: {cleared} cleared"
    if changes:
        lines += [f"new: {f}" for f in changes.new]
        lines += [f"cleared: {f}" for f in changes.cleared]
    lines += summary_lines(run)
    lines.append(f"result {run.result or 'unknown'}, took {duration(run.seconds)}")
    return Message(what, title, "\n".join(lines))


def host_name(inv: Inventory) -> str:
    """The lab's node names (``pve1``), or this machine's name without nodes."""
    return ", ".join(n.name for n in inv.nodes) or socket.gethostname()


def scheme(url: str) -> str:
    """What of a notification URL may be logged: ``ntfy://``."""
    return url.split("://", 1)[0] + "://" if "://" in url else "(a URL)"


def send(urls: Sequence[str], msg: Message) -> bool:
    """Deliver ``msg`` to every URL; False (and a warning) if any failed."""
    import apprise

    for url in urls:
        register_url(url)
    sender = apprise.Apprise()
    ok = True
    for url in urls:
        if not sender.add(url):
            log.warning("notify: %s URL not understood by apprise; skipped", scheme(url))
            ok = False
    if len(sender) == 0:
        return False
    kind = apprise.NotifyType.FAILURE if msg.event == "failure" else apprise.NotifyType.SUCCESS
    if not sender.notify(body=msg.body, title=msg.title, notify_type=kind):
        log.warning(
            "notify: delivery through %s failed", ", ".join(sorted({scheme(u) for u in urls}))
        )
        return False
    log.debug("notify: sent %r through %s", msg.title, ", ".join(sorted({scheme(u) for u in urls})))
    return ok


def notify_run(
    inv: Inventory, run: Run, previous: Run | None, earlier: Iterable[Run] = ()
) -> Message | None:
    """Send the message for ``run`` if ``[notify] on`` asks for its event; return it if sent.
    ``earlier``: the runs its findings are compared with (see the module)."""
    if inv.notify is None or not inv.notify.urls:
        return None
    msg = message(run, previous, host_name(inv), finding_changes(run, earlier))
    if msg.event not in inv.notify.on:
        return None
    return msg if send(inv.notify.urls, msg) else None


def unit_failure_message(inv: Inventory, facts: Mapping[str, Any], problem: str | None) -> Message:
    """The notification for a failed nixmox unit (the OnFailure= hook); ``problem``
    says why the run journal does not have it."""
    unit = str(facts.get("unit"))
    why = facts.get("result")
    lines = [f"systemd unit {unit} failed" + (f" ({why})" if why else "")]
    if problem:
        lines.append(problem)
    what = str(facts.get("job") or unit)
    return Message("failure", f"nixmox {what} failed on {host_name(inv)}", "\n".join(lines))


def notify_unit_failure(
    inv: Inventory, facts: Mapping[str, Any], problem: str | None
) -> Message | None:
    """Send :func:`unit_failure_message` when ``[notify] on`` includes failures."""
    if inv.notify is None or not inv.notify.urls or "failure" not in inv.notify.on:
        return None
    msg = unit_failure_message(inv, facts, problem)
    return msg if send(inv.notify.urls, msg) else None
