"""`nixmox plan`, `nixmox apply` and `nixmox adopt`: parse, call, print."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from nixmox.cli.prompt import confirmer
from nixmox.core.errors import ConfigError
from nixmox.core.words import plural
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import ProxmoxSettings
from nixmox.provision.diff import DISRUPTIVE, Change, ObjectPlan, Plan
from nixmox.provision.run import (
    ApplySummary,
    describe_guests,
    outcome_row,
    prepare_apply,
    read_plan,
)
from nixmox.runtime.run import run_job

SYMBOL = {"create": "+", "update": "~", "none": "=", "error": "!"}
WORD = {"create": "create", "update": "update", "none": "no changes", "error": "error"}


def plan(
    config: Path | None, *, detailed_exitcode: bool, as_json: bool, verbose: bool = False
) -> int:
    """Print the plan; exit 0 (or, with --detailed-exitcode, 0 none / 2 changes), 1 on error."""
    report = read_plan(load_inventory(find_inventory(config)))
    result, missing = report.plan, report.missing
    if as_json:
        doc = result.as_json()
        doc["missing_privileges"] = [m.as_json() for m in missing]
        doc["requests"] = report.requests
        print(json.dumps(doc, indent=2))
    else:
        print_plan(result, verbose=verbose)
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


def _print_objects(title: str, objects: Sequence[ObjectPlan], verbose: bool) -> None:
    """A section of bridges, storages or jobs: one line each, then changed options."""
    shown = [o for o in objects if verbose or o.action != "none"]
    if not shown:
        return
    print(title)
    for o in shown:
        where = f" on {o.node}" if o.node else ""
        if o.problems:
            print(f"  {SYMBOL[o.action]} {o.name}{where}: {WORD[o.action]}")
            for problem in o.problems:
                print(f"      {problem}")
            continue
        error = f": {o.error}" if o.error else ""
        print(f"  {SYMBOL[o.action]} {o.name}{where}: {WORD[o.action]}{error}")
        if o.action == "create":
            _print_attributes(o.options.items())
        if o.action == "update":
            for c in o.changes:
                print(_change_line(c))


def _print_attributes(attributes: Iterable[tuple[str, str]]) -> None:
    """What a create sets, one ``+ key = value`` a line, as Terraform shows it."""
    shown = [(k, v) for k, v in attributes if v != ""]
    width = max((len(k) for k, _ in shown), default=0)
    for key, value in shown:
        print(f"      + {key:<{width}} = {value}")


def print_plan(result: Plan, *, verbose: bool = False) -> None:
    """The plan for a person: grouped by guest, disruptive changes marked with !.

    Unchanged objects only with ``verbose``: at a thousand guests the changes
    would drown in "no changes" lines.
    """
    _print_objects("Storages", result.storages, verbose)
    _print_objects("Bridges", result.bridges, verbose)
    _print_objects("Backup job (Proxmox's scheduler)", result.jobs, verbose)
    guests = [g for g in result.guests if verbose or g.action != "none" or g.released]
    if guests:
        print("Guests")
    for g in guests:
        state = ", running" if g.running else ""
        head = f"  {SYMBOL[g.action]} {g.name} ({g.type} {g.vmid} on {g.node}{state})"
        if g.action == "error" and g.problems:
            print(f"{head}: error")
            for problem in g.problems:
                print(f"      {problem}")
        elif g.action == "error":
            print(f"{head}: {g.error}")
        elif g.action == "create":
            print(f"{head}: create")
            _print_attributes(g.attributes)
        elif g.action == "none":
            print(f"{head}: no changes")
        else:
            print(f"{head}: {plural(len(g.changes), 'change')}")
        for c in g.changes:
            print(_change_line(c))
        for key, value in g.released:
            print(
                f"      {key}: {value}   # unmanaged now: nixmox set it before, the inventory "
                "no longer declares it; it stays as it is"
            )
    for problem in result.problems:
        print(f"! {problem}")
    if result.unmanaged:
        print("Not in the inventory (never touched)")
        for vmid, type_, name, node in result.unmanaged:
            print(f"    {vmid} {name} ({type_} on {node})")
    actions = [p.action for p in result.guests] + [p.action for p in result.bridges]
    actions += [p.action for p in result.storages] + [p.action for p in result.jobs]
    creates, updates = actions.count("create"), actions.count("update")
    disruptive = sum(len(g.disruptive) for g in result.guests)
    if not result.has_changes and not result.errors:
        print("No changes: Proxmox matches the inventory.")
    else:
        print(
            f"Plan: {creates} to create, {updates} to update "
            f"({plural(disruptive, 'disruptive change')}), "
            f"{plural(len(result.errors), 'error')}."
        )
    unchanged = actions.count("none")
    if unchanged and not verbose:
        print(f"{unchanged} unchanged, not listed (nixmox -v plan lists them).")


def apply(
    config: Path | None,
    *,
    yes: bool,
    dry_run: bool,
    as_json: bool,
    host_root: Path = Path("/"),
    verbose: bool = False,
) -> int:
    """Plan, confirm, apply; exit 0 if everything was applied (or held by policy), 1 otherwise."""
    inv = load_inventory(find_inventory(config))
    prepared = prepare_apply(inv, host_root=host_root, dry_run=dry_run)
    result = prepared.plan
    if not as_json:
        print_plan(result, verbose=verbose)
    if prepared.report.missing:
        for m in prepared.report.missing:
            print(f"nixmox: missing privilege: {m}", file=sys.stderr)
        print("nixmox: nothing applied: the token lacks privileges the plan needs", file=sys.stderr)
        return 1
    if result.errors:
        # Half an apply (the bridge made, the guest refused) is worse than none.
        if as_json:
            print(json.dumps({"applied": [], "plan": result.as_json()}, indent=2))
        count = len(result.errors)
        print(
            f"nixmox: nothing applied: the plan has {plural(count, 'error')}; "
            "fix them and run `nixmox plan` again",
            file=sys.stderr,
        )
        return 1
    if not result.has_changes:
        if as_json:
            print(json.dumps({"applied": [], "plan": result.as_json()}, indent=2))
        return 0
    work = prepared.confirmed(confirmer(yes))
    if work is None:
        print("Nothing applied.")
        return 1
    summary = run_job(inv, "apply", work, dry_run=dry_run, claims=prepared.claims)
    if dry_run:
        if as_json:
            print(json.dumps({"dry_run": True, "calls": list(summary.calls)}, indent=2))
        else:
            print("\n--dry-run: the API calls apply would make (none were made):")
            for call in summary.calls:
                print(f"  {call}")
        return 0
    if as_json:
        print(json.dumps({"applied": [outcome_row(o) for o in summary.outcomes]}, indent=2))
    else:
        _print_applied(summary)
    return 1 if summary.failed else 0


def _print_applied(summary: ApplySummary) -> None:
    for node, diff in summary.network_diffs.items():
        print(f"\nNetwork changes staged on {node} (interfaces.new):\n{diff}")
    print("\nApplied")
    for o in summary.outcomes:
        parts = [*o.done, *([o.error] if o.error else [])]
        print(f"  {o.result.upper():<6} {o.kind} {o.name}: {'; '.join(parts) or 'nothing to do'}")
        for held in o.held:
            print(f"         held: {held}")
    outcomes, failed = summary.outcomes, summary.failed
    if summary.converged:
        print(
            f"{summary.converged} of the planned objects were already as planned "
            "(another run made them so while this one waited): not changed again"
        )
    print(
        f"{len(outcomes) - len(failed)} of {plural(len(outcomes), 'object')} done"
        + (f", {len(failed)} failed" if failed else "")
    )


def adopt(config: Path | None, vmids: list[int], *, as_json: bool = False) -> int:
    """Print ``[[guests]]`` TOML (or, with ``as_json``, the same entries as JSON) for
    existing guests; exit 1 if one is not found."""
    from nixmox.provision.adopt import render

    try:
        settings = load_inventory(find_inventory(config)).proxmox
    except ConfigError:
        if config is not None:
            raise
        settings = ProxmoxSettings()  # no inventory yet: the NIXMOX_PVE_* variables alone
    adopted = describe_guests(settings, vmids)
    if as_json:
        print(json.dumps({"guests": adopted.entries, "missing": adopted.missing}, indent=2))
    elif adopted.entries:
        print(render(adopted.entries), end="")
    for vmid in adopted.missing:
        print(f"nixmox: adopt: no guest {vmid} on the cluster", file=sys.stderr)
    return 1 if adopted.missing else 0
