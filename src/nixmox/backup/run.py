"""`nixmox backup` and `nixmox backup verify` as jobs: which guests, one run, its summary.

:func:`chosen_guests` applies ``--guest`` and ``[backups] guests``/``exclude``;
:class:`BackupRun` and :class:`VerifyRun` are built (and fail on bad input)
before anything is journaled, and their ``run()`` is what the runtime
journals. :class:`BackupSummary` and :class:`VerifySummary` are the journal
rows' shapes, written here and read back by ``observe``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.backup.job import BackupJob, GuestResult
from nixmox.backup.verify import VerifyResult, verify_guest
from nixmox.core import jsonrows
from nixmox.core.errors import ConfigError
from nixmox.core.zones import zone
from nixmox.inventory.model import Backups, Guest, Inventory


def chosen_guests(inv: Inventory, names: list[str]) -> tuple[Backups, list[Guest]]:
    """``[backups]`` and the guests to back up: those named, else the configured set."""
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


def _guest_json(r: GuestResult) -> dict[str, Any]:
    return {
        "guest": r.name,
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
    return GuestResult(
        name=jsonrows.text(row, "guest"),
        vmid=jsonrows.integer(row, "vmid"),
        node="",  # not journaled
        result=jsonrows.text(row, "result"),
        message=jsonrows.text(row, "message"),
        volid=jsonrows.optional_text(row, "archive"),
        size=jsonrows.integer(row, "size"),
        seconds=jsonrows.real(row, "seconds"),
        kept=jsonrows.integer(row, "kept"),
        removed=jsonrows.texts(row, "removed"),
        errors=jsonrows.texts(row, "errors"),
    )


@dataclass(frozen=True)
class BackupSummary:
    """What a ``backup`` run did: each guest's result, and the API requests it took."""

    guests: tuple[GuestResult, ...]
    requests: int = 0

    @property
    def result(self) -> str:
        return "ok" if all(g.ok for g in self.guests) else "failed"

    def to_json(self) -> dict[str, Any]:
        return {"guests": [_guest_json(g) for g in self.guests], "requests": self.requests}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackupSummary:
        rows = jsonrows.rows(data, "guests")
        return cls(tuple(_guest_from_json(r) for r in rows), jsonrows.integer(data, "requests"))


class BackupRun:
    """One ``backup`` run, ready to go: the guests chosen and the API connection set up."""

    def __init__(self, inv: Inventory, names: list[str], *, protected: bool, dry_run: bool) -> None:
        settings, self.guests = chosen_guests(inv, names)
        self.api = Proxmox(connection(inv.proxmox))
        self.job = BackupJob(
            self.api, settings, zone(inv.timezone), protected=protected, dry_run=dry_run
        )

    def run(self) -> BackupSummary:
        """Back up and prune every chosen guest (see :class:`BackupJob`)."""
        results = self.job.run(self.guests)
        return BackupSummary(tuple(results), self.api.calls)


@dataclass(frozen=True)
class VerifySummary:
    """What a ``backup verify`` run found for each guest."""

    guests: tuple[VerifyResult, ...]

    @property
    def result(self) -> str:
        return "ok" if all(g.ok for g in self.guests) else "failed"

    def to_json(self) -> dict[str, Any]:
        return {"guests": [asdict(g) for g in self.guests]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifySummary:
        return cls(
            tuple(
                VerifyResult(
                    name=jsonrows.text(row, "name"),
                    vmid=jsonrows.integer(row, "vmid"),
                    ok=bool(row.get("ok")),
                    archive=jsonrows.optional_text(row, "archive"),
                    scratch=jsonrows.optional_integer(row, "scratch"),
                    seconds=jsonrows.real(row, "seconds"),
                    message=jsonrows.text(row, "message"),
                    cleaned=bool(row.get("cleaned", True)),
                )
                for row in jsonrows.rows(data, "guests")
            )
        )


class VerifyRun:
    """One ``backup verify`` run: restore, boot, check and destroy each guest's newest archive."""

    def __init__(self, inv: Inventory, names: list[str]) -> None:
        self.settings, self.guests = chosen_guests(inv, names)
        self.api = Proxmox(connection(inv.proxmox))
        self.zone = zone(inv.timezone)
        self.storages = inv.storages

    def run(self) -> VerifySummary:
        return VerifySummary(
            tuple(
                verify_guest(self.api, g, self.settings, self.zone, self.storages)
                for g in self.guests
            )
        )
