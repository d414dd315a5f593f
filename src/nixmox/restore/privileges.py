"""What ``restore`` and ``rebuild`` need the token to hold, from what this run will do.

Pure lists of :class:`~nixmox.adapters.proxmox.permissions.Need`, one per step
the run takes (:mod:`nixmox.restore.job`). Proxmox's rules, none of them in
the API schema (both create calls say ``user => 'all', # check inside``):

- qemu-server ``PVE/API2/Qemu.pm`` ``create_vm`` with ``archive``:
  ``VM.Allocate`` on ``/vms/{vmid}``, or only ``VM.Backup`` on it when the VM
  exists and ``force`` is set; pve-storage ``PVE/Storage.pm``
  ``check_volume_access`` of the archive: nothing more when it belongs to
  that VMID, else ``Datastore.AllocateSpace`` on its storage and
  ``VM.Backup`` on the guest it belongs to; ``PVE/QemuServer.pm``
  ``$parse_backup_hints``: ``Datastore.AllocateSpace`` on every storage a
  disk is restored to; ``check_restore_permissions``: ``check_bridge_access``
  (``SDN.Use`` per NIC's bridge) and ``check_mapping_access``
  (``Mapping.Use`` per mapped device; a raw ``host`` device is root@pam's).
  nixmox's own parameters (``force``, ``unique``) are taken out of the
  request before ``$check_vm_modify_config_perm``, so they ask nothing.
- pve-container ``PVE/API2/LXC.pm`` ``create_vm`` with ``restore``: the same
  ``VM.Allocate``/``VM.Backup`` rule and ``check_volume_access``;
  ``$check_and_activate_storage``: ``Datastore.AllocateSpace`` on the target
  storage (``storage``, else ``local``); ``check_bridge_access`` for the
  archived NICs; ``Sys.Modify`` on ``/`` for a privileged container unless it
  replaces a privileged one.
- Seeing the archives: pve-storage ``PVE/API2/Storage/Content.pm`` ``index``
  lists a backup volume only to whom ``check_volume_access`` gives it:
  ``Datastore.AllocateSpace`` on the storage and ``VM.Backup`` on its guest.
  Without them a guest's archives are silently absent (and rebuild would
  create it empty), so they are asked for like any write.
- The other steps are other jobs' calls: the keep is a vzdump
  (:func:`~nixmox.backup.privileges.backup_needs`), the converge is apply's
  config write (:func:`~nixmox.provision.privileges.changes_needs`), a copy's
  isolation is apply's rule per key it writes
  (:func:`~nixmox.provision.privileges.key_needs`), shutdown and start take
  ``VM.PowerMgmt``, the agent's ping ``VM.GuestAgent.Audit`` (PVE 9).

What the archive holds is not read before the run (pve-manager's
``extractconfig`` would ask ``VM.Backup`` and ``Datastore.AllocateSpace``
even where the restore itself does not): it is taken to be what the
inventory declares for the guest, which apply keeps it at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.cluster import GuestRow
from nixmox.adapters.proxmox.permissions import ROOT, Need, holds
from nixmox.backup.copies import copy_changes
from nixmox.backup.privileges import AGENT_AUDIT, backup_needs
from nixmox.inventory.model import Backups, Guest, Inventory
from nixmox.provision.desired import desired_guest
from nixmox.provision.diff import ActualGuest, GuestPlan, Plan, diff_guest
from nixmox.provision.privileges import (
    bridge_needs,
    changes_needs,
    create_params,
    key_needs,
    needed,
    storage_of,
)

#: Drive kinds a qemu archive restores a disk for ($parse_backup_hints).
_QEMU_DISKS = {"ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"}


def archived_config(guest: Guest) -> dict[str, str]:
    """The config ``guest``'s archive holds, as far as nixmox knows it before reading it:
    what the inventory declares (apply keeps the guest so)."""
    return create_params(desired_guest(guest))


def listing_needs(storage: str, guest: Guest) -> list[Need]:
    """Seeing ``guest``'s archives on ``storage`` (Content.pm ``index``)."""
    what = f"see {guest.name}'s archives on {storage}"
    return [
        Need(f"/storage/{storage}", "Datastore.AllocateSpace", what),
        Need(f"/vms/{guest.vmid}", "VM.Backup", what),
    ]


