"""`nixmox backup verify`: a backup that was never restored is not yet a backup.

For each guest: restore its newest archive into a free scratch VMID of the
configured range; before it starts, take away what the original owns
(:mod:`nixmox.backup.copies`: passthrough devices, autostart, the hook script;
every network interface disconnected with ``link_down=1``) and check that the
node has the memory for it; start it, wait until it runs (and, for a VM with the agent
enabled, until the agent answers), time it, then destroy the scratch guest,
also when anything failed. Only a guest this run provably made is destroyed:
its restore POST was accepted, and it carries the run's own mark (a
description nonce written right after the restore), checked before any stop
or destroy.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from nixmox.adapters.proxmox.client import ApiError, Proxmox
from nixmox.adapters.proxmox.cluster import guest_status, read_guests
from nixmox.adapters.proxmox.tasks import TaskFailed, TaskTimeout, node_of, wait
from nixmox.backup.archives import archives_of
from nixmox.backup.copies import config_memory, copy_changes, memory_problem
from nixmox.backup.job import content_path
from nixmox.backup.scratch import ScratchRecord, ScratchRecords, Settled, settle, with_upid
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.progress import SILENT, Progress
from nixmox.inventory.model import Backups, BackupVerify, Guest, Storage
from nixmox.rules.timespan import parse_timespan

log = logging.getLogger("nixmox.verify")

MARKER = "nixmox backup verify scratch guest, run "
#: A VM's passed-through PCI and USB devices (hostpciN, usbN).


@dataclass
class VerifyResult:
    name: str
    vmid: int
    ok: bool = False
    archive: str | None = None
    scratch: int | None = None
    seconds: float = 0.0
    message: str = ""
    cleaned: bool = True
    #: What the scratch copy had taken away before it started (hostpci0, onboot, ...).
    removed: list[str] = field(default_factory=list)
    restore_seconds: float = 0.0  # the restore task alone
    boot_seconds: float = 0.0  # start until running (and the agent answers)


def free_vmid(api: Proxmox, verify: BackupVerify) -> int:
    """The first VMID of the scratch range no guest uses."""
    used = read_guests(api)
    low, high = verify.vmids
    for vmid in range(low, high + 1):
        if vmid not in used:
            return vmid
    raise NixmoxError(f"no free scratch VMID in {low}-{high}")


def restore_storage(guest: Guest, verify: BackupVerify, storages: list[Storage]) -> str | None:
    """Where the scratch copy's disks go: the configured storage if it holds
    this kind of disk, else the guest's own; ``None`` lets Proxmox use the
    archive's original storages."""
    content = "rootdir" if guest.kind == "lxc" else "images"
    kinds = {s.storage: s.content for s in storages}
    if verify.storage and (verify.storage not in kinds or content in kinds[verify.storage]):
        return verify.storage
    if guest.rootfs is not None:
        return guest.rootfs.storage
    if guest.disks:
        return guest.disks[0].storage
    # Without storage= a container's restore goes to `local` (pve-container,
    # PVE::API2::LXC create_vm), which holds no container content on a default
    # install: name the node's rootdir storage instead.
    fit = [
        s.storage
        for s in storages
        if content in s.content and (not s.nodes or guest.node in s.nodes)
    ]
    return fit[0] if guest.kind == "lxc" and fit else None


