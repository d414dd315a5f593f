"""Serve the lab standalone, for running nixmox by hand against it.

    python -m tests.lab [--host 127.0.0.2] [--port 0] [--dir DIR] [--guests] [--windows-agent]
    eval "$(python -m tests.lab --dir /tmp/lab | sed '/# lab ready/q')"   # or: . DIR/env.sh

Prints the NIXMOX_PVE_* exports, then ``# lab ready``, and serves until
SIGTERM or SIGINT. The same exports go to DIR/env.sh. Tasks finish at once
(time scale 0). Loopback addresses only: the lab has no real security.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from fakepve import settle

from .server import Lab
from .serving import READY_LINE, TOKEN_ID, exports, lab_env, make_pki


def _loopback(host: str) -> str:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{host!r} is not a loopback address (127.0.0.0/8 or ::1)")


DEMO_UPGRADES = [
    ("proxmox-kernel-6.14.11-4-pve-signed", "6.14.11-4"),
    ("pve-manager", "9.0.11"),
    ("qemu-server", "9.0.23"),
]


async def serve(args: argparse.Namespace) -> int:
    directory = Path(args.dir or tempfile.mkdtemp(prefix="nixmox-lab-"))
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, certfile, keyfile = make_pki(directory, args.host)
    lab = Lab(args.inventory, host=args.host, port=args.port)
    lab.time_scale = args.time_scale
    if args.backups:
        # Nightly archives (02:30, the node's zone) of the inventory's guests for
        # the last N nights, as a lab that has been running for a while has.
        import datetime as dt

        from .inventory import load_inventory

        inv = load_inventory(args.inventory)
        storage = inv.get("backups", {}).get("storage", "backups")
        today = dt.datetime.now().replace(hour=2, minute=30, second=0, microsecond=0)
        for guest in inv.get("guests", []):
            kind = "lxc" if guest["kind"] == "lxc" else "qemu"
            for night in range(1, args.backups + 1):
                lab.seed_backup(storage, guest["vmid"], kind, today - dt.timedelta(days=night))
    if args.guests:
        lab.add_declared_guests()
    if args.upgrades:
        # What pve-daily-update found: a kernel among the upgrades, so a reboot is due.
        lab.set_upgrades(DEMO_UPGRADES, cached=True)
    if args.windows_agent:
        # Windows VMs (102) answer `update windows`'s scripts once they run:
        # two updates waiting, one needing a reboot, nobody playing.
        lab.windows_agent_default = True
    token = secrets.token_hex(16)
    lab.apitokens[TOKEN_ID] = token
    await lab.start(certfile, keyfile)
    env = lab_env(lab.url, TOKEN_ID, token, ca_file)
    text = exports(env)
    env_file = directory / "env.sh"
    # The token is a secret: the file is for this user only.
    with os.fdopen(os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(text)
    # root@pam's password login, for what no API token may do (raw hostpci, affinity):
    # sourcing it replaces the token with the login.
    root = {
        "NIXMOX_PVE_URL": lab.url,
        "NIXMOX_PVE_USER": str(lab.user),
        "NIXMOX_PVE_PASSWORD": str(lab.password),
        "NIXMOX_PVE_CA_FILE": ca_file,
    }
    root_file = directory / "root-env.sh"
    with os.fdopen(os.open(root_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write("unset NIXMOX_PVE_TOKEN_ID NIXMOX_PVE_TOKEN\n" + exports(root))
    sys.stdout.write(text + READY_LINE + "\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await settle()
    await lab.stop()
    print("# lab stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", type=_loopback, default="127.0.0.2", help="loopback address")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    parser.add_argument(
        "--dir", help="where the certificate and env.sh go (default: a new temp dir)"
    )
    parser.add_argument("--guests", action="store_true", help="add guests 100-102 as provisioned")
    parser.add_argument(
        "--windows-agent",
        action="store_true",
        help="Windows VMs answer with the scripted Windows guest agent (update windows)",
    )
    parser.add_argument(
        "--upgrades",
        action="store_true",
        help="the nodes have package upgrades waiting (a kernel among them)",
    )
    parser.add_argument(
        "--backups",
        type=int,
        default=0,
        metavar="NIGHTS",
        help="seed nightly vzdump archives of the inventory's guests",
    )
    parser.add_argument("--inventory", help="inventory TOML (default: examples/homelab.toml)")
    parser.add_argument(
        "--time-scale", type=float, default=0.0, help="real seconds per PVE second (default 0)"
    )
    args = parser.parse_args(argv)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
