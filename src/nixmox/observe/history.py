"""The run journal in words: what each run changed and what failed.

Pure functions over :class:`nixmox.adapters.journal.Run`; ``nixmox history`` prints them
and notifications send them. Each job's summary has its own shape (see the
CLI commands that record them); an unknown or missing shape still gives a line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.backup.archives import human_size
from nixmox.core.words import plural
from nixmox.core.zones import local_zone
from nixmox.updates.outcome import FAILED


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


def _backup(summary: Mapping[str, Any]) -> list[str]:
    guests = _rows(summary, "guests")
    ok = [g for g in guests if g.get("result") == "ok"]
    removed = sum(len(g.get("removed") or []) for g in guests)
    head = f"{plural(len(ok), 'guest')} backed up, {plural(removed, 'archive')} removed"
    failed = [
        f"{g.get('guest')}: {g.get('message') or g.get('result')}"
        for g in guests
        if g.get("result") not in ("ok", "skipped")
    ]
    failed += [f"{g.get('guest')}: {e}" for g in guests for e in g.get("errors") or []]
    # Skipped (a template, or not started after a stop request) is not a failure.
    skipped = [
        f"{g.get('guest')}: {g.get('message') or 'skipped'}"
        for g in guests
        if g.get("result") == "skipped"
    ]
    lines = [f"{len(skipped)} skipped: {skipped[0]}", *skipped[1:]] if skipped else []
    return [head, *_failures(failed), *lines]


def _verify(summary: Mapping[str, Any]) -> list[str]:
    guests = _rows(summary, "guests")
    ok = [g for g in guests if g.get("ok")]
    failed = [f"{g.get('name')}: {g.get('message')}" for g in guests if not g.get("ok")]
    return [f"{plural(len(ok), 'guest')} verified", *_failures(failed)]


def _snapshot(summary: Mapping[str, Any]) -> list[str]:
    targets = _rows(summary, "targets")
    taken = sum(1 for t in targets if t.get("taken"))
    datasets = [d for t in targets for d in _rows(t, "datasets")]
    removed = sum(len(d.get("removed") or []) for d in datasets)
    head = f"{plural(taken, 'snapshot')} taken, {removed} removed"
    failed = [f"{t.get('dataset')}: {t['error']}" for t in targets if t.get("error")]
    failed += [f"{d.get('dataset')}: {f}" for d in datasets for f in d.get("failed") or []]
    return [head, *_failures(failed)]


def _replicate(summary: Mapping[str, Any]) -> list[str]:
    entries = _rows(summary, "entries")
    datasets = [d for e in entries for d in _rows(e, "datasets")]
    ok = [d for d in datasets if d.get("ok")]
    sent = sum(len(d.get("sent") or []) for d in datasets)
    moved = sum(int(d.get("bytes") or 0) for d in datasets)
    pruned = sum(len(d.get("pruned") or []) for d in datasets)
    head = (
        f"{len(ok)} of {plural(len(datasets), 'dataset')} replicated, "
        f"{plural(sent, 'snapshot')} sent ({human_size(moved)}), {pruned} pruned on the targets"
    )
    failed = [
        f"{e.get('source')} -> {e.get('target')}: {e['error']}" for e in entries if e.get("error")
    ]
    failed += [
        f"{d.get('dataset')}: {d.get('error') or '; '.join(d.get('prune_failed') or [])}"
        for d in datasets
        if not d.get("ok")
    ]
    return [head, *_failures(failed)]


def _apply(summary: Mapping[str, Any]) -> list[str]:
    outcomes = _rows(summary, "outcomes")
    done = [o for o in outcomes if o.get("result") == "ok"]
    held = [o for o in outcomes if o.get("result") == "held"]
    head = f"{plural(len(done), 'object')} changed" + (f", {len(held)} held" if held else "")
    failed = [
        f"{o.get('kind')} {o.get('name')}: {o.get('error')}"
        for o in outcomes
        if o.get("result") == "failed"
    ]
    return [head, *_failures(failed)]


def _update(summary: Mapping[str, Any], what: str) -> list[str]:
    guests = _rows(summary, "guests")
    ok = [g for g in guests if g.get("result") == "ok"]
    rolled = [str(g.get("guest")) for g in guests if g.get("rolled_back")]
    head = f"{plural(len(ok), what)} updated" + (
        f", {len(rolled)} rolled back ({', '.join(rolled)})" if rolled else ""
    )
    # Nothing to do, or a reboot held by policy, is no failure; say how many.
    for result in ("unchanged", "held", "skipped"):
        count = sum(1 for g in guests if g.get("result") == result)
        head += f", {count} {result}" if count else ""
    failed = [
        f"{g.get('guest')}: {g.get('message') or g.get('result')}"
        for g in guests
        if g.get("result") in FAILED
    ]
    return [head, *_failures(failed)]


def _provision(summary: Mapping[str, Any]) -> list[str]:
    lines = []
    for guest in _rows(summary, "guests"):
        steps = [s for s in guest.get("steps") or [] if isinstance(s, Mapping)]
        changed = [str(s.get("step")) for s in steps if s.get("ok") and s.get("changed")]
        pending = [str(s.get("step")) for s in steps if s.get("ok") and s.get("pending")]
        failed = [str(s.get("step")) for s in steps if not s.get("ok") and not s.get("skipped")]
        words = [f"{guest.get('guest')}:"]
        words.append(f"changed {', '.join(changed)}" if changed else "nothing changed")
        if pending:
            words.append(f"left to the user: {', '.join(pending)}")
        if failed:
            words.append(f"failed: {', '.join(failed)}")
        lines.append(" ".join(words[:2]) + "".join(f"; {w}" for w in words[2:]))
    return lines or ["no guest"]


def _template_upload(summary: Mapping[str, Any]) -> list[str]:
    if summary.get("vmid") is not None:
        return [f"VM template {summary.get('vmid')} ({summary.get('name')})"]
    if summary.get("volid"):
        verb = "uploaded" if summary.get("uploaded") else "already there"
        return [f"{summary.get('volid')} {verb}"]
    return ["nothing uploaded"]


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


def summary_lines(run: Run) -> list[str]:
    """The run in words: a headline, then one line per failure."""
    summary = run.summary
    if run.command == "backup":
        lines = _backup(summary)
    elif run.command == "backup verify":
        lines = _verify(summary)
    elif run.command == "snapshot":
        lines = _snapshot(summary)
    elif run.command == "replicate":
        lines = _replicate(summary)
    elif run.command == "apply":
        lines = _apply(summary)
    elif run.command.startswith("update"):
        lines = _update(summary, "node" if run.command == "update host" else "guest")
    elif run.command == "windows provision":
        lines = _provision(summary)
    elif run.command == "template upload":
        lines = _template_upload(summary)
    elif run.command in ("pool scrub", "pool trim"):
        lines = _pool_operation(summary)
    elif run.command == "pool check":
        lines = _pool_check(summary)
    else:
        lines = [run.result or "running"]
    if summary.get("error"):
        lines.append(f"error: {summary['error']}")
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
