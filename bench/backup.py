"""What a backup run costs in API requests against many archives.

Run: .venv/bin/python bench/backup.py [--archives 10000]

The lab's three guests get ARCHIVES nightly archives between them (the
oldest years back), then one `nixmox backup` run backs each up and prunes
with the example's keep-* (last 3, daily 7, weekly 4, monthly 6). Prints the
requests by kind: per guest a lock check, the vzdump call, its task polls and
log, one content listing; then one DELETE per archive removed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archives", type=int, default=10_000)
    args = parser.parse_args()

    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import Connection
    from nixmox.backup.job import BackupJob
    from nixmox.core.zones import zone
    from nixmox.inventory.load import load_inventory
    from tests.lab.fixtures import fresh_lab

    inv = load_inventory(ROOT / "examples" / "homelab.toml")
    assert inv.backups is not None
    with tempfile.TemporaryDirectory() as tmp, fresh_lab(Path(tmp)) as lab:
        lab.pve.add_declared_guests()
        lab.pve.max_requests = 10**7  # keep the whole request log
        lab.pve.storages[inv.backups.storage]["avail"] = 2**60  # room for every archive
        guests = inv.guests
        start = datetime(2026, 11, 20, 2, 30)
        per_guest = args.archives // len(guests)
        for guest in guests:
            kind = "lxc" if guest.kind == "lxc" else "qemu"
            for night in range(1, per_guest + 1):
                lab.pve.seed_backup(
                    inv.backups.storage, guest.vmid, kind, start - timedelta(days=night)
                )
        api = Proxmox(Connection(lab.url, lab.token_id, lab.token, lab.ca_file))
        before = len(lab.pve.requests)
        started = time.perf_counter()
        results = BackupJob(api, inv.backups, zone(inv.timezone)).run(guests)
        seconds = time.perf_counter() - started
        requests = lab.pve.requests[before:]
    kinds: Counter[str] = Counter()
    for method, path, _ in requests:
        if method == "DELETE":
            kinds["DELETE archive"] += 1
        elif path.endswith("/vzdump"):
            kinds["POST vzdump"] += 1
        elif "/tasks/" in path:
            kinds["task status and log"] += 1
        elif "/content" in path:
            kinds["content listing"] += 1
        elif "/status/current" in path:
            kinds["lock check"] += 1
        else:
            kinds[f"{method} {path.split('/api2/json', 1)[-1]}"] += 1
    removed = sum(len(r.removed) for r in results)
    kept = sum(r.kept for r in results)
    print(f"{per_guest * len(guests):,} archives of {len(guests)} guests; one backup run:")
    for kind, count in kinds.most_common():
        print(f"  {count:6d}  {kind}")
    print(f"  {len(requests):6d}  requests in all, {seconds:.1f} s against the lab (no latency)")
    print(
        f"archives removed {removed:,}, kept {kept}; without deletions: "
        f"{len(requests) - kinds['DELETE archive']} requests for {len(guests)} guests"
    )


if __name__ == "__main__":
    main()
