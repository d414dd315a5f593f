"""The backup job: vzdump each guest through the API, then prune what the rule removes.

- One vzdump task per guest, so every guest has its own result; one guest's
  failure never stops the others. Nodes work in parallel, guests of a node
  one after another (vzdump on a node runs one at a time anyway).
- vzdump must prune nothing itself: nixmox decides exactly, and can say why,
  with Proxmox's own rule. Where the storage has a retention of its own,
  vzdump is told ``prune-backups keep-all=1`` (see ``backup/privileges.py``).
- A guest is pruned only when its new backup succeeded, from one content
  listing of its archives; deletions name exact volumes. Protected archives,
  other guests' archives and hand-named files are never touched.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from urllib.parse import quote

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import GuestRow, guest_status, mismatch, read_guests
from nixmox.adapters.proxmox.tasks import TaskFailed, task_log, wait
from nixmox.backup import passthrough
from nixmox.backup.archives import Archive, archives_of, plan_prune, removals
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.words import plural
from nixmox.inventory.model import Backups, Guest
from nixmox.passthrough.mappings import map_entries, node_paths
from nixmox.rules.retention import Item, Keep, prune
from nixmox.rules.timespan import parse_timespan

log = logging.getLogger("nixmox.backup")


@dataclass
class GuestResult:
    """What happened to one guest's backup."""

    name: str
    vmid: int
    node: str
    result: str = "ok"  # ok | failed | skipped | planned
    message: str = ""
    volid: str | None = None
    size: int = 0
    seconds: float = 0.0
    kept: int = 0
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result in ("ok", "skipped", "planned") and not self.errors


#: A progress line of vzdump's log (qemu):
#: ``INFO:  42% (4.2 GiB of 10.0 GiB) in 21s, read: 205.3 MiB/s, write: 190.1 MiB/s``.
_VZDUMP_PROGRESS = re.compile(
    r"INFO:\s+(\d+)% \(([^)]*)\)(?: in \S+)?, read: ([\d.]+ ?\S+/s), write: ([\d.]+ ?\S+/s)"
)


def vzdump_progress(line: str) -> str | None:
    """What a vzdump log line says of its progress (``42% of 10.0 GiB, read 205.3 MiB/s,
    write 190.1 MiB/s``), or ``None``."""
    found = _VZDUMP_PROGRESS.search(line)
    if found is None:
        return None
    percent, amount, read, write = found.groups()
    return f"{percent}% ({amount}), read {read}, write {write}"


def archive_volid(log_lines: list[str], storage: str) -> str | None:
    """The volid of the archive a vzdump task log says it wrote, if it says so.

    A file storage logs the file's path; a PBS storage the snapshot
    (``vm/101/2026-12-04T02:00:00Z``), whose volid is ``STORAGE:backup/`` and it.
    """
    for line in log_lines:
        if "creating vzdump archive '" in line:
            path = line.split("'", 2)[1]
            return f"{storage}:backup/{path.rsplit('/', 1)[-1]}"
        if "creating Proxmox Backup Server archive '" in line:
            snapshot = line.split("'", 2)[1]
            return f"{storage}:backup/{snapshot}"
    return None


def content_path(node: str, storage: str) -> str:
    return f"/nodes/{node}/storage/{storage}/content"


