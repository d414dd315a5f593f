"""A ``backup`` or ``backup verify`` run: which guests, the work, and its typed summary.

:func:`prepare_backup` and :func:`prepare_verify` refuse a bad selection
before anything runs and return the work for :func:`nixmox.runtime.run.run_job`;
:class:`BackupSummary` and :class:`VerifySummary` are what the journal stores
(``history``, ``status`` and the metrics read them back through ``from_json``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import preflight
from nixmox.adapters.proxmox.settings import connection
from nixmox.backup.job import BackupJob, GuestResult
from nixmox.backup.privileges import backup_needs, verify_needs, vzdump_prunes
from nixmox.backup.verify import VerifyResult, verify_guest
from nixmox.core import interrupt, jsonrows
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ConfigError
from nixmox.core.results import AllPartsOk
from nixmox.core.zones import zone
from nixmox.inventory.model import Backups, Guest, Inventory


def choose_guests(inv: Inventory, names: list[str]) -> tuple[Backups, list[Guest]]:
    """``[backups]`` and the guests to work on: those named, else the section's own choice."""
    if inv.backups is None:
        raise ConfigError("the inventory has no [backups] section: nothing to back up")
    settings = inv.backups
    known = {g.name: g for g in inv.guests}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--guest {unknown[0]}: no such guest in the inventory")
    if names:
        guests = [known[n] for n in names]
    else:
        chosen = settings.guests or [g.name for g in inv.guests]
        guests = [known[n] for n in chosen if n not in settings.exclude]
    if not guests:
        raise ConfigError("no guest to back up (check [backups] guests and exclude)")
    return settings, guests


def guest_row(r: GuestResult) -> dict[str, Any]:
    """One guest's backup as JSON (journal and ``--json``)."""
    # "name" as well: verify's rows and status's say "name" (both keys stay).
    return {
        "guest": r.name,
        "name": r.name,
        "vmid": r.vmid,
        "result": r.result,
        "message": r.message,
        "archive": r.volid,
        "size": r.size,
        "seconds": round(r.seconds, 1),
        "kept": r.kept,
        "removed": r.removed,
        "errors": r.errors,
    }


def _guest_from_json(row: Mapping[str, Any]) -> GuestResult:
    # The node is not journaled (it reads as "").
    return jsonrows.record(GuestResult, row, name="guest", volid="archive")


@dataclass(frozen=True)
class BackupSummary(AllPartsOk):
    """A ``backup`` run: each guest's result and the API requests it made."""

    guests: tuple[GuestResult, ...]
    requests: int = 0

    def parts(self) -> Iterable[GuestResult]:
        return self.guests

    def to_json(self) -> dict[str, Any]:
        return {"guests": [guest_row(g) for g in self.guests], "requests": self.requests}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackupSummary:
        return cls(
            tuple(_guest_from_json(r) for r in jsonrows.rows(data, "guests")),
            jsonrows.integer(data, "requests"),
        )


def prepare_backup(
    inv: Inventory,
    names: list[str],
    *,
    protected: bool,
    dry_run: bool,
    clock: Clock = SYSTEM_CLOCK,
) -> Callable[[], BackupSummary]:
    """The backup (and prune) of the chosen guests, ready to run."""
    settings, guests = choose_guests(inv, names)
    api = Proxmox(connection(inv.proxmox))
    # Before any vzdump: does the storage prune on its own (then vzdump is told not to,
    # which takes Datastore.Allocate), and does the token hold what this run needs?
    keep_all = any(
        vzdump_prunes(api, node, settings.storage) for node in sorted({g.node for g in guests})
    )
    needs = backup_needs(settings.storage, guests, keep_all_param=keep_all)
    preflight(api, needs, "backup", dry_run=dry_run)
    job = BackupJob(
        api,
        settings,
        zone(inv.timezone),
        protected=protected,
        dry_run=dry_run,
        keep_all_param=keep_all,
        clock=clock,
    )

    def back_up() -> BackupSummary:
        return BackupSummary(tuple(job.run(guests)), api.calls)

    return back_up


@dataclass(frozen=True)
class VerifySummary(AllPartsOk):
    """A ``backup verify`` run: each guest's restore check."""

    guests: tuple[VerifyResult, ...]

    def parts(self) -> Iterable[VerifyResult]:
        return self.guests

    def to_json(self) -> dict[str, Any]:
        # "guest" as well, as backup's and update's rows say (both keys stay).
        return {"guests": [{"guest": g.name, **asdict(g)} for g in self.guests]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifySummary:
        rows = jsonrows.rows(data, "guests")
        return cls(tuple(jsonrows.record(VerifyResult, r) for r in rows))


def prepare_verify(inv: Inventory, names: list[str]) -> Callable[[], VerifySummary]:
    """The restore check of the chosen guests' newest archives, ready to run."""
    settings, guests = choose_guests(inv, names)
    api = Proxmox(connection(inv.proxmox))
    tz = zone(inv.timezone)
    # Before the first restore: a privilege found missing halfway would leave a scratch
    # guest behind that this token may not be able to remove.
    preflight(api, verify_needs(settings, guests, inv.storages), "backup verify", dry_run=False)

    def verify() -> VerifySummary:
        results = []
        for g in guests:
            if interrupt.stopping():
                message = f"not started: interrupted by {interrupt.signal_name()}"
                results.append(VerifyResult(g.name, g.vmid, message=message))
            else:
                results.append(verify_guest(api, g, settings, tz, inv.storages))
        return VerifySummary(tuple(results))

    return verify
