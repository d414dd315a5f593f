"""Replication throughput: `nixmox replicate` against a bare `zfs send | zfs recv`.

Run: .venv/bin/python bench/replicate.py [--mib 96] [--rounds 3]

One zfs-fuse daemon, two pools. The source dataset gets MIB MiB of
incompressible data in one nixmox snapshot; then, alternating, the same
stream is received by a bare shell pipe and by nixmox's replicate job (a
fresh replica each time, the receiving side destroyed in between). Prints
each round's MiB/s and the median of both, and the features detected.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from nixmox.inventory.load import parse_inventory
    from nixmox.replicate.runs import prepare_replicate
    from nixmox.snapshot.policy import snapshot_name
    from tests.peers.zfs import ZfsFuse

    with ZfsFuse() as z:
        src = z.create_pool(size=f"{args.mib * 3}M")
        dst = z.create_pool(size=f"{args.mib * 3}M")
        z.zfs("create", "-o", "compression=off", f"{src}/data")
        z.zfs("create", f"{dst}/backup")
        mnt = Path(z.bin_dir.parent / "mnt")
        z.zfs("set", f"mountpoint={mnt}", f"{src}/data")
        z.run("sh", "-c", f"head -c {args.mib}M /dev/urandom > {mnt}/blob && sync")
        z.zfs("set", "mountpoint=none", f"{src}/data")
        snap = f"{src}/data@{snapshot_name(datetime.now(UTC))}"
        z.zfs("snapshot", snap)
        zfs = str(z.bin_dir / "zfs")
        inv = parse_inventory(
            f'[zfs]\ncommand = ["{zfs}"]\n[replication.targets.t]\ndataset = "{dst}/backup"\n'
            f'zfs_command = ["{zfs}"]\n[[replication.datasets]]\ndataset = "{src}/data"\n'
            'target = "t"\n[snapshots.policies.p]\nkeep-last = 10\n'
            f'[[snapshots.datasets]]\ndataset = "{src}/data"\npolicy = "p"\n'
        )
        # Both rates are stream bytes over wall time of the pipe.
        stream = int(
            subprocess.run(
                ["sh", "-c", f"{zfs} send {snap} | wc -c"], check=True, capture_output=True
            ).stdout
        )
        bare: list[float] = []
        ours: list[float] = []
        features = None
        for _ in range(args.rounds):
            started = time.monotonic()
            subprocess.run(
                ["sh", "-c", f"{zfs} send {snap} | {zfs} receive -u {dst}/backup/bare"],
                check=True,
            )
            bare.append(stream / (time.monotonic() - started) / 2**20)
            z.zfs("destroy", "-r", f"{dst}/backup/bare")
            summary = prepare_replicate(inv, dry_run=False)()
            entry = summary.entries[0]
            d = entry.datasets[0]
            assert d.ok and d.kind == "full" and d.bytes == stream, summary.to_json()
            features = entry.features
            ours.append(d.bytes / d.seconds / 2**20)
            z.zfs("destroy", "-r", f"{dst}/backup/data")
            z.zfs("release", "nixmox-replica-t", snap)
        for name, rates in (("bare send | recv", bare), ("nixmox replicate", ours)):
            shown = ", ".join(f"{r:.1f}" for r in rates)
            print(f"{name:18} median {statistics.median(rates):7.1f} MiB/s  ({shown})")
        print(f"ratio nixmox/bare: {statistics.median(ours) / statistics.median(bare):.2f}")
        print(f"features detected on zfs-fuse: {features.to_json() if features else None}")
        z.destroy_pool(src)
        z.destroy_pool(dst)


if __name__ == "__main__":
    main()