def keep_needs(storage: str, guest: Guest, *, keep_all_param: bool) -> list[Need]:
    """The keep: a protected vzdump of what is there, told not to prune only when the
    storage would (as ``backup`` does it). The keep is the vzdump alone: none of
    backup's own reads before it (a node's memory, a device's mapping)."""
    needs = backup_needs(storage, [guest], keep_all_param=keep_all_param)
    return [n for n in needs if n.path.startswith(("/storage/", "/vms/"))]


def restore_call_needs(guest: Guest, storage: str, target: int, *, exists: bool) -> list[Need]:
    """``POST /nodes/{node}/{qemu,lxc}`` with the archive: the checks of ``create_vm``."""
    vm = f"/vms/{target}"
    what = f"restore {guest.name} to {target}"
    if exists:
        needs = [Need(vm, "VM.Backup", f"{what} over what is there (force)")]
    else:
        needs = [Need(vm, "VM.Allocate", what)]
    if target != guest.vmid:
        # check_volume_access: the archive belongs to another VMID.
        read = f"{what} from an archive of {guest.vmid}"
        needs.append(Need(f"/storage/{storage}", "Datastore.AllocateSpace", read))
        needs.append(Need(f"/vms/{guest.vmid}", "VM.Backup", read))
    config = archived_config(guest)
    if guest.kind == "lxc":
        stores = {guest.rootfs.storage if guest.rootfs is not None else "local"}
        if guest.unprivileged is False and not exists:
            needs.append(Need("/", "Sys.Modify", f"{what}: a privileged container"))
    else:
        stores = {
            s
            for key, value in config.items()
            if props.kind_of(key) in _QEMU_DISKS and (s := storage_of(value))
        }
    for store in sorted(stores):
        disks = f"{what}: its disks on {store}"
        needs.append(Need(f"/storage/{store}", "Datastore.AllocateSpace", disks))
    for key, value in config.items():
        kind = props.kind_of(key)
        if kind == "net":
            needs += bridge_needs(value, f"{what}: its {key}")
        elif kind == "hostpci" and guest.kind == "vm":
            device = props.parse(key, value)
            if device.get("mapping"):
                path = f"/mapping/pci/{device['mapping']}"
                needs.append(Need(path, "Mapping.Use", f"{what}: its {key}"))
            else:
                needs.append(Need(vm, ROOT, f"{what}: its {key} is a raw PCI address"))
    return needs


def isolate_needs(guest: Guest, target: int) -> list[Need]:
    """A copy's isolation before it starts (:func:`~nixmox.backup.copies.copy_changes`):
    each key it removes or sets, by apply's rule for that key, and the node's memory."""
    config = archived_config(guest)
    changes = copy_changes(config)
    copy = guest.model_copy(update={"vmid": target})
    what = f"isolate the copy {target} of {guest.name}"
    needs: list[Need] = []
    for key, value in changes.set.items():
        needs += key_needs(copy, key, config.get(key), value, f"{what}: {key} link down")
    for key in changes.delete:
        needs += key_needs(copy, key, config.get(key), None, f"{what}: remove {key}")
    if guest.onboot:
        needs.append(
            Need(
                f"/nodes/{guest.node}",
                "Sys.Audit",
                f"{what}: check {guest.node}'s free memory before it starts",
            )
        )
    return needs


def converge_needs(guest: Guest) -> list[Need]:
    """Apply's needs for the guest's declared config, as if every declared key differed.

    The restored config is the archive's, which may be older than the inventory,
    and is only read once restored: any declared key may need writing then. Keys
    the inventory leaves alone are never written, so they ask nothing.
    """
    want = desired_guest(guest)
    blank = ActualGuest(guest.vmid, want.type, guest.node, "stopped", None, False, {})
    plan = diff_guest(want, blank)
    return changes_needs(guest, plan.changes, f"converge {guest.name} to the inventory")


