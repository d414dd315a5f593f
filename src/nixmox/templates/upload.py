"""``template upload``: an image onto the right Proxmox storage.

A container tarball goes to a ``vztmpl`` storage through PVE's upload API. A
VM archive cannot (PVE's upload takes no backups): it is copied into the
backup storage's ``dump/`` directory over SSH, restored as a new VM
(``unique``) and made a template; the copy is removed afterwards.
:class:`TemplateUpload` is the journal's summary of either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import read_guests
from nixmox.adapters.proxmox.permissions import require
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.proxmox.tasks import wait
from nixmox.adapters.runner import Runner, node_remote
from nixmox.core import jsonrows
from nixmox.core.errors import ConfigError
from nixmox.inventory.model import Inventory, Storage
from nixmox.templates import build as rules
from nixmox.templates.privileges import vm_template_needs, vztmpl_needs


@dataclass(frozen=True)
class TemplateUpload:
    """What an upload did: a container template (``volid``) or a VM template (``vmid``)."""

    lines: tuple[str, ...]
    volid: str | None = None
    uploaded: bool = False
    vmid: int | None = None
    name: str | None = None
    archive: str | None = None
    result: str = "ok"  # a failed upload raises instead

    def to_json(self) -> dict[str, Any]:
        if self.vmid is not None:
            return {
                "vmid": self.vmid,
                "name": self.name,
                "archive": self.archive,
                "lines": list(self.lines),
            }
        return {"volid": self.volid, "uploaded": self.uploaded, "lines": list(self.lines)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TemplateUpload:
        return cls(
            tuple(jsonrows.texts(data, "lines")),
            volid=jsonrows.optional_text(data, "volid"),
            uploaded=bool(data.get("uploaded")),
            vmid=jsonrows.optional_integer(data, "vmid"),
            name=jsonrows.optional_text(data, "name"),
            archive=jsonrows.optional_text(data, "archive"),
        )


def prepare_upload(
    inv: Inventory,
    file: Path,
    *,
    storage: str | None,
    node: str | None,
    vmid: int | None,
    name: str | None,
) -> Callable[[], TemplateUpload]:
    """Check the file and node, connect; return the upload, ready to run."""
    if not file.is_file():
        raise ConfigError(f"{file}: no such file")
    kind = rules.image_type(file.name)
    node_name = rules.pick_node(inv, node)
    api = Proxmox(connection(inv.proxmox))
    if kind == "vztmpl":
        store = rules.pick_storage(inv, "vztmpl", storage, node_name)
        require(api, vztmpl_needs(store.storage), "template upload")
    else:
        store = rules.pick_storage(inv, "backup", storage, node_name)
        if vmid is None:
            vmid = int(api.get("/cluster/nextid"))
        disks = rules.images_storage(inv, node_name)
        needs = vm_template_needs(
            store.storage, disks.storage, vmid, read_storage=_dump_dir(store) is None
        )
        require(api, needs, "template upload")
    chosen = vmid

    def upload() -> TemplateUpload:
        if kind == "vztmpl":
            return _upload_vztmpl(api, inv, file, node_name, storage, name)
        return _upload_vm(api, inv, file, node_name, storage, chosen, name)

    return upload


def _dump_dir(store: Storage) -> str | None:
    """The storage's directory as the inventory declares it, or None when only the API knows."""
    return store.path if store.type == "dir" and store.path else None


def _content(api: Proxmox, node: str, storage: str, content: str) -> set[str]:
    rows = api.get(f"/nodes/{node}/storage/{storage}/content", content=content) or []
    return {str(r.get("volid")) for r in rows}


