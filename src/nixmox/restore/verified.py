"""What ``backup verify`` recorded: per archive, whether it booted and how long it took."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from nixmox.adapters.journal import JOURNAL_FILE, Journal, state_dir
from nixmox.backup.archives import parse_volid
from nixmox.backup.runs import VerifySummary
from nixmox.restore.choose import Verification


def verifications(directory: Path | None = None, limit: int = 200) -> dict[str, Verification]:
    """Archive volid -> its newest verification, from the journal (nothing without one)."""
    directory = directory or state_dir()
    if not (directory / JOURNAL_FILE).is_file():
        return {}
    journal = Journal(directory)
    try:
        found: dict[str, Verification] = {}
        for run in journal.runs("backup verify", limit=limit, exact=True):
            when = datetime.fromtimestamp(run.ended or run.started, UTC)
            for g in VerifySummary.from_json(run.summary).guests:
                if g.archive and g.archive not in found:
                    found[g.archive] = Verification(
                        g.archive, g.ok, when, g.restore_seconds, g.boot_seconds or g.seconds
                    )
        return found
    finally:
        journal.close()


def expected_seconds(found: dict[str, Verification], archive: str, vmid: int) -> float | None:
    """How long restoring ``archive`` should take: its own verification's times, else
    those of the newest verified archive of the same guest; ``None`` when never measured."""
    own = found.get(archive)
    if own is not None and own.ok:
        return own.seconds
    same = [
        v
        for v in found.values()
        if v.ok and (parsed := parse_volid(v.archive, UTC)) is not None and parsed[1] == vmid
    ]
    return max(same, key=lambda v: v.when).seconds if same else None
