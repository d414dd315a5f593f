"""``rebuild``: the whole server back from the inventory and the backups.

First the plan (:func:`plan_guests` is pure): the infrastructure (storages,
bridges, the backup job) exactly as ``apply`` would make it, then per declared
guest, in startup order, what happens to it: restored from an archive (with
its age, the recovery point, and the time ``backup verify`` measured for it,
the recovery time), created from its template because there is no archive
(said loudly: its data is not coming back), or left alone because it exists
(``--replace`` restores over it, kept first).

Before anything changes, the token is checked for everything this plan
takes (:func:`~nixmox.restore.privileges.rebuild_needs`). Then the run: the
infrastructure, then each guest, one failure never
stopping the others. Progress is written to ``rebuild-progress.json`` in the
state directory after each guest exists again and after it is up, so a run
that was interrupted (or crashed) is continued by the next one: a guest the
earlier run restored is not restored again, only brought up. The file is
removed once a rebuild finished every guest. The run ends by reading the plan
again: empty means the server matches the inventory.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from nixmox.adapters.journal import ensure_state_dir, state_dir
from nixmox.adapters.locks import Claim, guest_claims
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import GuestRow, read_guests
from nixmox.adapters.proxmox.permissions import Need, granted, preflight
from nixmox.adapters.proxmox.settings import connection
from nixmox.backup.privileges import vzdump_prunes
from nixmox.core import interrupt, jsonrows
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.confirm import Confirm
from nixmox.core.errors import NixmoxError, NotConfirmed
from nixmox.core.files import write_atomically
from nixmox.core.progress import SILENT, Progress
from nixmox.inventory.model import Guest, Inventory
from nixmox.provision.apply import Applier, ApplyOutcome
from nixmox.provision.diff import GuestPlan, ObjectPlan, Plan
from nixmox.provision.run import INFRASTRUCTURE, passthrough_blockers, read_plan
from nixmox.restore.choose import Candidate, Verification, choose, human_age
from nixmox.restore.job import RestoreOptions, Restorer, RestoreResult
from nixmox.restore.privileges import rebuild_needs, visible
from nixmox.restore.runs import (
    backup_settings,
    list_candidates,
    restore_timeout,
    result_from_json,
    result_row,
)
from nixmox.restore.verified import expected_seconds, verifications

log = logging.getLogger("nixmox.rebuild")

PROGRESS_FILE = "rebuild-progress.json"
Action = Literal["restore", "create", "leave", "replace", "resume", "done"]


@dataclass(frozen=True)
class GuestRecovery:
    """What the rebuild does for one declared guest."""

    name: str
    vmid: int
    action: Action
    candidate: Candidate | None = None
    expected_seconds: float | None = None
    note: str = ""

    @property
    def archive(self) -> str | None:
        return self.candidate.archive.volid if self.candidate else None

    @property
    def archive_time(self) -> datetime | None:
        return self.candidate.archive.time if self.candidate else None


def startup_order(guests: Iterable[Guest]) -> list[Guest]:
    """The order Proxmox starts guests at boot (pve-manager's start list): those
    declared to run (``onboot``) first, then the others; within each, by
    ``startup.order`` (guests without one after those with one), then by VMID."""

    def key(g: Guest) -> tuple[bool, float, int]:
        order = g.startup.order if g.startup is not None else None
        return (not g.onboot, math.inf if order is None else order, g.vmid)

    return sorted(guests, key=key)


def plan_guests(
    guests: Sequence[Guest],
    existing: Mapping[int, GuestRow],
    archives: Mapping[int, Sequence[Candidate]],
    found: Mapping[str, Verification],
    progress: Mapping[int, str],
    *,
    verified: bool,
    replace: bool,
) -> list[GuestRecovery]:
    """Per guest, in startup order, what the rebuild does (pure).

    ``progress`` is what an earlier, unfinished rebuild recorded per VMID:
    ``restored`` (the guest exists again) or ``done`` (it is up).
    """
    rows = []
    for g in startup_order(guests):
        chosen = choose(archives.get(g.vmid, ()), verified=verified)
        expected = expected_seconds(dict(found), chosen.archive.volid, g.vmid) if chosen else None
        earlier = progress.get(g.vmid)
        if g.vmid in existing and earlier == "done":
            rows.append(GuestRecovery(g.name, g.vmid, "done", note="done by an earlier run"))
        elif g.vmid in existing and earlier == "restored":
            rows.append(GuestRecovery(g.name, g.vmid, "resume", note="restored by an earlier run"))
        elif g.vmid in existing and not replace:
            rows.append(
                GuestRecovery(g.name, g.vmid, "leave", note="exists: left alone (--replace)")
            )
        elif chosen is None:
            why = "no verified archive" if verified and archives.get(g.vmid) else "NO ARCHIVE"
            if g.vmid in existing:
                rows.append(GuestRecovery(g.name, g.vmid, "leave", note=f"exists; {why}"))
            else:
                rows.append(
                    GuestRecovery(
                        g.name,
                        g.vmid,
                        "create",
                        note=f"{why}: created EMPTY from its template, its data is not restored",
                    )
                )
        else:
            action: Action = "replace" if g.vmid in existing else "restore"
            note = "exists: kept first as a protected backup" if action == "replace" else ""
            rows.append(GuestRecovery(g.name, g.vmid, action, chosen, expected, note))
    return rows


# -- progress --------------------------------------------------------------------


def read_progress(directory: Path) -> dict[int, str]:
    """VMID -> ``restored``/``done`` from an unfinished rebuild (nothing without one)."""
    path = directory / PROGRESS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise NixmoxError(f"{path}: unreadable ({exc}); remove it to start over") from None
    guests = data.get("guests") if isinstance(data, dict) else None
    if not isinstance(guests, dict):
        return {}
    return {int(k): str(v) for k, v in guests.items() if str(k).isdigit()}


def write_progress(directory: Path, progress: Mapping[int, str]) -> None:
    """Record what this rebuild got done so far (atomically, private)."""
    ensure_state_dir(directory)
    doc = {"guests": {str(k): v for k, v in sorted(progress.items())}}
    write_atomically(directory / PROGRESS_FILE, json.dumps(doc, indent=2).encode(), 0o600)


# -- the report --------------------------------------------------------------------


@dataclass(frozen=True)
class RebuildSummary:
    """A ``rebuild`` run: the infrastructure, each guest's result, and the final plan."""

    infrastructure: tuple[ApplyOutcome, ...]
    guests: tuple[tuple[GuestRecovery, RestoreResult | None], ...]
    plan_empty: bool | None = None
    plan_left: tuple[str, ...] = ()
    now: datetime | None = None
    calls: tuple[str, ...] = ()  # --dry-run; not journaled

    @property
    def failed(self) -> list[str]:
        bad = [o.name for o in self.infrastructure if o.result == "failed"]
        return bad + [r.name for r, res in self.guests if res is not None and not res.ok]

    @property
    def result(self) -> str:
        return "failed" if self.failed or self.plan_empty is False else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "infrastructure": [dict(o.__dict__) for o in self.infrastructure],
            "guests": [guest_report(r, res, self.now) for r, res in self.guests],
            "plan_empty": self.plan_empty,
            "plan_left": list(self.plan_left),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RebuildSummary:
        rows: list[tuple[GuestRecovery, RestoreResult | None]] = []
        for g in jsonrows.rows(data, "guests"):
            action = jsonrows.text(g, "action")
            recovery = GuestRecovery(
                jsonrows.text(g, "guest"),
                jsonrows.integer(g, "vmid"),
                action if action in _ACTIONS else "leave",  # type: ignore[arg-type]
                note=jsonrows.text(g, "note"),
            )
            result = g.get("result")
            rows.append(
                (recovery, result_from_json(result) if isinstance(result, Mapping) else None)
            )
        empty = data.get("plan_empty")
        return cls((), tuple(rows), empty if isinstance(empty, bool) else None)


_ACTIONS = ("restore", "create", "leave", "replace", "resume", "done")


def guest_report(
    r: GuestRecovery, res: RestoreResult | None, now: datetime | None
) -> dict[str, Any]:
    """One guest of the rebuild report: what was planned, what happened."""
    age = None
    if r.archive_time is not None and now is not None:
        age = int((now - r.archive_time).total_seconds())
    return {
        "guest": r.name,
        "vmid": r.vmid,
        "action": r.action,
        "archive": r.archive,
        "data_age_seconds": age,
        "expected_seconds": None if r.expected_seconds is None else round(r.expected_seconds, 1),
        "note": r.note,
        "result": None if res is None else result_row(res, now),
    }


# -- the run ---------------------------------------------------------------------


@dataclass
class RebuildRun:
    """A rebuild that has made its plan; :meth:`work` carries it out."""

    inv: Inventory
    api: Proxmox
    infrastructure: Plan
    guests: list[GuestRecovery]
    replace: bool
    dry_run: bool
    host_root: Path
    directory: Path
    progress: dict[int, str] = field(default_factory=dict)
    clock: Clock = SYSTEM_CLOCK
    #: The keeps (``--replace``) tell vzdump not to prune (see RestoreOptions).
    keep_all_param: bool = False
    #: What this rebuild needs the token to hold (:func:`rebuild_needs`).
    needs: list[Need] = field(default_factory=list)

    @property
    def infrastructure_changes(self) -> list[str]:
        """The infrastructure changes the rebuild makes first, as plan names them."""
        objects = [*self.infrastructure.storages, *self.infrastructure.bridges]
        objects += list(self.infrastructure.jobs)
        return [f"{o.action} {o.name}" for o in objects if o.action not in ("none",)]

    @property
    def claims(self) -> list[Claim]:
        """What a rebuild locks: every guest it restores, creates or brings up, and, when
        it changes storages, bridges or the backup job, the infrastructure as ``apply``
        does (so an apply waits for it, and it for an apply)."""
        by_name = {g.name: g for g in self.inv.guests}
        touched = [by_name[r.name] for r in self.guests if r.action not in ("leave", "done")]
        claims = guest_claims((g.vmid, g.node) for g in touched)
        return [INFRASTRUCTURE, *claims] if self.infrastructure_changes else claims

    def work(
        self,
        confirm: Confirm,
        progress: Progress = SILENT,
    ) -> Callable[[], RebuildSummary]:
        """The rebuild; with ``--replace`` it asks once before restoring over anything."""
        replacing = [g.name for g in self.guests if g.action == "replace"]
        if replacing and not self.dry_run:
            question = (
                f"Restore over {', '.join(replacing)} (each stopped and kept first as a "
                "protected backup)?"
            )
            if not confirm(question, "refusing to --replace without --yes (no terminal to ask)"):
                raise NotConfirmed("not rebuilt: not confirmed")

        def rebuild() -> RebuildSummary:
            return self._run(progress)

        return rebuild

    def _run(self, progress: Progress) -> RebuildSummary:
        # Data ages are measured from when the recovery started, not from when it ended.
        began = self.clock.now()
        settings = backup_settings(self.inv)
        applier = Applier(
            self.api,
            self.inv,
            dry_run=self.dry_run,
            passthrough_blockers=passthrough_blockers(self.inv, self.api, self.host_root),
            clock=self.clock,
        )
        infra = Plan(
            guests=(),
            bridges=self.infrastructure.bridges,
            storages=self.infrastructure.storages,
            unmanaged=(),
            jobs=self.infrastructure.jobs,
        )
        outcomes = tuple(applier.apply(infra))
        for o in outcomes:
            progress.step(f"{o.kind} {o.name}: {o.result}" + (f": {o.error}" if o.error else ""))
        by_name = {g.name: g for g in self.inv.guests}
        options = RestoreOptions(
            dry_run=self.dry_run,
            timeout=restore_timeout(settings),
            keep_all_param=self.keep_all_param,
        )
        results: list[tuple[GuestRecovery, RestoreResult | None]] = []
        for recovery in self.guests:
            if recovery.action in ("leave", "done"):
                results.append((recovery, None))
                continue
            guest = by_name[recovery.name]
            result = RestoreResult(guest.name, guest.vmid, guest.vmid, "in place")
            if interrupt.stopping():
                result.message = f"not started: interrupted by {interrupt.signal_name()}"
                results.append((recovery, result))
                continue
            restorer = Restorer(
                self.api,
                self.inv,
                guest,
                settings,
                options,
                clock=self.clock,
                progress=progress,
                on_restored=self._recorder(guest.vmid),
            )
            progress.start(guest.name, f"{recovery.action} {guest.name} ({guest.vmid})")
            if recovery.action == "create":
                result = restorer.create(result, applier)
            elif recovery.action == "resume":
                result = restorer.bring_up(result)
            else:
                assert recovery.candidate is not None
                row = read_guests(self.api).get(guest.vmid)
                try:
                    result = restorer.run(recovery.candidate, row)
                except NixmoxError as exc:  # refused (locked): this guest only
                    result.message = str(exc)
            if result.ok and not self.dry_run:
                self._record(guest.vmid, "done")
            results.append((recovery, result))
            state = "ok" if result.ok else "FAILED"
            progress.end(guest.name, f"{guest.name}: {state}: {result.message}")
        summary = RebuildSummary(outcomes, tuple(results), now=began, calls=tuple(applier.calls))
        if self.dry_run:
            return summary
        after = read_plan(self.inv).plan
        objects: list[GuestPlan | ObjectPlan] = [*after.storages, *after.bridges, *after.jobs]
        objects += after.guests
        left = tuple(f"{p.name}: {p.action}" for p in objects if p.action in ("create", "update"))
        summary = RebuildSummary(outcomes, tuple(results), not after.has_changes, left, began)
        if summary.result == "ok" and not interrupt.stopping():
            (self.directory / PROGRESS_FILE).unlink(missing_ok=True)
        return summary

    def _recorder(self, vmid: int) -> Callable[[RestoreResult], None]:
        def restored(_result: RestoreResult) -> None:
            self._record(vmid, "restored")

        return restored

    def _record(self, vmid: int, state: str) -> None:
        self.progress[vmid] = state
        write_progress(self.directory, self.progress)


def prepare_rebuild(
    inv: Inventory,
    *,
    verified: bool = False,
    replace: bool = False,
    dry_run: bool = False,
    host_root: Path = Path("/"),
    directory: Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    check: bool = True,
) -> RebuildRun:
    """Read everything the rebuild plan needs and, with ``check``, refuse a run the token
    may not carry out (a dry run only warns) before anything changes (reads only)."""
    settings = backup_settings(inv)
    directory = directory or state_dir()
    api = Proxmox(connection(inv.proxmox))
    # One read of the cluster: the infrastructure's plan, the guests there, what the
    # token holds, and what a clone would bring (apply's create asks for it).
    report = read_plan(inv, api)
    infrastructure = report.plan
    existing = {row.vmid: row for row in report.actual.resources}
    found = verifications(directory)
    held = report.actual.granted if report.actual.granted is not None else granted(api)
    # A storage the token may not list has no archives for it; the preflight names why.
    listed = visible(held, settings.storage)
    archives = {
        g.vmid: list_candidates(api, inv, g, directory) if listed else [] for g in inv.guests
    }
    progress = read_progress(directory)
    guests = plan_guests(
        inv.guests, existing, archives, found, progress, verified=verified, replace=replace
    )
    by_name = {g.name: g for g in inv.guests}
    replaced = sorted({by_name[r.name].node for r in guests if r.action == "replace"})
    keep_all = any(vzdump_prunes(api, node, settings.storage) for node in replaced)
    sources = report.actual.clone_sources
    needs = rebuild_needs(
        inv,
        settings,
        infrastructure,
        [(r.name, r.action) for r in guests],
        existing,
        replace=replace,
        keep_all_param=keep_all,
        sources=sources,
    )
    if check:
        preflight(api, needs, "rebuild", dry_run=dry_run, held=held)
    return RebuildRun(
        inv,
        api,
        infrastructure,
        guests,
        replace,
        dry_run,
        host_root,
        directory,
        progress,
        clock,
        keep_all_param=keep_all,
        needs=needs,
    )


def describe(r: GuestRecovery, now: datetime) -> str:
    """One line of the plan, in words."""
    if r.action in ("restore", "replace") and r.candidate is not None:
        age = human_age(now - r.candidate.archive.time)
        expected = (
            f"expected {r.expected_seconds:.0f} s (backup verify)"
            if r.expected_seconds is not None
            else "time not measured yet (run backup verify)"
        )
        verdict = "verified" if r.candidate.verified else "never verified"
        text = f"{r.action} from {r.archive} (data age {age}, {verdict}; {expected})"
        return text + (f"; {r.note}" if r.note else "")
    return f"{r.action}: {r.note}"
