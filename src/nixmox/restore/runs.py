"""A ``restore`` run as the CLI starts it, and its typed journal summary.

:func:`prepare_restore` resolves the guest, checks the token holds what
this restore needs (:mod:`nixmox.restore.privileges`), lists its archives
with their last verification (``--list`` prints them and stops), chooses one
and checks the target before anything changes; :meth:`RestoreRun.work` is the job for
:func:`nixmox.runtime.run.run_job`. :class:`RestoreSummary` is what the
journal stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nixmox.adapters.locks import Claim, guest_claims
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import granted, holds, preflight
from nixmox.adapters.proxmox.settings import connection
from nixmox.backup.archives import archives_of
from nixmox.backup.job import content_path
from nixmox.backup.privileges import vzdump_prunes
from nixmox.core import jsonrows
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.confirm import Confirm
from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.results import result_word
from nixmox.core.zones import zone
from nixmox.inventory.model import Backups, Guest, Inventory
from nixmox.restore.choose import Candidate, candidates, choose, parse_at
from nixmox.restore.job import Mode, RestoreOptions, Restorer, RestoreResult, Step, target_row
from nixmox.restore.privileges import listing_needs, restore_needs, visible
from nixmox.restore.verified import verifications
from nixmox.rules.timespan import parse_timespan


def find_guest(inv: Inventory, name: str) -> Guest:
    """The inventory's guest called ``name`` (or with that VMID)."""
    for g in inv.guests:
        if g.name == name or str(g.vmid) == name:
            return g
    raise ConfigError(f"{name}: no such guest in the inventory")


def backup_settings(inv: Inventory) -> Backups:
    """``[backups]``: where the archives are."""
    if inv.backups is None:
        raise ConfigError("the inventory has no [backups] section: no archives to restore from")
    return inv.backups


def list_candidates(
    api: Proxmox, inv: Inventory, guest: Guest, state: Path | None = None
) -> list[Candidate]:
    """The guest's archives on the backup storage, newest first, with their verifications."""
    settings = backup_settings(inv)
    content = api.get(content_path(guest.node, settings.storage), content="backup", vmid=guest.vmid)
    found = archives_of(content or [], guest.vmid, guest.pve_type, zone(inv.timezone))
    return candidates(found, verifications(state))


def restore_timeout(settings: Backups) -> float:
    """How long a restore, a start or the agent may take: ``[backups.verify] timeout``."""
    return parse_timespan(settings.verify.timeout) if settings.verify else 600.0


def step_row(s: Step) -> dict[str, Any]:
    return {"step": s.name, "result": s.result, "seconds": round(s.seconds, 1), "detail": s.detail}


def result_row(r: RestoreResult, now: datetime | None = None) -> dict[str, Any]:
    """One restore as JSON (journal and ``--json``)."""
    age = None
    if r.archive_time is not None and now is not None:
        age = int((now - r.archive_time).total_seconds())
    return {
        "guest": r.guest,
        "vmid": r.vmid,
        "target": r.target,
        "mode": r.mode,
        "archive": r.archive,
        "archive_time": r.archive_time.isoformat() if r.archive_time else None,
        "data_age_seconds": age,
        "kept": r.kept,
        "removed": r.removed,
        "steps": [step_row(s) for s in r.steps],
        "seconds": round(r.seconds, 1),
        "health": r.health,
        "ok": r.ok,
        "message": r.message,
    }


def result_from_json(row: Mapping[str, Any]) -> RestoreResult:
    when = jsonrows.optional_text(row, "archive_time")
    mode: Mode = "as new" if jsonrows.text(row, "mode") == "as new" else "in place"
    return RestoreResult(
        guest=jsonrows.text(row, "guest"),
        vmid=jsonrows.integer(row, "vmid"),
        target=jsonrows.integer(row, "target"),
        mode=mode,
        archive=jsonrows.optional_text(row, "archive"),
        archive_time=datetime.fromisoformat(when) if when else None,
        kept=jsonrows.optional_text(row, "kept"),
        removed=jsonrows.texts(row, "removed"),
        steps=[
            Step(
                jsonrows.text(s, "step"),
                jsonrows.text(s, "result"),
                jsonrows.real(s, "seconds"),
                jsonrows.text(s, "detail"),
            )
            for s in jsonrows.rows(row, "steps")
        ],
        health=jsonrows.text(row, "health"),
        ok=bool(row.get("ok")),
        message=jsonrows.text(row, "message"),
    )


