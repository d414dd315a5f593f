"""What one update run did to each target, in the shape status and metrics read.

The journal summary of every ``update host|nixos|windows`` run is
``{"guests": [{"guest", "vmid", "result", "rolled_back", ...}], "pending": {target: n}}``:
``result`` is one of :data:`RESULTS`, ``rolled_back`` says whether a rollback
ran, and ``pending`` counts what is still waiting per target (upgrades not
installed, a reboot held by policy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast

from nixmox.core import jsonrows
from nixmox.core.progress import SILENT, Progress
from nixmox.core.tables import print_table

#: What happened to one target (the journal's and the report's word).
UpdateResult = Literal["ok", "unchanged", "held", "failed", "rolled-back", "skipped", "dry-run"]
# Results that make the run exit 1.
FAILED: frozenset[str] = frozenset({"failed", "rolled-back"})


@dataclass
class UpdateOutcome:
    """One target of an update run (a node for `update host`, else a guest)."""

    guest: str
    vmid: int | None
    result: UpdateResult = "ok"
    message: str = ""
    rolled_back: bool = False
    rollback: str | None = None  # which rollback ran, in words
    snapshot: str | None = None  # the pre-update snapshot, when one was taken
    pending: int = 0  # upgrades or reboots still waiting on this target
    steps: list[str] = field(default_factory=list)
    #: Hears each step as it happens (the run's reporter; silent by default).
    progress: Progress = field(default=SILENT, repr=False, compare=False)

    def step(self, text: str) -> None:
        """Note one thing done (shown with -v and kept in --json), and report it now."""
        self.steps.append(text)
        self.progress.step(f"{self.guest}: {text}")

    def begin(self, text: str) -> None:
        """The target's update starts: ``text`` (``updating nixos-vm``) names it."""
        self.progress.start(self.guest, text)

    def tick(self) -> None:
        """A look at something still going: after a quiet while, the reporter says so."""
        self.progress.update(self.guest)

    def finish(self) -> None:
        """The target is done: its result (and message) as the report shows it."""
        said = f": {self.message}" if self.message else ""
        self.progress.end(self.guest, f"{self.guest}: {self.result}{said}")

    @property
    def failed(self) -> bool:
        return self.result in FAILED


def row(o: UpdateOutcome) -> dict[str, object]:
    """One outcome as JSON: its fields, in their order (the reporter is not one of them)."""
    out: dict[str, object] = {}
    for f in fields(o):
        if f.name != "progress":
            value = getattr(o, f.name)
            out[f.name] = list(value) if isinstance(value, list) else value
    return out


def summary(outcomes: Sequence[UpdateOutcome]) -> dict[str, object]:
    """The journal summary of a run (see the module docstring)."""
    return {
        "guests": [row(o) for o in outcomes],
        "pending": {o.guest: o.pending for o in outcomes if o.pending},
    }


@dataclass(frozen=True)
class UpdateSummary:
    """An ``update host|nixos|windows`` run as the journal stores it (see the module docstring)."""

    outcomes: tuple[UpdateOutcome, ...]
    #: The run's ``pending`` map as journaled (it may name targets without a row).
    journaled_pending: Mapping[str, int] | None = None

    @property
    def result(self) -> str:
        return run_result(self.outcomes)

    def pending(self) -> Mapping[str, int]:
        """Target -> what is still waiting there (upgrades, a held reboot)."""
        if self.journaled_pending is not None:
            return self.journaled_pending
        return {o.guest: o.pending for o in self.outcomes if o.pending}

    @property
    def exit_code(self) -> int:
        return exit_code(self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return summary(self.outcomes)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UpdateSummary:
        """The outcomes of a journaled run; ``pending`` comes from the run's own map."""
        pending = data.get("pending")
        waiting = pending if isinstance(pending, Mapping) else {}
        outcomes = []
        for row in jsonrows.rows(data, "guests"):
            name = jsonrows.text(row, "guest")
            count = waiting.get(name, row.get("pending"))
            outcomes.append(
                UpdateOutcome(
                    guest=name,
                    vmid=jsonrows.optional_integer(row, "vmid"),
                    result=cast(UpdateResult, jsonrows.text(row, "result")),
                    message=jsonrows.text(row, "message"),
                    rolled_back=bool(row.get("rolled_back")),
                    rollback=jsonrows.optional_text(row, "rollback"),
                    snapshot=jsonrows.optional_text(row, "snapshot"),
                    pending=jsonrows.integer({"n": count}, "n"),
                    steps=jsonrows.texts(row, "steps"),
                )
            )
        journaled = {str(k): jsonrows.integer(waiting, k) for k in waiting}
        return cls(tuple(outcomes), journaled if isinstance(pending, Mapping) else None)


def run_result(outcomes: Sequence[UpdateOutcome]) -> str:
    """The journal's result word for the whole run."""
    return "failed" if any(o.failed for o in outcomes) else "ok"


def exit_code(outcomes: Sequence[UpdateOutcome]) -> int:
    """0 when nothing failed or rolled back, else 1 (the interface contract)."""
    return 1 if any(o.failed for o in outcomes) else 0


def report(outcomes: Sequence[UpdateOutcome], *, as_json: bool, dry_run: bool, title: str) -> None:
    """Print the run's outcomes as a table (or JSON)."""
    if as_json:
        print(json.dumps({"dry_run": dry_run, **summary(outcomes)}, indent=2))
        return
    rows = [["target", "vmid", "result", "details"]]
    for o in outcomes:
        what = o.message
        if o.rolled_back and o.rollback:
            what = f"{what} (rolled back: {o.rollback})" if what else f"rolled back: {o.rollback}"
        rows.append([o.guest, "" if o.vmid is None else str(o.vmid), o.result, what])
    print(f"{title}{' (dry run: nothing changed)' if dry_run else ''}")
    print_table(rows)