class BackupJob:
    """Back up and prune a set of guests with the inventory's ``[backups]``."""

    def __init__(
        self,
        api: Proxmox,
        settings: Backups,
        zone: tzinfo,
        *,
        protected: bool = False,
        dry_run: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        keep_all_param: bool = True,
        progress: Progress = SILENT,
    ) -> None:
        self.api = api
        self.keep_all_param = keep_all_param
        self.progress = progress
        self.settings = settings
        self.zone = zone
        self.protected = protected
        self.dry_run = dry_run
        self.clock = clock
        self.keep = settings.keep.rule() if settings.keep is not None else Keep()
        self.lock_wait = parse_timespan(settings.lock_wait)
        self._lock = threading.Lock()
        self._rows: dict[int, GuestRow] = {}

    def run(self, guests: list[Guest]) -> list[GuestResult]:
        """Every guest's result, in the order given."""
        rows = read_guests(self.api)
        self._rows = rows
        by_node: dict[str, list[Guest]] = {}
        for guest in guests:
            by_node.setdefault(guest.node, []).append(guest)
        results: dict[int, GuestResult] = {}

        def node_run(node_guests: list[Guest]) -> None:
            for guest in node_guests:
                if interrupt.stopping():
                    # A stop was requested: no new vzdump, so nothing of this guest is pruned.
                    result = GuestResult(guest.name, guest.vmid, guest.node, result="skipped")
                    result.message = f"not started: interrupted by {interrupt.signal_name()}"
                else:
                    result = self._shown(guest, rows.get(guest.vmid))
                with self._lock:
                    results[guest.vmid] = result

        with ThreadPoolExecutor(max_workers=max(1, len(by_node))) as pool:
            for future in [pool.submit(node_run, g) for g in by_node.values()]:
                future.result()
        return [results[g.vmid] for g in guests]

    # -- one guest --------------------------------------------------------------------
    def _shown(self, guest: Guest, row: GuestRow | None) -> GuestResult:
        """:meth:`one`, its start and end told to the progress reporter."""
        if self.dry_run:
            return self.one(guest, row)
        self.progress.start(guest.name, f"backing up {guest.name}")
        started = self.clock.monotonic()
        result = self.one(guest, row)
        took = f"{self.clock.monotonic() - started:.0f}s"
        if result.result == "ok":
            end = f"{guest.name}: backed up in {took}" + (
                f" ({result.volid})" if result.volid else ""
            )
            if result.removed:
                end += f", {plural(len(result.removed), 'old archive')} removed"
        else:
            end = f"{guest.name}: {result.result.upper()} after {took}: {result.message}"
        self.progress.end(guest.name, end)
        return result

    def one(self, guest: Guest, row: GuestRow | None) -> GuestResult:
        """Back up (or, dry, plan) one guest; ``row``: how the cluster lists it, if at all."""
        result = GuestResult(guest.name, guest.vmid, guest.node)
        if row is not None and row.template:
            result.result, result.message = "skipped", "a template (nothing to back up)"
            return result
        wrong = mismatch(row, guest.vmid, guest.kind, guest.node)
        if wrong is not None:
            result.result, result.message = "failed", wrong
            return result
        storage = self.settings.storage
        if self.dry_run:
            return self._dry_run(guest, result, storage)
        started = self.clock.monotonic()
        try:
            if row is not None and row.type == "qemu" and row.status != "running":
                why = self._passthrough_blocker(row)
                if why is not None:
                    raise NixmoxError(why)
            self._wait_unlocked(guest)
            result.volid = self._vzdump(guest, storage)
        except interrupt.Interrupted as exc:
            result.result, result.message = "skipped", f"not started: {exc}"
            return result
        except NixmoxError as exc:
            # Nothing new was made: every older archive of this guest stays.
            result.result, result.message = "failed", str(exc)
            result.seconds = self.clock.monotonic() - started
            return result
        result.seconds = self.clock.monotonic() - started
        try:
            archives = self._archives(guest, storage)
        except NixmoxError as exc:
            result.errors.append(f"backed up, but cannot list the archives to prune: {exc}")
            return result
        if result.volid is None and archives:
            result.volid = archives[0].volid
        newest = next((a for a in archives if a.volid == result.volid), None)
        result.size = newest.size if newest else 0
        if interrupt.stopping():
            # Deleting is a new step: after a stop request every archive stays for the next run.
            result.kept = len(archives)
            result.message = f"backed up; not pruned (interrupted by {interrupt.signal_name()})"
            return result
        self._prune(guest, storage, archives, result)
        return result

    def _dry_run(self, guest: Guest, result: GuestResult, storage: str) -> GuestResult:
        result.result = "planned"
        archives = self._archives(guest, storage)
        now = self.clock.now().astimezone(self.zone)
        items = [Item(now, self.protected, "(the new backup)")]
        items += [Item(a.time, a.protected, a.volid) for a in archives]
        decisions = prune(items, self.keep, self.zone)
        result.removed = removals(decisions)
        result.kept = len(items) - len(result.removed)
        result.message = (
            f"would back up to {storage} ({self.settings.mode}, {self.settings.compress})"
        )
        return result

    def _passthrough_blocker(self, row: GuestRow) -> str | None:
        """For a stopped VM with passed-through PCI devices: why vzdump's paused start
        would fail now (see :mod:`nixmox.backup.passthrough`)."""
        config = self.api.get(f"{row.path}/config") or {}
        mapped: dict[str, list[str]] = {}
        if passthrough.mapping_ids(config):
            # Where the VM's mappings point on its node: PVE reserves those devices.
            listing = map_entries(self.api.get("/cluster/mapping/pci") or [])
            mapped = {
                mid: found
                for mid, entries in listing.items()
                if (found := node_paths(entries, row.node))
            }
        if not passthrough.pci_devices(config, mapped):
            return None
        others = [
            (r.vmid, self.api.get(f"{r.path}/config") or {})
            for r in self._rows.values()
            if r.type == "qemu"
            and r.node == row.node
            and r.status == "running"
            and r.vmid != row.vmid
        ]
        status = self.api.get(f"/nodes/{row.node}/status") or {}
        memory = status.get("memory") if isinstance(status, dict) else None
        free = memory.get("available", memory.get("free")) if isinstance(memory, dict) else None
        return passthrough.blocker(config, others, int(free) if free is not None else None, mapped)

    def _wait_unlocked(self, guest: Guest) -> None:
        deadline = self.clock.monotonic() + self.lock_wait
        while True:
            lock = guest_status(self.api, guest.node, guest.pve_type, guest.vmid).get("lock")
            if not lock:
                return
            interrupt.raise_if_stopping(f"gave up waiting for {guest.name}'s lock ({lock})")
            if self.clock.monotonic() >= deadline:
                raise NixmoxError(
                    f"locked ({lock}) by another operation for {self.lock_wait:g} s; "
                    "not backed up (nixmox never removes someone else's lock)"
                )
            log.info("%s is locked (%s); waiting", guest.name, lock)
            self.progress.update(guest.name, f"waiting for its lock ({lock})")
            self.clock.sleep(min(5.0, max(self.lock_wait / 20, 0.05)))

    def _vzdump(self, guest: Guest, storage: str) -> str | None:
        params: dict[str, Any] = {
            "vmid": guest.vmid,
            "storage": storage,
            "mode": self.settings.mode,
            "compress": self.settings.compress,
            "notes-template": self.settings.notes_template,
        }
        if self.keep_all_param:
            # nixmox prunes, with an explanation; vzdump must not prune on its own. Sent only
            # when the storage would prune (the parameter needs Datastore.Allocate).
            params["prune-backups"] = "keep-all=1"
        if self.protected:
            params["protected"] = 1
        upid = self.api.post(f"/nodes/{guest.node}/vzdump", **params)
        read = [0]

        def watch() -> None:
            # vzdump's own progress, from the lines its log gained since the last look.
            try:
                lines = task_log(self.api, upid, start=read[0])
            except NixmoxError:
                lines = []  # the next look tries again; the wait itself says if the API is gone
            read[0] += len(lines)
            news = [n for n in (vzdump_progress(line) for line in lines) if n]
            self.progress.update(guest.name, news[-1] if news else None)

        try:
            wait(
                self.api,
                upid,
                what=f"backup of {guest.name}",
                timeout=6 * 3600,
                clock=self.clock,
                watch=None if self.progress is SILENT else watch,
            )
        except TaskFailed as exc:
            lines = exc.result.log or task_log(self.api, upid)
            reason = next(
                (line.split(" failed - ", 1)[1] for line in lines if " failed - " in line),
                exc.result.exitstatus,
            )
            raise NixmoxError(f"vzdump failed: {reason}") from None
        return archive_volid(task_log(self.api, upid), storage)

    def _archives(self, guest: Guest, storage: str) -> list[Archive]:
        content = self.api.get(content_path(guest.node, storage), content="backup", vmid=guest.vmid)
        return archives_of(content or [], guest.vmid, guest.pve_type, self.zone)

    def _prune(
        self, guest: Guest, storage: str, archives: list[Archive], result: GuestResult
    ) -> None:
        decisions = plan_prune(archives, self.keep, self.zone)
        doomed = removals(decisions)
        if result.volid in doomed:
            # The rule never removes the newest item; if it ever would, keep it.
            doomed.remove(result.volid)
        result.kept = len(archives) - len(doomed)
        for volid in doomed:
            try:
                answer = self.api.delete(
                    f"{content_path(guest.node, storage)}/{quote(volid, safe='')}"
                )
                if isinstance(answer, str) and answer.startswith("UPID:"):
                    wait(self.api, answer, what=f"remove {volid}", clock=self.clock)
                result.removed.append(volid)
                self.progress.step(f"{guest.name}: removed {volid} (retention)")
            except NixmoxError as exc:
                result.kept += 1
                result.errors.append(f"cannot remove {volid}: {exc}")
