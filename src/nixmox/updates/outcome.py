"""What one update run did to each target, in the shape status and metrics read.

The journal summary of every ``update host|nixos|windows`` run is
``{"guests": [{"guest", "vmid", "result", "rolled_back", ...}], "pending": {target: n}}``:
``result`` is one of :data:`RESULTS`, ``rolled_back`` says whether a rollback
ran, and ``pending`` counts what is still waiting per target (upgrades not
installed, a reboot held by policy).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

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

    def step(self, text: str) -> None:
        """Note one thing done (shown with -v and kept in --json)."""
        self.steps.append(text)

    @property
    def failed(self) -> bool:
        return self.result in FAILED


#: The old name, kept for cli/update_nixos_cmd and cli/update_windows_cmd until they
#: import UpdateOutcome (a name that no longer collides with provision's).
Outcome = UpdateOutcome


def row(o: UpdateOutcome) -> dict[str, object]:
    """One outcome as JSON."""
    return {
        "guest": o.guest,
        "vmid": o.vmid,
        "result": o.result,
        "message": o.message,
        "rolled_back": o.rolled_back,
        "rollback": o.rollback,
        "snapshot": o.snapshot,
        "pending": o.pending,
        "steps": list(o.steps),
    }


def summary(outcomes: Sequence[UpdateOutcome]) -> dict[str, object]:
    """The journal summary of a run (see the module docstring)."""
    return {
        "guests": [row(o) for o in outcomes],
        "pending": {o.guest: o.pending for o in outcomes if o.pending},
    }


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
