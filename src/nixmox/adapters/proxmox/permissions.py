"""The privileges preflight: what the inventory needs, against ``/access/permissions``.

The decision is pure (:func:`needed` and :func:`check`); one request reads
what the token may do. Each missing privilege is named with the path it is
needed on and why, before anything fails halfway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.client import Proxmox
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


@dataclass(frozen=True)
class Need:
    path: str
    privilege: str
    why: str


@dataclass(frozen=True)
class Missing:
    need: Need

    def __str__(self) -> str:
        if self.need.privilege == "root@pam":
            return f"{self.need.why}: only root@pam may do that (or use a PCI resource mapping)"
        privilege = " or ".join(self.need.privilege.split("|"))
        return f"{privilege} on {self.need.path} ({self.need.why})"

    def as_json(self) -> dict[str, str]:
        return {"path": self.need.path, "privilege": self.need.privilege, "why": self.need.why}


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


def _ancestors(path: str) -> Iterable[str]:
    parts = path.strip("/").split("/")
    for end in range(len(parts), 0, -1):
        yield "/" + "/".join(parts[:end])
    yield "/"


def check(
    needs: Iterable[Need], granted: Mapping[str, Mapping[str, Any]], user: str
) -> list[Missing]:
    """Which needs ``granted`` (``/access/permissions``) does not cover; pure."""
    missing: list[Missing] = []
    seen: set[tuple[str, str]] = set()
    for need in needs:
        key = (need.path, need.privilege)
        if key in seen:
            continue
        seen.add(key)
        if need.privilege == "root@pam":
            if user.split("!", 1)[0] != "root@pam":
                missing.append(Missing(need))
            continue
        # "A|B": either privilege will do (e.g. PVE 9's and PVE 8's name for the same right).
        choices = need.privilege.split("|")
        if not any(
            granted.get(p, {}).get(choice) for p in _ancestors(need.path) for choice in choices
        ):
            missing.append(Missing(need))
    return missing


def missing_privileges(api: Proxmox, inv: Inventory, plan: Plan) -> list[Missing]:
    """Read what the token may do and compare with what the plan needs."""
    granted = api.get("/access/permissions") or {}
    return check(needed(inv, plan), granted, api.conn.token_id)
