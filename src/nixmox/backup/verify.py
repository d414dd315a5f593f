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

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path, guest_status, read_guests
from nixmox.adapters.proxmox.tasks import TaskFailed, TaskTimeout, node_of, wait
from nixmox.backup.archives import archives_of
from nixmox.backup.copies import config_memory, copy_changes, memory_problem
from nixmox.backup.job import content_path
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
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
) -> VerifyResult:
    """Restore, boot, check and destroy one guest's newest archive."""
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
    scratch: int | None = None
    # This run's own mark on its scratch guest: stop and destroy only a guest that carries it.
    marker = MARKER + secrets.token_hex(8)
    marked = False
    try:
        scratch = free_vmid(api, verify)
        result.scratch = scratch
        base = f"/nodes/{node}/{kind}"  # where a guest of this kind is created
        params: dict[str, Any] = {"vmid": scratch, "unique": 1}
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
        # A refused POST (the VMID was taken since the check) created nothing of ours.
        upid = api.post(base, **params)
        result.cleaned = False
        what = f"restore {archive} to {scratch}"
        try:
            wait(api, upid, what=what, timeout=restore_timeout, clock=clock)
        except TaskTimeout as exc:
            # The scratch guest stays `lock: create` while the restore runs, so no
            # destroy gets through: stop the task first and wait for its end.
            raise NixmoxError(f"{exc}; {_stop_restore(api, str(upid), timeout, clock)}") from None
        except NixmoxError as exc:
            if "already exists" in str(exc):
                result.cleaned = True  # the VMID is someone else's: nothing of ours to remove
            raise
        restored = clock.monotonic()
        result.restore_seconds = restored - started
        path = f"{base}/{scratch}"
        config = api.get(f"{path}/config") or {}
        # The copy must never take what the original owns, nor answer on its network.
        changes = copy_changes(config)
        down: dict[str, Any] = dict(changes.set)
        api.put(f"{path}/config", description=marker, **down)
        marked = True
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
            clock.sleep(1.0)
        agent = str(config.get("agent", "0")).split(",", 1)[0] in ("1", "enabled=1")
        if kind == "qemu" and agent:
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
        if scratch is not None and not result.cleaned:
            result.cleaned = _destroy(api, node, kind, scratch, marker if marked else None, clock)
            if not result.cleaned:
                result.ok = False
                result.message += (
                    f"; the scratch guest {scratch} could NOT be removed: remove it by hand"
                )
    return result


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


def _destroy(
    api: Proxmox, node: str, kind: str, vmid: int, marker: str | None, clock: Clock
) -> bool:
    """Stop and destroy the scratch guest this run restored; True when it is gone.

    With ``marker`` (written once the restore finished) the guest must still
    carry it; without (the accepted restore task failed) it must carry no
    other description. Anything else is not ours and is left alone.
    """
    path = guest_path(node, kind, vmid)
    try:
        vmids = set(read_guests(api))
    except NixmoxError as exc:
        log.error("cannot tell whether scratch guest %s is still there: %s", vmid, exc)
        return False
    if vmid not in vmids:
        return True  # the failed restore left nothing
    try:
        description = str((api.get(f"{path}/config") or {}).get("description", ""))
        if (marker is not None and marker not in description) or (
            marker is None and description.strip()
        ):
            log.error("guest %s does not carry this run's mark: not ours, left alone", vmid)
            return False
        status = (api.get(f"{path}/status/current") or {}).get("status")
        if status == "running":
            wait(api, api.post(f"{path}/status/stop"), what=f"stop scratch {vmid}", clock=clock)
        cleanup: dict[str, Any] = {"purge": 1, "destroy-unreferenced-disks": 1}
        upid = api.delete(path, **cleanup)
        if isinstance(upid, str):
            wait(api, upid, what=f"destroy scratch {vmid}", clock=clock)
        return True
    except NixmoxError as exc:
        log.error("cannot remove scratch guest %s: %s", vmid, exc)
        return False