def _upload_vztmpl(
    api: Proxmox, inv: Inventory, file: Path, node: str, storage: str | None, name: str | None
) -> TemplateUpload:
    store = rules.pick_storage(inv, "vztmpl", storage, node)
    filename = rules.check_filename(name or rules.upload_name(file))
    rules.image_type(filename)
    volid = f"{store.storage}:vztmpl/{filename}"
    rows = api.get(f"/nodes/{node}/storage/{store.storage}/content", content="vztmpl") or []
    there = rules.existing(volid, rows, file.stat().st_size)
    if there == "same":
        lines = (f"{volid} is there already: not uploaded again", _use_lxc(volid))
        return TemplateUpload(lines, volid=volid, uploaded=False)
    if there == "different":
        raise ConfigError(
            f"{volid} is there already with other content: give --name to upload "
            f"{file.name} beside it (nixmox does not replace a template it may not have made)"
        )
    upid = api.upload(node, store.storage, file, content="vztmpl", filename=filename)
    wait(api, str(upid), what=f"upload of {filename} to {store.storage}")
    if volid not in _content(api, node, store.storage, "vztmpl"):
        raise rules.TemplateError(f"the upload finished but {volid} is not listed on {node}")
    lines = (f"uploaded {file.name} as {volid}", _use_lxc(volid))
    return TemplateUpload(lines, volid=volid, uploaded=True)


def _use_lxc(volid: str) -> str:
    return f'in the inventory, an LXC guest uses it with: template = "{volid}"'


def _upload_vm(
    api: Proxmox,
    inv: Inventory,
    file: Path,
    node: str,
    storage: str | None,
    vmid: int | None,
    name: str | None,
) -> TemplateUpload:
    """PVE's upload API takes no backups (content iso, vztmpl, import only): the
    archive goes to the backup storage's dump directory over SSH, then PVE
    restores it (``qmrestore --unique``) onto the inventory's images storage
    and makes the VM a template."""
    store = rules.pick_storage(inv, "backup", storage, node)
    disks = rules.images_storage(inv, node)
    template_name = name or "nixos-vm"
    if vmid is None:
        vmid = int(api.get("/cluster/nextid"))
    if vmid in read_guests(api):
        raise ConfigError(f"VMID {vmid} is taken: give a free one with --vmid")
    path = _dump_dir(store)
    if path is None:
        # Not declared in the inventory: ask the API (which takes Datastore.Allocate).
        info = api.get(f"/storage/{store.storage}") or {}
        path = info.get("path") if info.get("type") in ("dir", "nfs", "cifs", "btrfs") else None
    if not path:
        raise ConfigError(
            f"storage {store.storage} is not a directory storage: nixmox copies a VM "
            "archive into its dump/ directory (give --storage)"
        )
    target = next(n for n in inv.nodes if n.name == node)
    if not target.address:
        raise ConfigError(
            f"node {node} has no address: nixmox copies the VM archive to it with scp "
            "(PVE's upload API does not take backups)"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y_%m_%d-%H_%M_%S")
    archive = rules.vzdump_name(vmid, stamp, file.name)
    remote = node_remote(target)
    dump = f"{path.rstrip('/')}/dump"
    runner = Runner()
    runner.run(["mkdir", "-p", dump], remote=remote)
    runner.run(
        ["scp", "-q", "-o", "BatchMode=yes", *remote.options, "--", str(file),
         f"{remote.destination}:{dump}/{archive}"],
        timeout=rules.BUILD_TIMEOUT,
    )  # fmt: skip
    volid = f"{store.storage}:backup/{archive}"
    if volid not in _content(api, node, store.storage, "backup"):
        raise rules.TemplateError(
            f"copied {archive} to {node}:{dump}, but PVE does not list {volid}"
        )
    try:
        upid = api.post(
            f"/nodes/{node}/qemu", vmid=vmid, archive=volid, unique=1, storage=disks.storage
        )
        wait(api, str(upid), what=f"restore of {archive} to VM {vmid}")
        api.put(f"/nodes/{node}/qemu/{vmid}/config", name=template_name)
        done = api.post(f"/nodes/{node}/qemu/{vmid}/template")
        if isinstance(done, str) and done.startswith("UPID:"):
            wait(api, done, what=f"converting VM {vmid} to a template")
    finally:
        # The copy (nixmox's own) was only the way in: the VM has its own disks,
        # and a failed restore leaves nothing behind on the backup storage.
        gone = api.delete(f"/nodes/{node}/storage/{store.storage}/content/{volid}")
        if isinstance(gone, str) and gone.startswith("UPID:"):
            wait(api, gone, what=f"removing the copied {archive}")
    lines = (
        f"restored {file.name} as VM template {vmid} ({template_name}) on {node}",
        f"in the inventory, a VM guest clones it with: clone = {vmid}"
        f' (or clone = "{template_name}")',
    )
    return TemplateUpload(lines, vmid=vmid, name=template_name, archive=volid)
