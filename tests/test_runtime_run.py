"""The one seam every writing command runs its job through (runtime.run.run_job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixmox.adapters.journal import Journal
from nixmox.backup.job import GuestResult
from nixmox.backup.runs import BackupSummary
from nixmox.inventory.load import load_inventory
from nixmox.inventory.model import Inventory
from nixmox.observe.history import summary_lines
from nixmox.runtime.run import run_job
from tests.observe_support import inventory


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    # conftest points the textfile at tmp_path/nixmox.prom and silences notifications
    return load_inventory(inventory(tmp_path, textfile=tmp_path / "nixmox.prom", urls=[]))


def _runs(state: Path) -> list[tuple[str, str | None, dict[str, object]]]:
    journal = Journal(state)
    try:
        return [(r.command, r.result, r.summary) for r in journal.runs()]
    finally:
        journal.close()


def _summary(result: str) -> BackupSummary:
    return BackupSummary((GuestResult("nixos-vm", 101, "pve1", result=result),), requests=3)


def test_a_dry_run_is_not_journaled(inv: Inventory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    summary = run_job(inv, "backup", lambda: _summary("planned"), dry_run=True, directory=state)
    assert summary.guests[0].result == "planned"
    assert _runs(state) == []
    assert not (tmp_path / "nixmox.prom").exists()  # no run, no metrics


def test_a_real_run_is_journaled_with_its_typed_summary(inv: Inventory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_job(inv, "backup", lambda: _summary("failed"), dry_run=False, directory=state)
    [(command, result, stored)] = _runs(state)
    assert (command, result) == ("backup", "failed")
    assert stored == _summary("failed").to_json()
    assert BackupSummary.from_json(stored) == BackupSummary(
        (GuestResult("nixos-vm", 101, "", result="failed"),), requests=3
    )
    assert "nixmox_job_last_run_success" in (tmp_path / "nixmox.prom").read_text()


def test_a_raising_job_is_journaled_as_error_and_the_error_propagates(
    inv: Inventory, tmp_path: Path
) -> None:
    state = tmp_path / "state"

    def explode() -> BackupSummary:
        raise RuntimeError("vzdump exploded")

    with pytest.raises(RuntimeError, match="vzdump exploded"):
        run_job(inv, "backup", explode, dry_run=False, directory=state)
    [(command, result, stored)] = _runs(state)
    assert (command, result, stored) == ("backup", "error", {"error": "vzdump exploded"})


def test_without_an_inventory_nothing_is_journaled(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_job(None, "zfs cache add", lambda: _summary("ok"), dry_run=False, directory=state)
    assert _runs(state) == []


def test_old_journal_rows_still_read() -> None:
    """A row written before the typed summaries (and a damaged one) still reads."""
    old = {"guests": [{"guest": "a", "result": "ok", "removed": ["x", "y"]}, "junk", {}]}
    summary = BackupSummary.from_json(old)
    assert [g.name for g in summary.guests] == ["a", ""]
    assert summary.guests[0].removed == ["x", "y"] and summary.requests == 0
    assert BackupSummary.from_json({"guests": "nope"}).guests == ()


def test_history_reads_the_summary_it_stored(inv: Inventory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    run_job(inv, "backup", lambda: _summary("ok"), dry_run=False, directory=state)
    journal = Journal(state)
    try:
        [run] = journal.runs()
    finally:
        journal.close()
    assert summary_lines(run) == ["1 guest backed up, 0 archives removed"]