def bring_up_needs(guest: Guest, target: int, *, converge: bool) -> list[Need]:
    """Converge (in place), start when declared to run, and wait for it (and its agent)."""
    vm = f"/vms/{target}"
    needs = [Need(vm, "VM.Audit", f"read {guest.name}'s status and config at {target}")]
    if converge and desired_guest(guest).provisioned:
        needs += converge_needs(guest)
    if guest.onboot:
        needs.append(Need(vm, "VM.PowerMgmt", f"start {guest.name} (declared to run)"))
        if guest.kind == "vm" and guest.agent:
            needs.append(Need(vm, AGENT_AUDIT, f"wait for {guest.name}'s guest agent"))
    return needs


def restore_needs(
    guest: Guest,
    settings: Backups,
    target: int,
    *,
    exists: bool,
    running: bool,
    keep_all_param: bool,
    converge: bool = True,
) -> list[Need]:
    """``restore`` of ``guest`` to ``target`` (its own VMID: in place); ``exists``,
    ``running``: what is at ``target`` now."""
    vm = f"/vms/{target}"
    storage = settings.storage
    in_place = target == guest.vmid
    needs = [Need(vm, "VM.Audit", f"see what is at {target}"), *listing_needs(storage, guest)]
    if in_place and exists:
        if running:
            needs.append(Need(vm, "VM.PowerMgmt", f"shut {guest.name} down before the restore"))
        needs += keep_needs(storage, guest, keep_all_param=keep_all_param)
    needs += restore_call_needs(guest, storage, target, exists=exists)
    if not in_place:
        needs += isolate_needs(guest, target)
    needs += bring_up_needs(guest, target, converge=in_place and converge)
    return needs


def rebuild_needs(
    inv: Inventory,
    settings: Backups,
    infrastructure: Plan,
    recoveries: Iterable[tuple[str, str]],
    rows: Mapping[int, GuestRow],
    *,
    replace: bool,
    keep_all_param: bool,
    sources: Mapping[str, tuple[int, ActualGuest]] | None = None,
) -> list[Need]:
    """``rebuild``: the infrastructure as apply makes it, then per guest (name, action of
    :class:`~nixmox.restore.rebuild.GuestRecovery`) what its action takes."""
    needs = needed(
        inv,
        Plan(
            guests=(),
            bridges=infrastructure.bridges,
            storages=infrastructure.storages,
            unmanaged=(),
            jobs=infrastructure.jobs,
        ),
    )
    by_name = {g.name: g for g in inv.guests}
    for name, action in recoveries:
        guest = by_name[name]
        vm = f"/vms/{guest.vmid}"
        # /cluster/resources lists a guest only to VM.Audit: unseen, it would look gone.
        needs.append(Need(vm, "VM.Audit", f"see whether {guest.name} exists"))
        if action in ("restore", "replace", "create") or (action == "leave" and replace):
            # Which archive (or none: created empty) decides what happens to it.
            needs += listing_needs(settings.storage, guest)
        if action in ("restore", "replace"):
            row = rows.get(guest.vmid) if action == "replace" else None
            needs += restore_needs(
                guest,
                settings,
                guest.vmid,
                exists=row is not None,
                running=row is not None and row.status == "running",
                keep_all_param=keep_all_param,
            )
        elif action == "resume":
            needs += bring_up_needs(guest, guest.vmid, converge=True)
        elif action == "create":
            gp: GuestPlan = diff_guest(desired_guest(guest), None)
            plan = Plan(guests=(gp,), bridges=(), storages=(), unmanaged=())
            needs += needed(inv, plan, sources)
            needs += bring_up_needs(guest, guest.vmid, converge=True)
    return needs


def visible(held: Mapping[str, Mapping[str, Any]], storage: str) -> bool:
    """Whether the token may list ``storage``'s content at all (its schema's check)."""
    return holds(held, f"/storage/{storage}", "Datastore.Audit|Datastore.AllocateSpace")
