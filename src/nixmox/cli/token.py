"""`nixmox token`: the pveum lines that give an API token exactly what the jobs need."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import grant
from nixmox.adapters.proxmox.settings import connection
from nixmox.doctor.roles import JOBS, job_needs
from nixmox.inventory.load import find_inventory, load_inventory


def token(config: Path | None, *, jobs: list[str], token_id: str | None, as_json: bool) -> int:
    """Print the roles and ACL lines; root-only needs are listed, never granted. Exit 0."""
    inv = load_inventory(find_inventory(config))
    api = Proxmox(connection(inv.proxmox))
    chosen = jobs or list(JOBS)
    needs = [need for job in chosen for need in job_needs(inv, api, job)]
    who = token_id or inv.proxmox.token_id or "nixmox@pve!automation"
    # Role ids follow from their privileges (permissions.role_name): the lines of several
    # jobs, inventories or nixmox versions never give one role id two meanings.
    made = grant(needs)
    # A pool an ACL names must exist first (backups.verify.pool); creating one is the
    # admin's step, like the roles.
    pools = sorted({p.split("/")[2] for p, _ in made.acls if p.startswith("/pool/")})
    lines = [
        f'pveum pool add {shlex.quote(pool)} --comment "nixmox: backup verify scratch guests"'
        for pool in pools
    ]
    lines += made.commands(who)
    if as_json:
        doc = {
            "token": who,
            "jobs": chosen,
            "pools": pools,
            "roles": {name: list(privs) for name, privs in made.roles.items()},
            "acls": [{"path": p, "role": r} for p, r in made.acls],
            "commands": lines,
            "root_only": [n.why for n in made.root_only],
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"# least privilege for {who}: {', '.join(chosen)}")
    for line in lines:
        print(line)
    for need in made.root_only:
        print(f"# needs a root@pam password login, no token can: {need.why}")
    return 0
