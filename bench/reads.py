"""How fast the read-only commands read a big cluster: status, doctor, the live diagram.

Run: .venv/bin/python bench/reads.py [--nodes 8] [--guests 1000] [--latency 0.02]
                                     [--against OTHER/src]

The lab of bench/plan.py (8 nodes, 1,000 declared guests, every API answer
held for 20 ms of real time, checked by a probe request), with a backup of
each guest on the backup storage. Each command's read pass runs in a child
process on the parsed inventory (parsing 1,000 guests is not the API's time):
`status` (nixmox.observe.status.gather), `doctor --only guests --only backups`
(nixmox.doctor.areas.run_areas) and `render diagram` with live state
(nixmox.observe.live.try_live). For each: the requests it made and its wall
time against the latency bound, requests x latency / concurrency (24 in
flight, 4 per node). `--against` runs the same passes with another checkout's
src/ (e.g. main's, before a change) against the same lab in the same run.
Targets (issue 20): at most one request per guest (plus a few per node), each
within 2x of the latency bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from lab import inventory, lab_parser, serve  # noqa: E402

# One read pass in a child, on the source tree its PYTHONPATH names: prints
# {"seconds", "cpu", "requests"}. Requests are counted where every one is sent.
CHILD = """
import contextlib, json, os, sys, threading, time
from pathlib import Path
from nixmox.adapters.proxmox import client
from nixmox.inventory.load import load_inventory

count, lock = [0], threading.Lock()
send = client.Proxmox.request

def counted(self, *args, **kwargs):
    with lock:
        count[0] += 1
    return send(self, *args, **kwargs)

client.Proxmox.request = counted
command, config, state = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
inv = load_inventory(config)
if command == "status":
    from nixmox.adapters.journal import Journal
    from nixmox.observe.status import gather
    journal = Journal(state)
    work = lambda: gather(inv, journal)
elif command == "doctor":
    from nixmox.doctor.areas import run_areas
    work = lambda: run_areas(inv, ["guests", "backups"], None)
elif command == "plan":
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import connection
    from nixmox.provision.actual import read_state
    from nixmox.provision.diff import make_plan
    work = lambda: make_plan(inv, read_state(Proxmox(connection(inv.proxmox)), inv))
else:
    from nixmox.observe.live import try_live
    work = lambda: try_live(inv)
started, cpu = time.perf_counter(), time.process_time()
if os.environ.get("BENCH_PROFILE"):
    import cProfile
    with cProfile.Profile() as profile:
        result = work()
    profile.dump_stats(os.environ["BENCH_PROFILE"] + "." + command)
else:
    result = work()
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
if command == "diagram":
    assert result[0] is not None, result[1]
elif command == "plan":
    assert not result.has_changes and not result.errors, result.errors[:3]
elif command == "doctor":
    bad = [c for c in result if c.status.value not in ("PASS", "INFO")]
    assert not bad, bad[:3]
print(json.dumps({"seconds": seconds, "cpu": cpu, "requests": count[0]}))
"""

COMMANDS = {
    "plan": "plan (the reference: issue 20's first part)",
    "status": "status",
    "doctor": "doctor --only guests --only backups",
    "diagram": "render diagram (live)",
}


def one_pass(
    src: Path, command: str, config: Path, env: dict[str, str], state: Path
) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, command, str(config), str(state)],
        env={**env, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{command} ({src}) failed:\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = lab_parser(__doc__)
    parser.add_argument("--against", type=Path, help="another checkout's src/ to run as well")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.fanout import PER_NODE, TOTAL
    from nixmox.adapters.proxmox.settings import Connection

    trees = {"this tree": ROOT / "src"}
    if args.against is not None:
        trees[f"--against {args.against}"] = args.against.resolve()
    results: dict[tuple[str, str], dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(args.nodes, args.guests, args.latency, tmp, backups=True) as (url, token, ca),
    ):
        api = Proxmox(Connection(url, "root@pam!bench", token, ca))
        api.get("/version")  # TLS handshake outside the probe
        started = time.perf_counter()
        api.get("/version")
        probe = time.perf_counter() - started
        # The whole comparison is only worth something if the lab really waits.
        assert probe >= args.latency, f"probe took {probe * 1000:.1f} ms < the latency"
        config = Path(tmp) / "nixmox.toml"
        config.write_text(inventory(args.nodes, args.guests, backups=True))
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        env = {
            **os.environ,
            "NIXMOX_PVE_URL": url,
            "NIXMOX_PVE_TOKEN": token,
            "NIXMOX_PVE_CA_FILE": ca,
            "NIXMOX_STATE_DIR": str(state),
        }
        for command in COMMANDS:
            for src in trees.values():
                results[(command, str(src))] = one_pass(src, command, config, env, state)

    concurrency = min(TOTAL, PER_NODE * args.nodes)
    print(
        f"lab: {args.nodes} nodes, {args.guests} declared guests, "
        f"{args.latency * 1000:.0f} ms held on every answer (probe: {probe * 1000:.1f} ms); "
        f"bound = requests x latency / {concurrency} in flight ({PER_NODE} per node)"
    )
    print(
        f"{'command':<38} {'tree':<10} {'requests':>8} {'/guest':>7} {'wall s':>7} "
        f"{'bound s':>7} {'x bound':>7} {'cpu s':>6}"
    )
    for command, title in COMMANDS.items():
        mine = results[(command, str(trees["this tree"]))]
        bound = mine["requests"] * args.latency / concurrency
        for name, src in trees.items():
            r = results[(command, str(src))]
            label = "this" if name == "this tree" else "against"
            print(
                f"{title:<38} {label:<10} {r['requests']:8.0f} "
                f"{r['requests'] / args.guests:7.2f} {r['seconds']:7.2f} {bound:7.2f} "
                f"{r['seconds'] / bound:6.2f}x {r['cpu']:6.2f}"
            )
        few = args.guests + 4 * args.nodes + 4
        verdict = (
            "OK" if mine["requests"] <= few and mine["seconds"] <= 2 * bound else "OVER TARGET"
        )
        print(
            f"  -> {title}: {mine['requests']:.0f} requests (target <= {few}), "
            f"{mine['seconds'] / bound:.2f}x the bound (target <= 2x): {verdict}"
        )


if __name__ == "__main__":
    main()
