"""`nixmox plan`, `nixmox apply` and `nixmox adopt`: parse, call, print."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import Missing, missing_privileges
from nixmox.adapters.proxmox.settings import connection
from nixmox.core.errors import NixmoxError
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Guest, Inventory
from nixmox.provision.actual import read_state
from nixmox.provision.diff import DISRUPTIVE, Change, ObjectPlan, Plan, make_plan

SYMBOL = {"create": "+", "update": "~", "none": "=", "error": "!"}
WORD = {"create": "create", "update": "update", "none": "no changes", "error": "error"}


def connect(inv: Inventory) -> Proxmox:
    return Proxmox(connection(inv.proxmox))


def compute(config: Path | None) -> tuple[Inventory, Proxmox, Plan, list[Missing]]:
    inv = load_inventory(find_inventory(config))
    api = connect(inv)
    state = read_state(api, inv)
    plan = make_plan(inv, state)
    return inv, api, plan, missing_privileges(api, inv, plan)


def plan(config: Path | None, *, detailed_exitcode: bool, as_json: bool) -> int:
    """Print the plan; exit 0 (or, with --detailed-exitcode, 0 none / 2 changes), 1 on error."""
    try:
        _, api, result, missing = compute(config)
    except NixmoxError:
        raise
    if as_json:
        doc = result.as_json()
        doc["missing_privileges"] = [m.as_json() for m in missing]
        doc["requests"] = api.calls
        print(json.dumps(doc, indent=2))
    else:
        print_plan(result)
        for m in missing:
            print(f"! missing privilege: {m}")
    if result.errors or missing:
        return 1
    if detailed_exitcode and result.has_changes:
        return 2
    return 0


def _change_line(c: Change) -> str:
    old = "(none)" if c.old is None else c.old
    new = "(removed)" if c.new is None else c.new
    mark = " !" if c.label in DISRUPTIVE else ""
    note = f"  # {c.note}" if c.note else ""
    return f"      {c.key}: {old} -> {new}   [{c.label}]{mark}{note}"


def _print_objects(title: str, objects: Sequence[ObjectPlan]) -> None:
    """A section of bridges, storages or jobs: one line each, then changed options."""
    if not objects:
        return
    print(title)
    for o in objects:
        where = f" on {o.node}" if o.node else ""
        detail = ""
        if o.action == "create" and o.kind == "bridge":
            detail = " (" + ", ".join(f"{k}={v}" for k, v in o.options.items() if v) + ")"
        error = f": {o.error}" if o.error else ""
        print(f"  {SYMBOL[o.action]} {o.name}{where}: {WORD[o.action]}{detail}{error}")
        if o.action == "update":
            for c in o.changes:
                print(_change_line(c))


def print_plan(result: Plan) -> None:
    """The plan for a person: grouped by guest, disruptive changes marked with !."""
    _print_objects("Storages", result.storages)
    _print_objects("Bridges", result.bridges)
    _print_objects("Backup job (Proxmox's scheduler)", result.jobs)
    print("Guests")
    for g in result.guests:
        state = ", running" if g.running else ""
        head = f"  {SYMBOL[g.action]} {g.name} ({g.type} {g.vmid} on {g.node}{state})"
        if g.action == "error":
            print(f"{head}: {g.error}")
        elif g.action == "create":
            print(f"{head}: create")
        elif g.action == "none":
            print(f"{head}: no changes")
        else:
            print(f"{head}: {len(g.changes)} change{'s' if len(g.changes) != 1 else ''}")
        for c in g.changes:
            print(_change_line(c))
    if result.unmanaged:
        print("Not in the inventory (never touched)")
        for vmid, type_, name, node in result.unmanaged:
            print(f"    {vmid} {name} ({type_} on {node})")
    actions = [p.action for p in result.guests] + [p.action for p in result.bridges]
    actions += [p.action for p in result.storages] + [p.action for p in result.jobs]
    creates, updates = actions.count("create"), actions.count("update")
    disruptive = sum(len(g.disruptive) for g in result.guests)
    if not result.has_changes and not result.errors:
        print("No changes: the lab matches the inventory.")
    else:
        print(
            f"Plan: {creates} to create, {updates} to update "
            f"({disruptive} disruptive change{'s' if disruptive != 1 else ''}), "
            f"{len(result.errors)} error{'s' if len(result.errors) != 1 else ''}."
        )


def apply(
    config: Path | None, *, yes: bool, dry_run: bool, as_json: bool, host_root: Path = Path("/")
) -> int:
    """Plan, confirm, apply; exit 0 if everything was applied (or held by policy), 1 otherwise."""
    import sys

    from nixmox.provision.apply import Applier
    from nixmox.runtime.run import observed_run

    inv, api, result, missing = compute(config)
    if not as_json:
        print_plan(result)
    if missing:
        for m in missing:
            print(f"nixmox: missing privilege: {m}", file=sys.stderr)
        print("nixmox: nothing applied: the token lacks privileges the plan needs", file=sys.stderr)
        return 1
    if not result.has_changes:
        if as_json:
            print(json.dumps({"applied": [], "plan": result.as_json()}, indent=2))
        return 1 if result.errors else 0
    if not yes and not dry_run:
        if not sys.stdin.isatty():
            print("nixmox: refusing to apply without --yes (no terminal to ask)", file=sys.stderr)
            return 1
        answer = input("Apply these changes? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("Nothing applied.")
            return 1
    applier = Applier(
        api, inv, dry_run=dry_run, passthrough_blockers=passthrough_blockers(inv, api, host_root)
    )
    if dry_run:
        outcomes = applier.apply(result)
        if as_json:
            print(json.dumps({"dry_run": True, "calls": applier.calls}, indent=2))
        else:
            print("\n--dry-run: the API calls apply would make (none were made):")
            for call in applier.calls:
                print(f"  {call}")
        return 0
    with observed_run(inv, "apply") as run:
        outcomes = applier.apply(result)
        failed = [o for o in outcomes if o.result == "failed"]
        run.result = "failed" if failed else "ok"
        run.summary = {"outcomes": [o.__dict__ for o in outcomes], "requests": api.calls}
    if as_json:
        print(json.dumps({"applied": [o.__dict__ for o in outcomes]}, indent=2))
    else:
        for node, diff in applier.network_diffs.items():
            print(f"\nNetwork changes staged on {node} (interfaces.new):\n{diff}")
        print("\nApplied")
        for o in outcomes:
            detail = "; ".join(o.done) or "-"
            line = f"  {o.result.upper():<6} {o.kind} {o.name}: {detail}"
            if o.error:
                line += f" -- {o.error}"
            print(line)
            for held in o.held:
                print(f"         held: {held}")
        print(
            f"{len(outcomes) - len(failed)} of {len(outcomes)} done"
            + (f", {len(failed)} failed" if failed else "")
        )
    return 1 if failed or result.errors else 0


def passthrough_blockers(
    inv: Inventory, api: Proxmox, host_root: Path
) -> Callable[[Guest], list[str]]:
    """The ids of FAILing passthrough checks that concern a guest: the host's
    own (IOMMU, interrupt remapping, ...) and those of the guest's devices."""
    from nixmox.doctor.passthrough import HOST, check_passthrough
    from nixmox.doctor.verdict import Check, Status

    found: list[list[Check]] = []

    def blockers(guest: Guest) -> list[str]:
        own = f"{guest.name} ({guest.vmid})"
        if not found:  # the host's files and PCI listings, read once per apply
            found.append(check_passthrough(inv, host_root, api))
        checks = found[0]
        return sorted(
            {
                c.id
                for c in checks
                if c.status == Status.FAIL and (c.subject == HOST or c.subject.startswith(own))
            }
        )

    return blockers


def adopt(config: Path | None, vmids: list[int]) -> int:
    """Print ``[[guests]]`` TOML for existing guests; exit 1 if one is not found."""
    import sys

    from nixmox.core.errors import ConfigError
    from nixmox.inventory.model import ProxmoxSettings
    from nixmox.provision.actual import read_guest
    from nixmox.provision.adopt import guest_entry, render

    try:
        settings = load_inventory(find_inventory(config)).proxmox
    except ConfigError:
        if config is not None:
            raise
        settings = ProxmoxSettings()  # no inventory yet: the NIXMOX_PVE_* variables alone
    api = Proxmox(connection(settings))
    resources = {
        int(r["vmid"]): r for r in api.get("/cluster/resources", type="vm") or [] if "vmid" in r
    }
    entries = []
    missing = [v for v in vmids if v not in resources]
    for vmid in vmids:
        if vmid in resources:
            resource = resources[vmid]
            entries.append(
                guest_entry(read_guest(api, resource), str(resource.get("name") or vmid))
            )
    if entries:
        print(render(entries), end="")
    for vmid in missing:
        print(f"nixmox: adopt: no guest {vmid} on the cluster", file=sys.stderr)
    return 1 if missing else 0
