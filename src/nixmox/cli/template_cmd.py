"""`nixmox template build KIND` and `nixmox template upload FILE`."""

from __future__ import annotations

import datetime as dt
import shlex
import shutil
from pathlib import Path
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.proxmox.tasks import wait
from nixmox.adapters.runner import Remote, Runner
from nixmox.core.errors import ConfigError
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Inventory
from nixmox.runtime.run import observed_run
from nixmox.templates import build as t

# -- build ----------------------------------------------------------------------------


def _inventory_keys(config: Path | None) -> str | None:
    """``[templates] ssh_keys`` of the inventory, when there is one that declares them."""
    try:
        path = find_inventory(config)
    except ConfigError:
        if config is not None:
            raise
        return None  # no inventory anywhere: --ssh-key it is
    inv = load_inventory(path)
    if inv.templates is None or not inv.templates.ssh_keys:
        return None
    return t.authorized_keys([(f"{path}: templates.ssh_keys", "\n".join(inv.templates.ssh_keys))])


def build(
    kind_name: str,
    *,
    out: Path,
    flake: Path | None,
    ssh_keys: list[Path],
    config: Path | None = None,
) -> int:
    """Build one template image with ``nix build``; print its path.

    The guest's SSH keys: the ``--ssh-key`` files, else the inventory's
    ``[templates] ssh_keys``.
    """
    k = t.kind(kind_name)
    if shutil.which("nix") is None:
        raise t.TemplateError(
            "`nix` is not on PATH: building a NixOS image needs nix (with flakes) and access "
            "to nixpkgs; run it on NixOS or wherever nix is installed; nothing was built"
        )
    out = out.resolve()
    keys = t.authorized_keys((str(p), _read(p)) for p in ssh_keys) if ssh_keys else None
    if keys is None and flake is None:
        keys = _inventory_keys(config)
    overrides: list[tuple[str, str]] = []
    root: Path | None = None
    if flake is not None:
        if keys is not None:
            raise ConfigError(
                "--ssh-key writes authorized_keys into the flake nixmox stages; with --flake, "
                f"put the keys in {flake}/authorized_keys yourself"
            )
        if not (flake / "flake.nix").is_file():
            raise ConfigError(f"--flake {flake}: no flake.nix there")
        uri = str(flake.resolve())
    else:
        root = t.source_root()
        if root is None:
            raise t.TemplateError(
                "this nixmox was installed without its templates: give --flake DIR "
                "(a copy of templates/KIND from the nixmox repository)"
            )
        if keys is None:
            raise ConfigError(
                "give --ssh-key FILE (a public key file, repeatable) or [templates] ssh_keys "
                "in the inventory: without a key the guest accepts no SSH login"
            )
    runner = Runner()
    t.check_can_build(k, runner)
    out.mkdir(parents=True, exist_ok=True)
    if root is not None:
        staged = t.stage(root / "templates" / k.name, out / f"flake-{k.name}", keys)
        uri = f"path:{staged}"
        overrides.append(("nixmox", t.flake_uri(root)))
    link = out / f"result-{k.name}"
    argv = t.build_argv(k, uri, str(link), overrides)
    print("$ " + shlex.join(argv), flush=True)
    image = t.run_build(argv, runner, out, link)
    print(f"built {image}")
    print(f"(kept from garbage collection by {link}: remove that link once uploaded)")
    print(f"next: nixmox template upload {image}")
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"--ssh-key {path}: {exc.strerror}") from None


# -- upload ----------------------------------------------------------------------------


def upload(
    config: Path | None,
    file: Path,
    *,
    storage: str | None,
    node: str | None,
    vmid: int | None,
    name: str | None,
    as_json: bool,
) -> int:
    """A container tarball to a vztmpl storage; a VM archive restored as a VM template."""
    if not file.is_file():
        raise ConfigError(f"{file}: no such file")
    kind = t.image_type(file.name)
    inv = load_inventory(find_inventory(config))
    node_name = t.pick_node(inv, node)
    api = Proxmox(connection(inv.proxmox))
    with observed_run(inv, "template upload") as run:
        if kind == "vztmpl":
            outcome = _upload_vztmpl(api, inv, file, node_name, storage, name)
        else:
            outcome = _upload_vm(api, inv, file, node_name, storage, vmid, name)
        run.result = "ok"
        run.summary = outcome
    if as_json:
        import json

        print(json.dumps(outcome, indent=2))
    else:
        for line in outcome["lines"]:
            print(line)
    return 0


