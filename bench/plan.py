"""How fast `plan` reads a big cluster, against a Terraform-style refresh.

Run: .venv/bin/python bench/plan.py [--nodes 8] [--guests 1000] [--latency 0.02]
                                    [--baseline-guests N] [--total N] [--per-node N]

A lab (fakepve, in its own process) with 8 nodes and 1,000 declared guests,
every API answer held for 20 ms of real time (the lab's ``hold_answers``: it
does not scale with time_scale, which is 0 so that tasks finish at once). A
probe request checks the hold before anything is timed. It measures, in one run:
- nixmox's plan (read the actual state, compare): requests made and wall time,
  against the latency bound requests x latency / concurrency;
- a baseline that reads the same state the way the bpg Terraform provider
  refreshes (per guest: /cluster/resources, config, status, pool list),
  one request after another.
Targets (issue 20): at most 1 request per declared guest plus a few per node;
wall time within 1.5x of the latency bound; at least 20x faster than the baseline.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # this checkout's nixmox, whatever is installed
sys.path.insert(0, str(ROOT / "bench"))

from lab import inventory, lab_parser, serve  # noqa: E402


def main() -> None:
    parser = lab_parser(__doc__)
    parser.add_argument(
        "--baseline-guests",
        type=int,
        default=None,
        help="time the baseline on this many guests and scale up (default: all)",
    )
    parser.add_argument("--total", type=int, default=None, help="requests in flight in all")
    parser.add_argument("--per-node", type=int, default=None, help="requests in flight per node")
    args = parser.parse_args()

    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.fanout import PER_NODE, TOTAL
    from nixmox.adapters.proxmox.settings import Connection
    from nixmox.inventory.load import parse_inventory
    from nixmox.provision.actual import read_state
    from nixmox.provision.diff import make_plan

    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(args.nodes, args.guests, args.latency, tmp) as (url, token, ca),
    ):
        conn = Connection(url, "root@pam!bench", token, ca)
        inv = parse_inventory(inventory(args.nodes, args.guests))

        total = args.total or TOTAL
        per_node = args.per_node or PER_NODE
        api = Proxmox(conn)
        api.get("/version")  # TLS handshake and pool warm-up outside the timing
        probe_started = time.perf_counter()
        api.get("/version")
        probe = time.perf_counter() - probe_started
        # The whole comparison is only worth something if the lab really waits.
        assert probe >= args.latency, f"probe took {probe * 1000:.1f} ms < the latency"
        api.calls = 0
        started = time.perf_counter()
        cpu = time.process_time()
        plan = make_plan(inv, read_state(api, inv, per_node=per_node, total=total))
        nixmox_seconds = time.perf_counter() - started
        client_cpu = time.process_time() - cpu
        requests = api.calls
        assert not plan.has_changes and not plan.errors, plan.errors[:3]
        concurrency = min(total, per_node * args.nodes)
        ideal = requests * args.latency / concurrency

        sample = args.baseline_guests or args.guests
        base = Proxmox(conn)
        base.get("/version")
        base.calls = 0
        started = time.perf_counter()
        for g in inv.guests[:sample]:
            # bpg's refresh, per VM: the cluster list, config, status, pools.
            base.get("/cluster/resources", type="vm")
            base.get(f"/nodes/{g.node}/qemu/{g.vmid}/config")
            base.get(f"/nodes/{g.node}/qemu/{g.vmid}/status/current")
            base.get("/pools")
        baseline_seconds = (time.perf_counter() - started) * args.guests / sample
        baseline_requests = base.calls * args.guests // sample

    per_guest = (requests - 1) / args.guests
    print(
        f"lab: {args.nodes} nodes, {args.guests} declared guests, "
        f"{args.latency * 1000:.0f} ms held on every answer (probe: {probe * 1000:.1f} ms)"
    )
    print(
        f"nixmox plan:  {requests:6d} requests ({per_guest:.2f} per guest + 1), "
        f"{nixmox_seconds:7.2f} s, concurrency {concurrency} "
        f"({total} in all, {per_node} per node)"
    )
    print(f"              nixmox's own CPU time: {client_cpu:.2f} s (the rest is waiting)")
    print(
        f"bound:        requests x latency / concurrency = {ideal:7.2f} s; "
        f"plan is {nixmox_seconds / ideal:.2f}x of it (target <= 1.5x): "
        f"{'OK' if nixmox_seconds <= 1.5 * ideal else 'OVER TARGET'}"
    )
    scaled = "" if sample == args.guests else f" (measured on {sample} guests, scaled)"
    print(
        f"baseline:     {baseline_requests:6d} requests, {baseline_seconds:7.2f} s "
        f"sequential{scaled}"
    )
    speedup = baseline_seconds / nixmox_seconds
    print(
        f"speed-up:     {speedup:.1f}x (target >= 20x): {'OK' if speedup >= 20 else 'UNDER TARGET'}"
    )
    print(
        f"requests per guest: {per_guest:.2f} (target <= 1 + a few per node): "
        f"{'OK' if requests <= args.guests + 4 * args.nodes + 4 else 'OVER TARGET'}"
    )


if __name__ == "__main__":
    main()
