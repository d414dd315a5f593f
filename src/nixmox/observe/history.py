"""The run journal in words: what each run changed and what failed.

Pure functions over :class:`nixmox.adapters.journal.Run`; ``nixmox history`` prints them
and notifications send them. A run is read back as its job's typed summary
(:mod:`nixmox.observe.summaries`); an unknown or missing shape still gives a line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.backup.archives import human_size
from nixmox.backup.runs import BackupSummary, VerifySummary
from nixmox.core.words import plural
from nixmox.core.zones import local_zone
from nixmox.observe.summaries import Summary, read
from nixmox.provision.run import ApplySummary
from nixmox.replicate.runs import ReplicateSummary
from nixmox.restore.rebuild import RebuildSummary
from nixmox.restore.runs import RestoreSummary
from nixmox.snapshot.runs import SnapshotSummary
from nixmox.templates.upload import TemplateUpload
from nixmox.updates.outcome import UpdateSummary
from nixmox.windows.provision_run import ProvisionSummary


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 4 s``, ``1 h 2 min``; ``running`` when the run has not ended."""
    if seconds is None:
        return "running"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def local_time(epoch: float, zone: tzinfo | None = None, *, seconds: bool = True) -> str:
    """``2026-11-25 02:30:04 CET``: in ``zone`` (default: this machine's), with its name,
    so a time read next to an archive's name or another machine's log is never ambiguous."""
    when = datetime.fromtimestamp(epoch, zone or local_zone())
    return when.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def _rows(summary: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    rows = summary.get(key)
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def _failures(failed: Sequence[str]) -> list[str]:
    return [f"{len(failed)} failed: {failed[0]}", *failed[1:]] if failed else []


def _backup(summary: BackupSummary) -> list[str]:
    guests = summary.guests
    ok = [g for g in guests if g.result == "ok"]
    removed = sum(len(g.removed) for g in guests)
    head = f"{plural(len(ok), 'guest')} backed up, {plural(removed, 'archive')} removed"
    failed = [
        f"{g.name}: {g.message or g.result}" for g in guests if g.result not in ("ok", "skipped")
    ]
    failed += [f"{g.name}: {e}" for g in guests for e in g.errors]
    # Skipped (a template, or not started after a stop request) is not a failure.
    skipped = [f"{g.name}: {g.message or 'skipped'}" for g in guests if g.result == "skipped"]
    lines = [f"{len(skipped)} skipped: {skipped[0]}", *skipped[1:]] if skipped else []
    return [head, *_failures(failed), *lines]


def _verify(summary: VerifySummary) -> list[str]:
    ok = [g for g in summary.guests if g.ok]
    failed = [f"{g.name}: {g.message}" for g in summary.guests if not g.ok]
    # Scratch guests killed runs left behind: what this run removed, and what it could not.
    failed += [s.message for s in summary.leftovers if s.outcome == "unconfirmed"]
    removed = sum(1 for s in summary.leftovers if s.outcome == "removed")
    head = f"{plural(len(ok), 'guest')} verified"
    if removed:
        head += f", {plural(removed, 'leftover scratch guest')} removed"
    return [head, *_failures(failed)]


def _snapshot(summary: SnapshotSummary) -> list[str]:
    targets = summary.targets
    taken = sum(1 for t in targets if t.taken)
    datasets = [d for t in targets for d in t.datasets]
    removed = sum(len(d.removed) for d in datasets)
    head = f"{plural(taken, 'snapshot')} taken, {removed} removed"
    failed = [f"{t.dataset}: {t.error}" for t in targets if t.error]
    failed += [f"{d.dataset}: {f}" for d in datasets for f in d.failed]
    return [head, *_failures(failed)]


def _replicate(summary: ReplicateSummary) -> list[str]:
    datasets = [d for _, d in summary.datasets()]
    ok = [d for d in datasets if d.ok]
    sent = sum(len(d.sent) for d in datasets)
    moved = sum(d.bytes for d in datasets)
    pruned = sum(len(d.pruned) for d in datasets)
    head = (
        f"{len(ok)} of {plural(len(datasets), 'dataset')} replicated, "
        f"{plural(sent, 'snapshot')} sent ({human_size(moved)}), {pruned} pruned on the targets"
    )
    failed = [f"{e.source} -> {e.target}: {e.error}" for e in summary.entries if e.error]
    failed += [f"{d.dataset}: {d.error or '; '.join(d.prune_failed)}" for d in datasets if not d.ok]
    return [head, *_failures(failed)]


def _apply(summary: ApplySummary) -> list[str]:
    outcomes = summary.outcomes
    done = [o for o in outcomes if o.result == "ok"]
    held = [o for o in outcomes if o.result == "held"]
    head = f"{plural(len(done), 'object')} changed" + (f", {len(held)} held" if held else "")
    failed = [f"{o.kind} {o.name}: {o.error}" for o in summary.failed]
    return [head, *_failures(failed)]


def _update(summary: UpdateSummary, what: str) -> list[str]:
    outcomes = summary.outcomes
    ok = [o for o in outcomes if o.result == "ok"]
    rolled = [o.guest for o in outcomes if o.rolled_back]
    head = f"{plural(len(ok), what)} updated" + (
        f", {len(rolled)} rolled back ({', '.join(rolled)})" if rolled else ""
    )
    # Nothing to do, or a reboot held by policy, is no failure; say how many.
    for result in ("unchanged", "held", "skipped"):
        count = sum(1 for o in outcomes if o.result == result)
        head += f", {count} {result}" if count else ""
    failed = [f"{o.guest}: {o.message or o.result}" for o in outcomes if o.failed]
    return [head, *_failures(failed)]


def _provision(summary: ProvisionSummary) -> list[str]:
    lines = []
    for guest in summary.guests:
        steps = guest.steps
        changed = [s.step for s in steps if s.ok and s.changed]
        pending = [s.step for s in steps if s.ok and s.pending]
        failed = [s.step for s in steps if not s.ok and not s.skipped]
        words = [f"{guest.guest}:"]
        words.append(f"changed {', '.join(changed)}" if changed else "nothing changed")
        if pending:
            words.append(f"left to the user: {', '.join(pending)}")
        if failed:
            words.append(f"failed: {', '.join(failed)}")
        lines.append(" ".join(words[:2]) + "".join(f"; {w}" for w in words[2:]))
    return lines or ["no guest"]


def _template_upload(summary: TemplateUpload) -> list[str]:
    if summary.vmid is not None:
        return [f"VM template {summary.vmid} ({summary.name})"]
    if summary.volid:
        return [f"{summary.volid} {'uploaded' if summary.uploaded else 'already there'}"]
    return ["nothing uploaded"]


def _restore(summary: RestoreSummary, journaled: Mapping[str, Any]) -> list[str]:
    if not isinstance(journaled.get("restore"), Mapping):
        return ["nothing restored"]
    r = summary.restore
    head = f"{r.guest} {r.mode} ({r.target}) from {r.archive}"
    lines = [head + (f", kept {r.kept}" if r.kept else "")]
    return lines + ([] if r.ok else _failures([r.message]))


def _rebuild(summary: RebuildSummary) -> list[str]:
    worked = [(g, res) for g, res in summary.guests if res is not None]
    ok = [g for g, res in worked if res.ok]
    head = f"{plural(len(ok), 'guest')} brought back"
    left = len(summary.guests) - len(worked)
    head += f", {left} left alone" if left else ""
    head += ", plan empty" if summary.plan_empty else ""
    failed = [f"{g.name}: {res.message}" for g, res in worked if not res.ok]
    return [head, *_failures(failed)]


def _pool_operation(summary: Mapping[str, Any]) -> list[str]:
    operation = str(summary.get("operation") or "scrub")
    pools = _rows(summary, "pools")
    done = [p for p in pools if p.get("outcome") == "finished"]
    verb = "scrubbed" if operation == "scrub" else "trimmed"
    head = f"{plural(len(done), 'pool')} {verb}"
    if operation == "scrub" and done:
        errors = sum(int(p.get("errors") or 0) for p in done)
        repaired = sum(int(p.get("repaired") or 0) for p in done)
        head += f", {plural(errors, 'error')}" + (f", {repaired} B repaired" if repaired else "")
    # A scrub that finished with errors is news, not a failed run: name the pool.
    found = [
        f"{p.get('pool')}: {p.get('errors')} errors it could not repair"
        for p in done
        if p.get("errors")
    ]
    failed = [
        f"{p.get('pool')}: {p.get('outcome')}: {p.get('message')}"
        for p in pools
        if p.get("outcome") not in ("finished", "dry-run")
    ]
    return [head, *found, *_failures(failed)]


def _pool_check(summary: Mapping[str, Any]) -> list[str]:
    pools = _rows(summary, "pools")
    disks = _rows(summary, "disks")
    problems = [
        c for c in _rows(summary, "checks") if c.get("status") in ("WARN", "FAIL", "UNKNOWN")
    ]
    head = f"{plural(len(pools), 'pool')} and {plural(len(disks), 'disk')} read"
    head += f", {plural(len(problems), 'finding')}" if problems else ", nothing to report"
    unread = {str(p.get("pool")) for p in pools if p.get("error")}
    failed = [f"{p.get('pool')}: {p.get('error')}" for p in pools if p.get("error")]
    # A pool that could not be read is said once, as the failure.
    said = [
        f"{c.get('status')} {c.get('subject')}: {c.get('message')}"
        for c in problems
        if not (c.get("status") == "UNKNOWN" and c.get("subject") in unread)
    ]
    return [head, *_failures(failed), *said]


def _typed_lines(summary: Summary, run: Run) -> list[str]:
    if isinstance(summary, BackupSummary):
        return _backup(summary)
    if isinstance(summary, VerifySummary):
        return _verify(summary)
    if isinstance(summary, SnapshotSummary):
        return _snapshot(summary)
    if isinstance(summary, ReplicateSummary):
        return _replicate(summary)
    if isinstance(summary, ApplySummary):
        return _apply(summary)
    if isinstance(summary, UpdateSummary):
        return _update(summary, "node" if run.command == "update host" else "guest")
    if isinstance(summary, ProvisionSummary):
        return _provision(summary)
    if isinstance(summary, TemplateUpload):
        return _template_upload(summary)
    if isinstance(summary, RestoreSummary):
        return _restore(summary, run.summary)
    return _rebuild(summary)


def summary_lines(run: Run) -> list[str]:
    """The run in words: a headline, then one line per failure."""
    summary = run.summary
    typed = read(run)
    if typed is not None:
        lines = _typed_lines(typed, run)
    elif run.command in ("pool scrub", "pool trim"):
        lines = _pool_operation(summary)
    elif run.command == "pool check":
        lines = _pool_check(summary)
    else:
        lines = [run.result or "running"]
    if summary.get("error"):
        lines.append(f"error: {summary['error']}")
    for task in summary.get("still_running") or ():
        if isinstance(task, dict):
            lines.append(f"still running on the server: {task.get('what')} ({task.get('upid')})")
    return lines


def one_line(run: Run, width: int = 100) -> str:
    """:func:`summary_lines` joined, cut at ``width`` characters."""
    text = "; ".join(summary_lines(run))
    return text if len(text) <= width else text[: width - 3] + "..."


def as_json(run: Run) -> dict[str, Any]:
    """One run for ``history --json``."""
    return {
        "id": run.id,
        "job": run.command,
        "started": run.started,
        "ended": run.ended,
        "seconds": None if run.seconds is None else round(run.seconds, 1),
        "result": run.result,
        "lines": summary_lines(run),
        "summary": run.summary,
    }


def table(runs: Sequence[Run], zone: tzinfo | None = None) -> list[tuple[str, str, str, str, str]]:
    """Rows (with a header) for the history table, in the order given; times in ``zone``."""
    rows = [("started", "job", "result", "took", "summary")]
    rows += [
        (
            local_time(r.started, zone),
            r.command,
            r.result or "running",
            duration(r.seconds),
            one_line(r),
        )
        for r in runs
    ]
    return rows
