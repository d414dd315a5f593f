"""Which typed summary a journaled run is read back as, by its command.

Every job's summary type sits next to the job and reads an old row leniently
(``from_json``); ``history``, ``status``, the metrics and the notifications
read runs through :func:`read` instead of picking the JSON apart by key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nixmox.adapters.journal import Run
from nixmox.backup.runs import BackupSummary, VerifySummary
from nixmox.provision.run import ApplySummary
from nixmox.replicate.runs import ReplicateSummary
from nixmox.restore.rebuild import RebuildSummary
from nixmox.restore.runs import RestoreSummary
from nixmox.snapshot.runs import SnapshotSummary
from nixmox.templates.upload import TemplateUpload
from nixmox.updates.outcome import UpdateSummary
from nixmox.windows.provision_run import ProvisionSummary

Summary = (
    BackupSummary
    | VerifySummary
    | SnapshotSummary
    | ReplicateSummary
    | ApplySummary
    | UpdateSummary
    | ProvisionSummary
    | TemplateUpload
    | RestoreSummary
    | RebuildSummary
)

#: The journal's command word -> the summary type its runs are read back as.
READERS: dict[str, Callable[[Mapping[str, Any]], Summary]] = {
    "backup": BackupSummary.from_json,
    "backup verify": VerifySummary.from_json,
    "snapshot": SnapshotSummary.from_json,
    "replicate": ReplicateSummary.from_json,
    "apply": ApplySummary.from_json,
    "update host": UpdateSummary.from_json,
    "update nixos": UpdateSummary.from_json,
    "update windows": UpdateSummary.from_json,
    "windows provision": ProvisionSummary.from_json,
    "template upload": TemplateUpload.from_json,
    "restore": RestoreSummary.from_json,
    "rebuild": RebuildSummary.from_json,
}


def read(run: Run) -> Summary | None:
    """``run``'s summary as its job's type; ``None`` for a command without one."""
    reader = READERS.get(run.command)
    return None if reader is None else reader(run.summary)
