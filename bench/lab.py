"""The benchmark lab: fakepve (tests/lab) in its own process, many guests, real latency.

Shared by bench/plan.py and bench/reads.py. Every API answer is held for the
given seconds of real time (the lab's ``hold_answers``, which does not scale
with ``time_scale``; that is 0 so tasks finish at once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import asyncio, secrets, sys, time
from tests.lab.server import Lab
from tests.lab.serving import make_pki
nodes, guests = int(sys.argv[1]), int(sys.argv[2])
latency, directory, backups = float(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"

async def main():
    ca, cert, key = make_pki(directory, "127.0.0.1")
    pve = Lab(host="127.0.0.1", port=0)
    pve.time_scale = 0
    for n in range(2, nodes + 1):
        pve.add_node(f"pve{n}")
    for i in range(guests):
        node = f"pve{i % nodes + 1}"
        pve.add_vm(1000 + i, f"g{i}", node=node, status="running", config={
            "cores": 2, "memory": "2048",
            "net0": f"virtio=BC:24:11:00:{i // 256:02X}:{i % 256:02X},bridge=vmbr0",
            "scsi0": f"vm-disks:vm-{1000 + i}-disk-0,size=8G", "tags": "bench"})
        if backups:
            pve.seed_backup("backups", 1000 + i, "qemu", time.time() - 3600)
    pve.apitokens["root@pam!bench"] = token = secrets.token_hex(8)
    await pve.start(cert, key)
    pve.hold_answers(latency)
    print(pve.url, token, ca, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def lab_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the lab's shape: --nodes, --guests, --latency."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds held per answer")
    return parser


def inventory(nodes: int, guests: int, *, backups: bool = False) -> str:
    """The inventory declaring the lab's guests as they are (no changes to plan)."""
    lines = [
        'timezone = "UTC"',
        "[proxmox]",
        'url = "https://pve.home.arpa:8006"',
        'token_id = "root@pam!bench"',
    ]
    if backups:
        lines += ["[backups]", 'storage = "backups"']
    for n in range(1, nodes + 1):
        lines += ["[[nodes]]", f'name = "pve{n}"']
    for i in range(guests):
        lines += [
            "[[guests]]",
            f'name = "g{i}"',
            f"vmid = {1000 + i}",
            'kind = "vm"',
            f'node = "pve{i % nodes + 1}"',
            "cores = 2",
            "memory = 2048",
            'tags = ["bench"]',
            "[[guests.net]]",
            'bridge = "vmbr0"',
            "[[guests.disks]]",
            'slot = "scsi0"',
            'storage = "vm-disks"',
            'size = "8G"',
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def serve(
    nodes: int, guests: int, latency: float, directory: str, *, backups: bool = False
) -> Iterator[tuple[str, str, str]]:
    """Run the lab until the block ends; yields (url, token secret, CA file)."""
    argv = [str(nodes), str(guests), str(latency), directory, "1" if backups else "0"]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, *argv],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.stdout is not None
        url, token, ca = server.stdout.readline().split()
        yield url, token, ca
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