def verify_guest(
    api: Proxmox,
    guest: Guest,
    settings: Backups,
    zone: Any,
    storages: list[Storage] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    records: ScratchRecords | None = None,
    progress: Progress = SILENT,
) -> VerifyResult:
    """Restore, boot, check and destroy one guest's newest archive.

    With ``records``, the scratch guest is recorded before the restore is asked
    for, so that a later run can remove it if this one is killed.
    """
    verify = settings.verify or BackupVerify()
    storages = storages or []
    result = VerifyResult(guest.name, guest.vmid)
    kind = guest.pve_type
    content = api.get(content_path(guest.node, settings.storage), content="backup", vmid=guest.vmid)
    archives = archives_of(content or [], guest.vmid, kind, zone)
    if not archives:
        result.message = f"no archive of {guest.name} on {settings.storage}"
        return result
    archive = archives[0].volid
    result.archive = archive
    node = guest.node
    timeout = parse_timespan(verify.timeout)
    restore_timeout = parse_timespan(verify.restore_timeout)
    started = clock.monotonic()
    # This run's own mark on its scratch guest: stop and destroy only a guest that carries it.
    marker = MARKER + secrets.token_hex(8)
    record: ScratchRecord | None = None
    try:
        scratch = free_vmid(api, verify)
        result.scratch = scratch
        base = f"/nodes/{node}/{kind}"  # where a guest of this kind is created
        # The mark comes with the restore itself (PVE applies the other options over the
        # archive's config), so even a copy whose restore outlived its run carries it.
        params: dict[str, Any] = {"vmid": scratch, "unique": 1, "description": marker}
        if verify.pool:
            # Joining the pool lets one ACL on /pool/NAME cover the scratch guest.
            params["pool"] = verify.pool
        storage = restore_storage(guest, verify, storages)
        if storage:
            params["storage"] = storage
        if kind == "lxc":
            params.update(ostemplate=archive, restore=1)
        else:
            params["archive"] = archive
        record = ScratchRecord(
            scratch, node, kind, marker, guest.name, archive, clock.now().timestamp()
        )
        if records is not None:
            records.save(record)  # before the POST: a kill right after it leaves a trace
        progress.update(guest.name, f"restoring {archive} to scratch {scratch}")
        try:
            upid = str(api.post(base, **params))
        except ApiError:
            # Refused (the VMID was taken since the check): nothing of ours was made.
            if records is not None:
                records.drop(scratch)
            record = None
            raise
        record = with_upid(record, upid)
        if records is not None:
            records.save(record)
        try:
            wait(
                api,
                upid,
                what=f"restore {archive} to {scratch}",
                timeout=restore_timeout,
                clock=clock,
                watch=lambda: progress.update(guest.name),
            )
        except TaskTimeout as exc:
            # The scratch guest stays `lock: create` while the restore runs, so no
            # destroy gets through: stop the task first and wait for its end.
            raise NixmoxError(f"{exc}; {_stop_restore(api, upid, timeout, clock)}") from None
        except NixmoxError as exc:
            if "already exists" in str(exc):
                # The VMID is someone else's: nothing of ours to remove.
                if records is not None:
                    records.drop(scratch)
                record = None
            raise
        restored = clock.monotonic()
        result.restore_seconds = restored - started
        path = f"{base}/{scratch}"
        config = api.get(f"{path}/config") or {}
        # The copy must never take what the original owns, nor answer on its network.
        changes = copy_changes(config)
        down: dict[str, Any] = dict(changes.set)
        api.put(f"{path}/config", description=marker, **down)
        if changes.delete:
            try:
                api.put(f"{path}/config", **changes.removals)
            except NixmoxError as exc:
                raise NixmoxError(
                    f"not started: cannot remove {', '.join(changes.removed)} from the copy "
                    f"({exc}); a copy never starts with the original's devices"
                ) from None
        result.removed = changes.removed
        short = memory_problem(config_memory(config), api.get(f"/nodes/{node}/status") or {}, node)
        if short:
            raise NixmoxError(f"not started: {short}")
        # After a stop request the copy is not booted; the clean-up below still runs.
        interrupt.raise_if_stopping("the restored copy was not booted")
        progress.update(guest.name, f"booting scratch {scratch} (network links down)")
        wait(
            api,
            api.post(f"{path}/status/start"),
            what=f"start scratch {scratch}",
            timeout=timeout,
            clock=clock,
        )
        deadline = clock.monotonic() + timeout
        while guest_status(api, node, kind, scratch).get("status") != "running":
            if clock.monotonic() >= deadline:
                raise NixmoxError(f"scratch {scratch} did not reach running in {timeout:g} s")
            interrupt.raise_if_stopping(f"stopped waiting for scratch {scratch} to run")
            clock.sleep(1.0)
        agent = str(config.get("agent", "0")).split(",", 1)[0] in ("1", "enabled=1")
        if kind == "qemu" and agent:
            progress.update(guest.name, f"scratch {scratch} runs; waiting for its guest agent")
            _wait_agent(api, path, deadline, clock)
        result.seconds = clock.monotonic() - started
        result.boot_seconds = clock.monotonic() - restored
        result.ok = True
        result.message = f"restored and running in {result.seconds:.1f} s" + (
            f" (removed from the copy: {', '.join(result.removed)})" if result.removed else ""
        )
    except NixmoxError as exc:
        result.seconds = clock.monotonic() - started
        result.message = str(exc)
    finally:
        if record is not None:
            progress.update(guest.name, f"removing scratch {record.vmid}")
            settled = settle(api, record, timeout=timeout, clock=clock)
            result.cleaned = settled.outcome != "unconfirmed"
            if result.cleaned and records is not None:
                records.drop(record.vmid)
            if not result.cleaned:
                result.ok = False
                log.error("%s", settled.message)
                result.message += (
                    f"; the scratch guest {record.vmid} could NOT be removed: {settled.message}"
                )
    return result


def clean_leftovers(
    api: Proxmox, records: ScratchRecords, *, timeout: float, clock: Clock = SYSTEM_CLOCK
) -> list[Settled]:
    """Settle the scratch guests earlier runs left behind (see :mod:`.scratch`)."""
    done = []
    for record in records.all():
        if interrupt.stopping():
            break
        settled = settle(api, record, timeout=timeout, clock=clock)
        if settled.ok:
            records.drop(record.vmid)
        done.append(settled)
    return done


def _stop_restore(api: Proxmox, upid: str, timeout: float, clock: Clock) -> str:
    """Stop a restore that ran too long and wait for it to end; what happened, in words.

    PVE::QemuServer::restore_vma_archive (and pct's restore) remove what they
    restored when their worker is stopped; the scratch guest is then gone or
    unlocked, and the destroy that follows finds it so.
    """
    try:
        api.delete(f"/nodes/{node_of(upid)}/tasks/{upid}")
        wait(api, upid, what="stopped restore", timeout=timeout, clock=clock)
    except TaskFailed:
        return "stopped the restore task"
    except TaskTimeout:
        return f"the restore task did not end within {timeout:g} s of being stopped"
    except NixmoxError as exc:
        return f"could not stop the restore task: {exc}"
    return "the restore task finished after all"


def _wait_agent(api: Proxmox, path: str, deadline: float, clock: Clock) -> None:
    while True:
        try:
            api.post(f"{path}/agent/ping")
            return
        except NixmoxError as exc:
            if clock.monotonic() >= deadline:
                raise NixmoxError(f"the guest agent did not answer: {exc}") from None
            clock.sleep(2.0)
