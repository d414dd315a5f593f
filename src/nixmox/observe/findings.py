"""Which of a run's findings are news: new since, or cleared since, the last word on them.

A run that judges things (``pool check``, ``pool scrub``) keeps ``findings``
in its summary: each WARN/FAIL as ``id subject STATUS``; and what it looked
at: its ``checks`` (PASS ones too) and ``judged`` (``id subject`` keys). Runs
of one command group judge overlapping things (a scrub and the next check
both say whether the pool's last scrub found errors), so a finding is
compared with the newest earlier run that judged the same ``id subject``,
whichever command that was: one scrub that found errors is one notification,
not one per command that sees it afterwards. Pure over journal runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.core import jsonrows


@dataclass(frozen=True)
class FindingChanges:
    """Findings (``id subject STATUS``) that appeared, and ones that went away."""

    new: tuple[str, ...]
    cleared: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.new or self.cleared)


def findings(summary: Mapping[str, Any]) -> dict[str, str] | None:
    """``id subject`` -> status of a summary's findings; ``None`` when it keeps none."""
    listed = summary.get("findings")
    if not isinstance(listed, list):
        return None
    out = {}
    for item in listed:
        key, _, status = str(item).rpartition(" ")
        if key:
            out[key] = status
    return out


def judged(summary: Mapping[str, Any]) -> set[str]:
    """The ``id subject`` keys a run looked at, whatever it found."""
    keys = set(jsonrows.texts(summary, "judged"))
    for check in jsonrows.rows(summary, "checks"):
        keys.add(f"{jsonrows.text(check, 'id')} {jsonrows.text(check, 'subject')}")
    keys.update(findings(summary) or {})
    return keys


def finding_changes(run: Run, earlier: Iterable[Run]) -> FindingChanges | None:
    """What changed in ``run``'s findings since the runs before it (any order; ``run``
    itself and later runs are ignored); ``None`` when ``run`` keeps no findings."""
    now = findings(run.summary)
    if now is None:
        return None
    ended = run.ended if run.ended is not None else float("inf")
    before = sorted(
        (
            r
            for r in earlier
            if r.id != run.id
            and r.ended is not None
            and r.ended <= ended
            and findings(r.summary) is not None
        ),
        key=lambda r: (r.ended or 0.0, r.id),
        reverse=True,
    )
    mine = judged(run.summary)
    last: dict[str, str | None] = {}  # key -> its status in the newest run that judged it
    for r in before:
        said = findings(r.summary) or {}
        for key in judged(r.summary) & mine:
            last.setdefault(key, said.get(key))
    new = sorted(f"{k} {s}" for k, s in now.items() if last.get(k) != s)
    # A finding whose status changed (WARN -> FAIL) is new, not cleared.
    cleared = sorted(f"{k} {s}" for k, s in last.items() if s is not None and k not in now)
    return FindingChanges(tuple(new), tuple(cleared))
