"""What ``template upload`` needs the token to hold.

From the API schema and the handlers behind it:

- an LXC template: pve-storage ``PVE/API2/Storage/Status.pm`` ``upload``
  (``Datastore.AllocateTemplate`` on the storage) and the content listing
  (``Datastore.Audit`` or ``Datastore.AllocateSpace``);
- a VM template (a vzdump archive copied into the storage's dump directory,
  then restored): the content listing; qemu-server ``create_vm`` with
  ``archive`` (``VM.Allocate`` on the new VMID, ``Datastore.AllocateSpace`` on
  the images storage; the archive belongs to that VMID, so
  ``check_volume_access`` asks nothing more; ``check_restore_permissions``:
  ``SDN.Use`` for the archive's NICs, which nixmox's NixOS VM template puts on
  :data:`TEMPLATE_BRIDGE`); ``VM.Config.Options`` for its name;
  ``template`` (``VM.Allocate``); removing the copied archive (pve-storage
  ``Content.pm`` ``delete``: ``Datastore.AllocateSpace`` and ``VM.Backup`` on
  the guest a backup volume belongs to). Reading a storage's path from the API
  (``GET /storage/{id}``) takes ``Datastore.Allocate``: nixmox reads it from
  the inventory instead where ``[[storages]]`` declares a dir storage's path.
"""

from __future__ import annotations

from nixmox.adapters.proxmox.permissions import Need

#: The bridge of net0 in templates/nixos-vm (``proxmox.qemuConf.net0``).
TEMPLATE_BRIDGE = "vmbr0"

LISTING = "Datastore.Audit|Datastore.AllocateSpace"


def vztmpl_needs(storage: str) -> list[Need]:
    """Uploading an LXC template to ``storage``."""
    where = f"/storage/{storage}"
    return [
        Need(where, LISTING, f"list the templates on {storage}"),
        Need(where, "Datastore.AllocateTemplate", f"upload the template to {storage}"),
    ]


def vm_template_needs(
    storage: str, images: str, vmid: int, *, read_storage: bool, bridge: str = TEMPLATE_BRIDGE
) -> list[Need]:
    """Restoring a VM template archive copied to ``storage`` as ``vmid`` onto ``images``;
    ``read_storage``: its path comes from the API, not the inventory."""
    where, vm = f"/storage/{storage}", f"/vms/{vmid}"
    what = f"restore the VM template {vmid}"
    needs = [
        Need(where, "Datastore.AllocateSpace", f"list and remove the copied archive on {storage}"),
        Need(vm, "VM.Allocate", f"{what} and make it a template"),
        Need(f"/storage/{images}", "Datastore.AllocateSpace", f"{what}: its disks on {images}"),
        Need(f"/sdn/zones/localnetwork/{bridge}", "SDN.Use", f"{what}: its net0 on {bridge}"),
        Need(vm, "VM.Config.Options", f"name the VM template {vmid}"),
        Need(vm, "VM.Backup", f"remove the copied archive of {vmid}"),
    ]
    if read_storage:
        needs.append(Need(where, "Datastore.Allocate", f"read {storage}'s directory from the API"))
    return needs
