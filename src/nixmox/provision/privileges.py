"""What a plan needs the token to hold: one :class:`Need` per read and change.

Pure (:func:`needed`); :func:`missing_privileges` compares the needs with what
the token may do through :mod:`nixmox.adapters.proxmox.permissions`.
"""

from __future__ import annotations

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import Missing, Need, missing
from nixmox.inventory.model import Inventory
from nixmox.provision.diff import Plan

_CONFIG_PRIV = {
    "cores": "VM.Config.CPU",
    "sockets": "VM.Config.CPU",
    "cpu": "VM.Config.CPU",
    "affinity": "VM.Config.CPU",
    "memory": "VM.Config.Memory",
    "balloon": "VM.Config.Memory",
    "swap": "VM.Config.Memory",
    "net": "VM.Config.Network",
    "scsi": "VM.Config.Disk",
    "virtio": "VM.Config.Disk",
    "sata": "VM.Config.Disk",
    "ide": "VM.Config.Disk",
    "rootfs": "VM.Config.Disk",
    "efidisk": "VM.Config.Disk",
    "tpmstate": "VM.Config.Disk",
    "hostpci": "VM.Config.HWType",
    "vga": "VM.Config.HWType",
    "machine": "VM.Config.HWType",
    "bios": "VM.Config.HWType",
    "scsihw": "VM.Config.HWType",
}


def needed(inv: Inventory, plan: Plan) -> list[Need]:
    """Privileges the plan's reads and changes require."""
    needs = [Need("/vms", "VM.Audit", "read the guests")]
    guests = {g.name: g for g in inv.guests}
    for gp in plan.guests:
        guest = guests[gp.name]
        vm = f"/vms/{gp.vmid}"
        if gp.action == "create":
            needs.append(Need(vm, "VM.Allocate", f"create {gp.name}"))
            disks = [d.storage for d in guest.disks]
            disks += [v.storage for v in (guest.rootfs, guest.efidisk, guest.tpmstate) if v]
            needs += [
                Need(f"/storage/{s}", "Datastore.AllocateSpace", f"disks of {gp.name}")
                for s in sorted(set(disks))
            ]
            if guest.template:
                store = guest.template.split(":", 1)[0]
                needs.append(Need(f"/storage/{store}", "Datastore.Audit", f"template of {gp.name}"))
            if isinstance(guest.clone, int):
                needs.append(Need(f"/vms/{guest.clone}", "VM.Clone", f"clone {gp.name}"))
            keys = ["net", "cores", "memory", *(["hostpci"] if guest.hostpci else [])]
        else:
            keys = [c.key for c in gp.changes]
        for key in keys:
            priv = _CONFIG_PRIV.get(props.kind_of(key), "VM.Config.Options")
            needs.append(Need(vm, priv, f"change {key} of {gp.name}"))
        if any(c.label in ("needs-reboot", "needs-stop") for c in gp.changes):
            needs.append(Need(vm, "VM.PowerMgmt", f"reboot {gp.name} for pending changes"))
        if gp.action in ("create", "update") and any(p.device for p in guest.hostpci):
            needs.append(Need(vm, "root@pam", f"raw hostpci on {gp.name}"))
        for pci in guest.hostpci:
            if pci.mapping:
                needs.append(
                    Need(f"/mapping/pci/{pci.mapping}", "Mapping.Use", f"hostpci of {gp.name}")
                )
    for bp in plan.bridges:
        if bp.action in ("create", "update") and bp.node:
            needs.append(Need(f"/nodes/{bp.node}", "Sys.Modify", f"bridge {bp.name}"))
    for jp in plan.jobs:
        if jp.action in ("create", "update"):
            needs.append(Need("/", "Sys.Modify", f"backup job {jp.name}"))
    for sp in plan.storages:
        if sp.action in ("create", "update"):
            needs.append(Need("/storage", "Datastore.Allocate", f"storage {sp.name}"))
    return needs


def missing_privileges(api: Proxmox, inv: Inventory, plan: Plan) -> list[Missing]:
    """Read what the token may do and compare with what the plan needs."""
    return missing(api, needed(inv, plan))
