"""Act as the lab's user would in the Proxmox GUI: ``python -m tests.lab.ctl start VMID``.

Reads the lab's ``NIXMOX_PVE_*`` variables (never a token on the command
line) and starts a VM the way a person would, e.g. the gamer switching the
Windows VM on before the demo's ``update windows --dry-run``, or destroys one
(``destroy VMID``: stopped, then removed with its disks), the accident the
demo's ``restore`` undoes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.ctl")
    parser.add_argument("action", choices=["start", "destroy"])
    parser.add_argument("vmid", type=int)
    parser.add_argument("--node", default="pve1")
    args = parser.parse_args(argv)
    env = os.environ
    base = env["NIXMOX_PVE_URL"].rstrip("/") + "/api2/json"
    session = requests.Session()
    # Per request too: a REQUESTS_CA_BUNDLE in the environment would win over session.verify.
    ca = env["NIXMOX_PVE_CA_FILE"]
    session.headers["Authorization"] = (
        f"PVEAPIToken={env['NIXMOX_PVE_TOKEN_ID']}={env['NIXMOX_PVE_TOKEN']}"
    )
    guest = f"{base}/nodes/{args.node}/qemu/{args.vmid}"

    def finish(upid: str, what: str) -> int:
        task = f"{base}/nodes/{args.node}/tasks/{upid}/status"
        for _ in range(300):
            status = session.get(task, timeout=30, verify=ca).json()["data"]
            if status.get("status") == "stopped":
                ok = status.get("exitstatus") == "OK"
                print(f"VM {args.vmid}: {what if ok else status.get('exitstatus')}")
                return 0 if ok else 1
            time.sleep(0.1)
        print(f"VM {args.vmid}: {what}: did not finish", file=sys.stderr)
        return 1

    if args.action == "start":
        return finish(
            session.post(f"{guest}/status/start", timeout=30, verify=ca).json()["data"], "started"
        )
    state = session.get(f"{guest}/status/current", timeout=30, verify=ca).json()["data"]
    if state.get("status") == "running":
        upid = session.post(f"{guest}/status/stop", timeout=30, verify=ca).json()["data"]
        if finish(upid, "stopped"):
            return 1
    params = {"purge": 1, "destroy-unreferenced-disks": 1}
    upid = session.delete(guest, params=params, timeout=30, verify=ca).json()["data"]
    return finish(upid, "destroyed")


if __name__ == "__main__":
    sys.exit(main())
