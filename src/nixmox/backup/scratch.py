"""Scratch guests of ``backup verify``: the record kept while one exists, and their removal.

Before it asks Proxmox to restore, a verify run writes a record under
``STATE/verify-scratch/VMID.json``: the scratch VMID, node and kind, the
run's nonce (the description the restore gives the guest) and, once Proxmox
accepted the restore, its UPID. The record goes when the scratch guest is
gone. A record a later run finds belongs to a run that was killed (SIGKILL, a
power cut) before it could clean up; :func:`settle` then removes that guest,
but only when the accepted restore task created it (the task restored that
VMID and ended well) and the guest still carries the nonce. What it cannot
confirm (the API not answering, a changed description) is reported and the
record kept, so the next run tries again: a read that failed is never taken
for "nothing there".
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path, read_guests
from nixmox.adapters.proxmox.tasks import TaskFailed, node_of, wait
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.files import write_atomically

log = logging.getLogger("nixmox.verify")

#: The task types of a restore: ``qm create --archive`` and ``pct restore``.
RESTORE_TASKS = ("qmrestore", "vzrestore")
#: How far before the record's time a restore task may have started (clock skew).
SKEW = 300.0

Outcome = Literal["removed", "gone", "not ours", "unconfirmed"]


@dataclass(frozen=True)
class ScratchRecord:
    """A scratch guest a verify run asked Proxmox to restore."""

    vmid: int
    node: str
    kind: str  # qemu | lxc
    nonce: str  # the description the restore gives it
    guest: str  # whose archive
    archive: str
    since: float  # when the restore was asked for (seconds since the epoch)
    upid: str | None = None  # the restore task, once Proxmox accepted it


@dataclass(frozen=True)
class Settled:
    """What became of one scratch guest when its record was settled."""

    vmid: int
    guest: str
    outcome: Outcome
    message: str

    @property
    def ok(self) -> bool:
        """Nothing of nixmox's is left behind unconfirmed."""
        return self.outcome != "unconfirmed"


class ScratchRecords:
    """The records under ``STATE/verify-scratch``."""

    def __init__(self, state: Path) -> None:
        self.directory = state / "verify-scratch"

    def save(self, record: ScratchRecord) -> None:
        """Write (or replace) ``record``; :class:`NixmoxError` when it cannot be kept."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise NixmoxError(f"cannot create {self.directory}: {exc.strerror}") from None
        data = json.dumps(asdict(record)).encode()
        write_atomically(self.directory / f"{record.vmid}.json", data, 0o600)

    def drop(self, vmid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{vmid}.json").unlink()

    def all(self) -> list[ScratchRecord]:
        """Every readable record, by VMID; an unreadable one is named and skipped."""
        found = []
        if not self.directory.is_dir():
            return []
        for stale in self.directory.glob(".*.tmp"):  # a write the killed run never finished
            with contextlib.suppress(OSError):
                stale.unlink()
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_bytes())
                found.append(
                    ScratchRecord(
                        vmid=int(data["vmid"]),
                        node=str(data["node"]),
                        kind=str(data["kind"]),
                        nonce=str(data["nonce"]),
                        guest=str(data["guest"]),
                        archive=str(data["archive"]),
                        since=float(data["since"]),
                        upid=str(data["upid"]) if data.get("upid") else None,
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("%s: not a scratch guest record (%s); left as it is", path, exc)
        return sorted(found, key=lambda r: r.vmid)


def settle(
    api: Proxmox, record: ScratchRecord, *, timeout: float, clock: Clock = SYSTEM_CLOCK
) -> Settled:
    """Remove ``record``'s scratch guest if it is provably the one its restore made.

    Waits (at most ``timeout``) for a restore task still running. The guest is
    removed only when that task restored this VMID, ended well, and the guest
    carries the record's nonce.
    """
    vmid = record.vmid

    def result(outcome: Outcome, message: str) -> Settled:
        return Settled(vmid, record.guest, outcome, message)

    try:
        upid = record.upid or _find_restore(api, record)
        ended = _restore_end(api, upid, record, timeout, clock) if upid is not None else None
        row = read_guests(api).get(vmid)
    except NixmoxError as exc:
        why = f"could not confirm what became of scratch guest {vmid}: {exc}"
        return result("unconfirmed", why)
    if row is None:
        return result("gone", f"scratch guest {vmid} is gone (nothing to remove)")
    not_ours = f"VMID {vmid} holds a guest this restore did not make: left alone"
    if ended is None:
        return result("not ours", not_ours)
    path = guest_path(row.node, row.type, vmid)
    try:
        description = str((api.get(f"{path}/config") or {}).get("description", ""))
        if record.nonce not in description:
            if ended == "failed":
                # A failed restore (the VMID taken first, say) made nothing that stayed.
                return result("not ours", not_ours)
            return result(
                "unconfirmed",
                f"scratch guest {vmid} no longer carries its run's mark: left alone "
                "(remove it by hand if it is a leftover copy)",
            )
        if (api.get(f"{path}/status/current") or {}).get("status") == "running":
            wait(api, api.post(f"{path}/status/stop"), what=f"stop scratch {vmid}", clock=clock)
        cleanup: dict[str, Any] = {"purge": 1, "destroy-unreferenced-disks": 1}
        upid = api.delete(path, **cleanup)
        if isinstance(upid, str):
            wait(api, upid, what=f"destroy scratch {vmid}", clock=clock)
    except NixmoxError as exc:
        return result("unconfirmed", f"cannot remove scratch guest {vmid}: {exc}")
    return result("removed", f"removed scratch guest {vmid} (restore of {record.archive})")


def _find_restore(api: Proxmox, record: ScratchRecord) -> str | None:
    """The restore task of ``record`` when its UPID was never written down (the run
    ended between Proxmox accepting the restore and the record being updated)."""
    rows = api.get(f"/nodes/{record.node}/tasks", vmid=record.vmid, limit=50) or []
    if not isinstance(rows, list):
        raise NixmoxError(f"/nodes/{record.node}/tasks: expected a list")
    found = [
        str(t["upid"])
        for t in rows
        if isinstance(t, dict)
        and t.get("type") in RESTORE_TASKS
        and str(t.get("id")) == str(record.vmid)
        and float(t.get("starttime") or 0) >= record.since - SKEW
        and t.get("upid")
    ]
    # More than one is ambiguous: none is taken as this record's.
    return found[0] if len(found) == 1 else None


def _restore_end(
    api: Proxmox, upid: str, record: ScratchRecord, timeout: float, clock: Clock
) -> Literal["ok", "failed"] | None:
    """How task ``upid`` ended (waiting for it), or ``None`` when it is no restore of
    ``record``'s VMID. Only the random nonce, which no one but this restore was
    given, tells a copy a failed restore left from someone else's guest."""
    status: dict[str, Any] = api.get(f"/nodes/{node_of(upid)}/tasks/{upid}/status") or {}
    if status.get("type") not in RESTORE_TASKS or str(status.get("id")) != str(record.vmid):
        return None
    try:
        wait(api, upid, what=f"restore to scratch {record.vmid}", timeout=timeout, clock=clock)
    except TaskFailed:
        return "failed"
    return "ok"


def with_upid(record: ScratchRecord, upid: str) -> ScratchRecord:
    """``record`` once Proxmox accepted its restore."""
    return replace(record, upid=upid)
