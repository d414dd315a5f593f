"""The privileges preflight of the update jobs: what each needs, before anything changes.

Pure lists of :class:`~nixmox.adapters.proxmox.permissions.Need`; one read of
``/access/permissions`` compares them with what the token may do. A missing
privilege found halfway would leave a guest snapshotted but not updated, or
a node drained but not rebooted: so the run refuses up front.
"""

from __future__ import annotations

from collections.abc import Iterable

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import Need, preflight, require
from nixmox.core.errors import NixmoxError
from nixmox.inventory.model import Guest, Node
from nixmox.updates.guest_access import via

__all__ = ["host_needs", "nixos_needs", "preflight", "require", "windows_needs"]

# PVE 9 splits the agent's rights; PVE 8 and older ask VM.Monitor for all of them.
AGENT_EXEC = "VM.GuestAgent.Unrestricted|VM.Monitor"
AGENT_AUDIT = "VM.GuestAgent.Audit|VM.GuestAgent.Unrestricted|VM.Monitor"
AGENT_WRITE = "VM.GuestAgent.FileWrite|VM.GuestAgent.Unrestricted|VM.Monitor"


def _snapshot_needs(guest: Guest) -> list[Need]:
    vm = f"/vms/{guest.vmid}"
    return [
        Need(vm, "VM.Audit", f"read {guest.name}"),
        Need(vm, "VM.Snapshot", f"snapshot {guest.name} before its update"),
        # The rollback endpoints (qemu-server and pve-container) accept either privilege
        # (``any => 1``): the VM.Snapshot held for the snapshot covers it, nothing more.
        Need(vm, "VM.Snapshot|VM.Snapshot.Rollback", f"roll {guest.name} back if its update fails"),
    ]


def nixos_needs(guest: Guest) -> list[Need]:
    """``update nixos`` of ``guest``: snapshots, the agent when it is the way in, a reboot."""
    vm = f"/vms/{guest.vmid}"
    needs = _snapshot_needs(guest)
    if via(guest) == "agent":
        needs += [
            Need(vm, AGENT_AUDIT, f"ping {guest.name}'s guest agent"),
            Need(vm, AGENT_EXEC, f"run the update in {guest.name} through its agent"),
        ]
    if guest.reboot.policy in ("allowed", "window"):
        needs.append(Need(vm, "VM.PowerMgmt", f"reboot {guest.name} into a new kernel"))
    return needs


def windows_needs(guest: Guest) -> list[Need]:
    """``update windows`` of ``guest``: snapshots and the agent (scripts written and run)."""
    vm = f"/vms/{guest.vmid}"
    return [
        *_snapshot_needs(guest),
        Need(vm, AGENT_AUDIT, f"ping {guest.name}'s guest agent"),
        Need(vm, AGENT_WRITE, f"write the update scripts into {guest.name}"),
        Need(vm, AGENT_EXEC, f"run Windows Update in {guest.name} through its agent"),
    ]


def host_needs(node: Node, guests: Iterable[Guest], *, migrate: bool = True) -> list[Need]:
    """``update host`` of ``node``: apt through the API, and for a reboot the node and
    the guests that must move away or stop first. ``migrate``: whether the cluster has
    another node a guest could move to (a single node's guests are stopped, never
    migrated, so nothing asks for VM.Migrate there)."""
    where = f"/nodes/{node.name}"
    needs = [
        Need(where, "Sys.Audit", f"read {node.name}'s status and upgrades"),
        Need(where, "Sys.Modify", f"refresh {node.name}'s package lists (apt update)"),
    ]
    if node.reboot != "never":
        needs.append(Need(where, "Sys.PowerMgmt", f"reboot {node.name}"))
        for guest in guests:
            if guest.node != node.name:
                continue
            vm = f"/vms/{guest.vmid}"
            # /cluster/resources lists a guest only to VM.Audit: without it the node
            # would look empty and be rebooted under its guests.
            needs.append(Need(vm, "VM.Audit", f"see {guest.name} before {node.name} reboots"))
            if migrate:
                needs.append(Need(vm, "VM.Migrate", f"move {guest.name} off {node.name}"))
            needs.append(Need(vm, "VM.PowerMgmt", f"stop or start {guest.name} around it"))
    return needs


def cluster_has_peers(api: Proxmox) -> bool:
    """Whether the cluster has more than one node (``/cluster/status``): only then can
    update host migrate a guest. Unknown (the read failed) counts as yes, so the
    preflight asks for the migration rights rather than fail half-way without them."""
    from nixmox.updates.host.preflight import cluster_nodes

    try:
        return len(cluster_nodes(api.get("/cluster/status") or [])) > 1
    except NixmoxError:
        return True
