"""The lab's ZFS: the example's pools and datasets on zfs-fuse, for the demo.

    python -m tests.lab.zfs_pools --dir DIR

Starts zfs-fuse in a private mount namespace (tests.peers.zfs), creates the
pools and datasets of examples/homelab.toml, a pool for each local
replication target (the example's usb/pve), plus a volume per guest (as
Proxmox would: subvol-VMID-disk-0 for containers, vm-VMID-disk-0 for VMs;
file systems, since zfs-fuse has no zvols), writes DIR/env.sh that puts the
`zfs`/`zpool` wrappers first on PATH, prints ``# zfs ready`` and runs until
SIGTERM or SIGINT, then destroys the pools and stops the daemon. Needs root.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path

from tests.lab.inventory import Inventory, load_inventory
from tests.peers.zfs import ZfsFuse

READY_LINE = "# zfs ready"


def create_lab_datasets(zfs: ZfsFuse, inventory: Inventory) -> list[str]:
    """Pools, datasets and guest volumes of the inventory; returns the datasets made."""
    made: list[str] = []
    for pool in inventory.get("pools", []):
        zfs.create_pool(pool["name"])
    for dataset in inventory.get("datasets", []):
        zfs.zfs("create", "-p", dataset["name"])
        made.append(dataset["name"])
    storages = {s["storage"]: s for s in inventory.get("storages", [])}
    for guest in inventory.get("guests", []):
        kind = "subvol" if guest["kind"] == "lxc" else "vm"
        disk = guest.get("rootfs") or (guest.get("disks") or [None])[0]
        if disk is None or storages.get(disk["storage"], {}).get("type") != "zfspool":
            continue
        volume = f"{storages[disk['storage']]['dataset']}/{kind}-{guest['vmid']}-disk-0"
        zfs.zfs("create", volume)
        made.append(volume)
    # A local replication target (a USB disk's pool, say) is a second pool here;
    # nixmox receives below its dataset, which must exist.
    pools = {p["name"] for p in inventory.get("pools", [])}
    targets = (inventory.get("replication") or {}).get("targets") or {}
    for target in targets.values():
        if target.get("host"):
            continue  # another machine: not this zfs-fuse
        pool = target["dataset"].split("/", 1)[0]
        if pool not in pools:
            zfs.create_pool(pool)
            pools.add(pool)
        zfs.zfs("create", "-p", target["dataset"])
        made.append(target["dataset"])
    return made


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", required=True, help="where env.sh goes")
    parser.add_argument("--inventory", help="default: examples/homelab.toml")
    args = parser.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with ZfsFuse() as zfs:
        made = create_lab_datasets(zfs, load_inventory(args.inventory))
        env = f'export PATH={shlex.quote(str(zfs.bin_dir))}:"$PATH"\n'
        (directory / "env.sh").write_text(env)
        sys.stdout.write(env + f"# {len(made)} datasets: {' '.join(made)}\n{READY_LINE}\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
