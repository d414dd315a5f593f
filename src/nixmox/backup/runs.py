"""A ``backup`` or ``backup verify`` run: which guests, the work, and its typed summary.

:func:`prepare_backup` and :func:`prepare_verify` refuse a bad selection
before anything runs and return the work for :func:`nixmox.runtime.run.run_job`;
:class:`BackupSummary` and :class:`VerifySummary` are what the journal stores
(``history``, ``status`` and the metrics read them back through ``from_json``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast, get_args

from nixmox.adapters.journal import state_dir
from nixmox.adapters.locks import Claim, guest_claims
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import preflight
from nixmox.adapters.proxmox.settings import connection
from nixmox.backup.job import BackupJob, GuestResult
from nixmox.backup.privileges import backup_needs, verify_needs, vzdump_prunes
from nixmox.backup.scratch import Outcome, ScratchRecords, Settled
from nixmox.backup.verify import VerifyResult, clean_leftovers, verify_guest
from nixmox.core import interrupt, jsonrows
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ConfigError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.results import AllPartsOk
from nixmox.core.zones import zone
from nixmox.inventory.model import Backups, BackupVerify, Guest, Inventory
from nixmox.rules.timespan import parse_timespan

log = logging.getLogger("nixmox.verify")


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


def backup_claims(inv: Inventory, names: list[str]) -> list[Claim]:
    """What a ``backup`` or ``backup verify`` run locks: its guests (and their nodes, shared)."""
    return guest_claims((g.vmid, g.node) for g in choose_guests(inv, names)[1])


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
    progress: Progress = SILENT,
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
        progress=progress,
    )

    def back_up() -> BackupSummary:
        return BackupSummary(tuple(job.run(guests)), api.calls)

    return back_up


def settled_row(s: Settled) -> dict[str, Any]:
    """A scratch guest an earlier run left, and what this run did about it (JSON)."""
    return {"vmid": s.vmid, "guest": s.guest, "outcome": s.outcome, "message": s.message}


@dataclass(frozen=True)
class VerifySummary(AllPartsOk):
    """A ``backup verify`` run: each guest's restore check, and the scratch guests
    earlier (killed) runs left behind and what became of them."""

    guests: tuple[VerifyResult, ...]
    leftovers: tuple[Settled, ...] = ()

    def parts(self) -> Iterable[VerifyResult | Settled]:
        return (*self.guests, *self.leftovers)

    def to_json(self) -> dict[str, Any]:
        # "guest" as well, as backup's and update's rows say (both keys stay).
        return {
            "guests": [{"guest": g.name, **asdict(g)} for g in self.guests],
            "leftovers": [settled_row(s) for s in self.leftovers],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifySummary:
        return cls(
            tuple(jsonrows.record(VerifyResult, r) for r in jsonrows.rows(data, "guests")),
            tuple(
                Settled(
                    vmid=jsonrows.integer(r, "vmid"),
                    guest=jsonrows.text(r, "guest"),
                    outcome=_outcome(jsonrows.text(r, "outcome")),
                    message=jsonrows.text(r, "message"),
                )
                for r in jsonrows.rows(data, "leftovers")
            ),
        )


def _outcome(word: str) -> Outcome:
    for known in get_args(Outcome):
        if word == known:
            return cast(Outcome, known)
    return "unconfirmed"


def prepare_verify(
    inv: Inventory,
    names: list[str],
    *,
    directory: Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    progress: Progress = SILENT,
) -> Callable[[], VerifySummary]:
    """The restore check of the chosen guests' newest archives, ready to run.

    It first settles the scratch guests that killed runs left (their records
    are under the state directory, ``directory``)."""
    settings, guests = choose_guests(inv, names)
    api = Proxmox(connection(inv.proxmox))
    tz = zone(inv.timezone)
    records = ScratchRecords(directory or state_dir())
    timeout = parse_timespan((settings.verify or BackupVerify()).timeout)
    # Before the first restore: a privilege found missing halfway would leave a scratch
    # guest behind that this token may not be able to remove.
    preflight(api, verify_needs(settings, guests, inv.storages), "backup verify", dry_run=False)

    def verify() -> VerifySummary:
        leftovers = clean_leftovers(api, records, timeout=timeout, clock=clock)
        for s in leftovers:
            progress.step(f"left by an earlier run ({s.guest}): {s.message}")
        results = []
        for g in guests:
            if interrupt.stopping():
                message = f"not started: interrupted by {interrupt.signal_name()}"
                results.append(VerifyResult(g.name, g.vmid, message=message))
            else:
                progress.start(g.name, f"verifying {g.name}'s newest backup")
                r = verify_guest(
                    api,
                    g,
                    settings,
                    tz,
                    inv.storages,
                    clock=clock,
                    records=records,
                    progress=progress,
                )
                progress.end(g.name, f"{g.name}: {'verified' if r.ok else 'FAILED'}: {r.message}")
                results.append(r)
        return VerifySummary(tuple(results), tuple(leftovers))

    return verify
