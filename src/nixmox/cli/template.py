"""`nixmox template build KIND` and `nixmox template upload FILE`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import run_job
from nixmox.templates.image import prepare_build
from nixmox.templates.upload import prepare_upload


def build(
    kind_name: str,
    *,
    out: Path,
    flake: Path | None,
    ssh_keys: list[Path],
    config: Path | None = None,
) -> int:
    """Build one template image with ``nix build``; print its path."""
    image_build = prepare_build(kind_name, out=out, flake=flake, ssh_keys=ssh_keys, config=config)
    print("$ " + shlex.join(image_build.argv), flush=True)
    image = image_build.run()
    print(f"built {image}")
    print(f"(kept from garbage collection by {image_build.link}: remove that link once uploaded)")
    print(f"next: nixmox template upload {image}")
    return 0


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
    inv = load_inventory(find_inventory(config))
    work = prepare_upload(inv, file, storage=storage, node=node, vmid=vmid, name=name)
    uploaded = run_job(inv, "template upload", work, dry_run=False)
    if as_json:
        print(json.dumps(uploaded.to_json(), indent=2))
    else:
        for line in uploaded.lines:
            print(line)
    return 0