def _content(api: Proxmox, node: str, storage: str, content: str) -> set[str]:
    rows = api.get(f"/nodes/{node}/storage/{storage}/content", content=content) or []
    return {str(r.get("volid")) for r in rows}


def _upload_vztmpl(
    api: Proxmox, inv: Inventory, file: Path, node: str, storage: str | None, name: str | None
) -> dict[str, Any]:
    store = t.pick_storage(inv, "vztmpl", storage, node)
    filename = t.check_filename(name or t.upload_name(file))
    t.image_type(filename)
    volid = f"{store.storage}:vztmpl/{filename}"
    rows = api.get(f"/nodes/{node}/storage/{store.storage}/content", content="vztmpl") or []
    there = t.existing(volid, rows, file.stat().st_size)
    if there == "same":
        return {
            "volid": volid,
            "uploaded": False,
            "lines": [f"{volid} is there already: not uploaded again", _use_lxc(volid)],
        }
    if there == "different":
        raise ConfigError(
            f"{volid} is there already with other content: give --name to upload "
            f"{file.name} beside it (nixmox does not replace a template it may not have made)"
        )
    upid = api.upload(node, store.storage, file, content="vztmpl", filename=filename)
    wait(api, str(upid), what=f"upload of {filename} to {store.storage}")
    if volid not in _content(api, node, store.storage, "vztmpl"):
        raise t.TemplateError(f"the upload finished but {volid} is not listed on {node}")
    return {
        "volid": volid,
        "uploaded": True,
        "lines": [f"uploaded {file.name} as {volid}", _use_lxc(volid)],
    }


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
) -> dict[str, Any]:
    """PVE's upload API takes no backups (content iso, vztmpl, import only): the
    archive goes to the backup storage's dump directory over SSH, then PVE
    restores it (``qmrestore --unique``) and makes the VM a template."""
    store = t.pick_storage(inv, "backup", storage, node)
    template_name = name or "nixos-vm"
    if vmid is None:
        vmid = int(api.get("/cluster/nextid"))
    if any(int(r.get("vmid", -1)) == vmid for r in api.get("/cluster/resources", type="vm") or []):
        raise ConfigError(f"VMID {vmid} is taken: give a free one with --vmid")
    info = api.get(f"/storage/{store.storage}") or {}
    path = info.get("path")
    if info.get("type") not in ("dir", "nfs", "cifs", "btrfs") or not path:
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
    archive = t.vzdump_name(vmid, stamp, file.name)
    remote = Remote.to(f"{target.ssh_user}@{target.address}")
    dump = f"{path.rstrip('/')}/dump"
    runner = Runner()
    runner.run(["mkdir", "-p", dump], remote=remote)
    runner.run(
        ["scp", "-q", "-o", "BatchMode=yes", *remote.options, str(file),
         f"{remote.destination}:{dump}/{archive}"],
        timeout=t.BUILD_TIMEOUT,
    )  # fmt: skip
    volid = f"{store.storage}:backup/{archive}"
    if volid not in _content(api, node, store.storage, "backup"):
        raise t.TemplateError(f"copied {archive} to {node}:{dump}, but PVE does not list {volid}")
    try:
        upid = api.post(f"/nodes/{node}/qemu", vmid=vmid, archive=volid, unique=1)
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
    return {
        "vmid": vmid,
        "name": template_name,
        "archive": volid,
        "lines": [
            f"restored {file.name} as VM template {vmid} ({template_name}) on {node}",
            f"in the inventory, a VM guest clones it with: clone = {vmid}"
            f' (or clone = "{template_name}")',
        ],
    }
