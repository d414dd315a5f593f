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

The narrower way for pruning: nixmox prunes by itself, so vzdump must not.
It sends ``prune-backups=keep-all=1`` (and so needs ``Datastore.Allocate``)
only when the storage or ``/etc/vzdump.conf`` would otherwise prune, which
``GET /nodes/{node}/vzdump/defaults`` tells (``Datastore.AllocateSpace`` is
enough to read it).
"""

from __future__ import annotations

from collections.abc import Iterable

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.client import ApiError, Proxmox
from nixmox.adapters.proxmox.permissions import Need
from nixmox.inventory.model import Guest


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
    return needs