@dataclass(frozen=True)
class RestoreSummary:
    """A ``restore`` run: the one guest's steps; with ``--dry-run``, the calls."""

    restore: RestoreResult
    requests: int = 0
    now: datetime | None = None  # for the data age; not journaled on its own

    @property
    def result(self) -> str:
        return result_word(self.restore.ok)

    def to_json(self) -> dict[str, Any]:
        return {"restore": result_row(self.restore, self.now), "requests": self.requests}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RestoreSummary:
        row = data.get("restore")
        restore = result_from_json(row if isinstance(row, Mapping) else {})
        return cls(restore, jsonrows.integer(data, "requests"))


@dataclass(frozen=True)
class RestoreRun:
    """A restore that has chosen its archive; :meth:`work` runs it."""

    inv: Inventory
    guest: Guest
    api: Proxmox
    found: list[Candidate]
    chosen: Candidate | None
    options: RestoreOptions
    clock: Clock

    @property
    def claims(self) -> list[Claim]:
        """What a restore locks: the guest it restores to (in place: the guest itself; as a
        copy: the new VMID), so a backup, an update or an apply of it waits."""
        return guest_claims([(self.options.as_vmid or self.guest.vmid, self.guest.node)])

    def work(self, confirm: Confirm, progress: Progress = SILENT) -> Callable[[], RestoreSummary]:
        """The restore, asking ``confirm`` before it replaces anything; ``progress`` hears
        each step's start and end."""
        if self.chosen is None:
            raise NixmoxError(f"no archive of {self.guest.name} matches")
        chosen = self.chosen
        settings = backup_settings(self.inv)
        restorer = Restorer(
            self.api,
            self.inv,
            self.guest,
            settings,
            self.options,
            confirm=confirm,
            clock=self.clock,
            progress=progress,
        )
        row = target_row(self.api, restorer.target)
        # Refused (locked, taken) before the run is journaled: nothing was done.
        restorer.check(row)

        def restore() -> RestoreSummary:
            result = restorer.run(chosen, row)
            return RestoreSummary(result, self.api.calls, self.clock.now())

        return restore


def prepare_restore(
    inv: Inventory,
    name: str,
    *,
    at: str | None = None,
    archive: str | None = None,
    as_vmid: int | None = None,
    dry_run: bool = False,
    list_only: bool = False,
    clock: Clock = SYSTEM_CLOCK,
) -> RestoreRun:
    """Resolve the guest, check the token holds what this restore needs (``list_only``:
    what listing the archives needs) and choose its archive (reads only)."""
    if at is not None and archive is not None:
        raise ConfigError("--at and --archive choose the archive two ways: give one")
    guest = find_guest(inv, name)
    settings = backup_settings(inv)
    api = Proxmox(connection(inv.proxmox))
    held = granted(api)
    keep_all = False
    if list_only:
        preflight(api, listing_needs(settings.storage, guest), "restore", dry_run=False, held=held)
    else:
        target = as_vmid or guest.vmid
        row = target_row(api, target)
        exists, running = row is not None, row is not None and row.status == "running"
        if row is None and target == guest.vmid and not holds(held, f"/vms/{target}", "VM.Audit"):
            # The token cannot see the guest, so it may be there and running: asked as such
            # (VM.Audit is among what is named missing, so this run is refused anyway).
            exists = running = True
        if exists and target == guest.vmid:
            keep_all = vzdump_prunes(api, guest.node, settings.storage)
        needs = restore_needs(
            guest, settings, target, exists=exists, running=running, keep_all_param=keep_all
        )
        preflight(api, needs, "restore", dry_run=dry_run, held=held)
    # A storage the token may not list is no archive at all (a dry run goes on to show it).
    found = list_candidates(api, inv, guest) if visible(held, settings.storage) else []
    when = parse_at(at, zone(inv.timezone)) if at is not None else None
    chosen = choose(found, at=when, volid=archive)
    options = RestoreOptions(
        as_vmid=as_vmid,
        dry_run=dry_run,
        timeout=restore_timeout(settings),
        keep_all_param=keep_all,
    )
    return RestoreRun(inv, guest, api, found, chosen, options, clock)
