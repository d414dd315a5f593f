"""What ``backup`` needs the token to hold, from the guests it backs up.

Proxmox's checks, in pve-manager and pve-storage (not in the API schema, which
lets every user call ``POST /nodes/{node}/vzdump``):

- ``PVE/API2/VZDump.pm`` ``vzdump``: ``Datastore.AllocateSpace`` on the
  target storage; ``assert_param_permission_vzdump``: sending
  ``prune-backups`` needs ``Datastore.Allocate`` on it;
- ``PVE/VZDump.pm`` ``exec_backup``: ``VM.Backup`` on every guest (checked
  inside the task, where a refusal is only a failed task);
- pve-storage ``PVE/API2/Storage/Content.pm`` ``delete``: removing a backup
  needs ``Datastore.AllocateSpace`` on the storage and ``VM.Backup`` on the
  guest it belongs to; listing content needs ``Datastore.Audit`` or
  ``Datastore.AllocateSpace``.

``backup verify`` restores into scratch guests (:func:`verify_needs`):

- qemu-server ``PVE/API2/Qemu.pm`` ``create_vm`` and pve-container
  ``PVE/API2/LXC.pm`` ``create_vm``: ``VM.Allocate`` on ``/vms/{vmid}`` *or*
  on ``/pool/{pool}`` when the create names a pool (the guest then joins it,
  and the pool's ACL covers everything else done to it);
  ``Datastore.AllocateSpace`` on the target storage; pve-storage
  ``check_volume_access`` of the archive (``Datastore.AllocateSpace`` on its
  storage and ``VM.Backup`` on the guest it belongs to);
  ``check_restore_permissions`` / ``check_bridge_access`` (``SDN.Use`` for the
  archived NICs, ``Mapping.Use`` for its mapped devices); a privileged
  container needs ``Sys.Modify`` on ``/``;
- then on the scratch guest: ``VM.Config.Options`` (the run's mark in its
  description, ``onboot``/``startup`` removed), ``VM.Config.HWType`` (its
  ``hostpci*``/``usb*`` removed: a copy never takes the original's devices),
  ``Sys.Audit`` on the node (its free memory, read before the start),
  ``VM.Config.Network`` and ``SDN.Use`` again (``link_down``:
  qemu-server checks the NIC's bridge on update), ``VM.PowerMgmt`` (start,
  stop), ``VM.Audit`` (status, config), the agent's ping
  (``VM.GuestAgent.Audit`` on PVE 9), ``VM.Allocate`` (destroy).

The narrower way for pruning: nixmox prunes by itself, so vzdump must not.
It sends ``prune-backups=keep-all=1`` (and so needs ``Datastore.Allocate``)
only when the storage or ``/etc/vzdump.conf`` would otherwise prune, which
``GET /nodes/{node}/vzdump/defaults`` tells (``Datastore.AllocateSpace`` is
enough to read it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.client import ApiError, Proxmox
from nixmox.adapters.proxmox.permissions import Need
from nixmox.backup.verify import restore_storage
from nixmox.inventory.model import Backups, BackupVerify, Guest, Storage

#: The agent's ping: PVE 9 splits the agent's rights, PVE 8 asks VM.Monitor.
AGENT_AUDIT = "VM.GuestAgent.Audit|VM.GuestAgent.Unrestricted|VM.Monitor"


def vzdump_prunes(api: Proxmox, node: str, storage: str) -> bool:
    """Whether vzdump would prune ``storage`` by itself (its or vzdump.conf's retention)."""
    try:
        defaults = api.get(f"/nodes/{node}/vzdump/defaults", storage=storage) or {}
    except ApiError as exc:
        if exc.status != 403:
            raise
        # The token cannot see the storage: the preflight names Datastore.AllocateSpace.
        return False
    value = defaults.get("prune-backups") if isinstance(defaults, dict) else None
    if not value:
        return False  # vzdump's own default keeps everything
    options = props.parse("prune-backups", str(value))
    return options.get("keep-all") not in ("1", "true")


def backup_needs(storage: str, guests: Iterable[Guest], *, keep_all_param: bool) -> list[Need]:
    """``backup`` of ``guests`` to ``storage``; ``keep_all_param``: vzdump must be told not to
    prune (:func:`vzdump_prunes`)."""
    where = f"/storage/{storage}"
    needs = [
        Need(where, "Datastore.AllocateSpace", f"write and prune backups on {storage}"),
    ]
    if keep_all_param:
        needs.append(
            Need(
                where,
                "Datastore.Allocate",
                f"tell vzdump not to prune {storage} by its own retention (prune-backups)",
            )
        )
    for guest in guests:
        vm = f"/vms/{guest.vmid}"
        needs.append(Need(vm, "VM.Audit", f"see {guest.name}"))
        needs.append(Need(vm, "VM.Backup", f"back up and prune {guest.name}"))
        if guest.kind == "vm" and guest.hostpci:
            # backup/job.py: vzdump starts a stopped passthrough VM paused with its
            # devices; the node's free memory (GET /nodes/{node}/status) is read first.
            needs.append(
                Need(
                    f"/nodes/{guest.node}",
                    "Sys.Audit",
                    f"check {guest.node}'s free memory before vzdump starts {guest.name} "
                    "with its devices",
                )
            )
            for pci in guest.hostpci:
                if pci.mapping:
                    # The mapping index lists a mapping only to Mapping.Audit/Use/Modify.
                    needs.append(
                        Need(
                            f"/mapping/pci/{pci.mapping}",
                            "Mapping.Audit",
                            f"see which device {guest.name}'s mapping {pci.mapping} names "
                            "before vzdump starts it",
                        )
                    )
    return needs


def scratch_paths(verify: BackupVerify) -> list[str]:
    """Where the scratch guests' privileges are granted: the pool, else each VMID of the range."""
    if verify.pool:
        return [f"/pool/{verify.pool}"]
    low, high = verify.vmids
    return [f"/vms/{vmid}" for vmid in range(low, high + 1)]


def verify_needs(
    settings: Backups, guests: Iterable[Guest], storages: Sequence[Storage]
) -> list[Need]:
    """``backup verify`` of ``guests``: read each archive, restore it into a scratch guest,
    mark it, cut its network, start it, check it, destroy it."""
    verify = settings.verify or BackupVerify()
    where = f"/storage/{settings.storage}"
    needs = [
        Need(where, "Datastore.AllocateSpace", f"list and restore archives on {settings.storage}")
    ]
    scratch = scratch_paths(verify)
    for guest in guests:
        what = f"verify {guest.name}'s backup"
        needs.append(Need(f"/vms/{guest.vmid}", "VM.Backup", f"restore {guest.name}'s archives"))
        target = restore_storage(guest, verify, list(storages))
        if target:
            needs.append(
                Need(f"/storage/{target}", "Datastore.AllocateSpace", f"{what} onto {target}")
            )
        for net in guest.net:
            needs.append(
                Need(
                    f"/sdn/zones/localnetwork/{net.bridge}",
                    "SDN.Use",
                    f"{what}: its NIC on {net.bridge}",
                )
            )
        for pci in guest.hostpci:
            if pci.mapping:
                needs.append(
                    Need(
                        f"/mapping/pci/{pci.mapping}",
                        "Mapping.Use",
                        f"{what}: its device {pci.mapping}",
                    )
                )
        if guest.kind == "lxc" and guest.unprivileged is False:
            needs.append(Need("/", "Sys.Modify", f"{what}: a privileged container"))
        for path in scratch:
            needs += [
                Need(path, "VM.Allocate", f"{what}: create and destroy the scratch guest"),
                Need(path, "VM.Audit", f"{what}: read the scratch guest"),
                Need(path, "VM.Config.Options", f"{what}: mark the scratch guest as this run's"),
                Need(path, "VM.Config.Network", f"{what}: disconnect the scratch guest's NICs"),
                Need(path, "VM.PowerMgmt", f"{what}: start and stop the scratch guest"),
            ]
            if guest.hostpci:
                # qemu-server check_hostpci_perm, also for a delete: VM.Config.HWType (and
                # Mapping.Use on a mapped device, asked above for the restore).
                needs.append(
                    Need(path, "VM.Config.HWType", f"{what}: take its devices off the copy")
                )
            if guest.kind == "vm" and guest.agent:
                needs.append(Need(path, AGENT_AUDIT, f"{what}: ping the scratch guest's agent"))
            if guest.kind == "vm" and guest.hostpci:
                needs.append(
                    Need(
                        path,
                        "VM.Config.HWType",
                        f"{what}: remove the original's passthrough devices from the copy",
                    )
                )
        if guest.kind == "vm" and guest.startup is not None:
            # The copy loses the original's startup (backup/copies.py); qemu-server checks
            # Sys.Modify on / for that key, also for taking it off ("changes host behaviour").
            needs.append(Need("/", "Sys.Modify", f"{what}: take its startup order off the copy"))
        # backup/copies.py: the node's free memory is read before the copy starts.
        needs.append(
            Need(
                f"/nodes/{guest.node}",
                "Sys.Audit",
                f"{what}: check {guest.node}'s free memory before the scratch guest starts",
            )
        )
    return needs
