"""`nixmox config check` and `nixmox config schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nixmox.core.words import plural
from nixmox.inventory.load import InventoryInvalid, find_inventory, load_inventory


def check(config: Path | None, *, as_json: bool) -> int:
    """Validate the inventory; print a summary (or every problem) and return the exit code."""
    path = find_inventory(config)
    try:
        inv = load_inventory(path)
    except InventoryInvalid as exc:
        if as_json:
            problems = [
                {
                    "file": d.file,
                    "line": d.line,
                    "column": d.column,
                    "path": d.path,
                    "message": d.message,
                }
                for d in exc.diagnostics
            ]
            print(json.dumps({"valid": False, "problems": problems}, indent=2))
        else:
            for diagnostic in exc.diagnostics:
                print(diagnostic, file=sys.stderr)
            count = len(exc.diagnostics)
            print(f"{path}: {plural(count, 'problem')}", file=sys.stderr)
        return 1
    counts = {
        "nodes": len(inv.nodes),
        "bridges": len(inv.bridges),
        "datasets": len(inv.datasets),
        "storages": len(inv.storages),
        "guests": len(inv.guests),
        "snapshot policies": len(inv.snapshots.policies) if inv.snapshots else 0,
    }
    if as_json:
        print(json.dumps({"valid": True, "file": str(path), "counts": counts}, indent=2))
    else:
        # The JSON keys are plural nouns; the line counts each in its number.
        singular = {"nodes": "node", "bridges": "bridge", "datasets": "dataset"}
        singular |= {"storages": "storage", "guests": "guest"}
        singular["snapshot policies"] = "snapshot policy"
        what = ", ".join(plural(n, singular[k], k) for k, n in counts.items() if n)
        print(f"{path}: valid ({what or 'empty'})")
    return 0


def schema() -> None:
    """Print the inventory's JSON Schema."""
    from nixmox.inventory.model import Inventory

    document = Inventory.model_json_schema(by_alias=True, mode="validation")
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "nixmox inventory (nixmox.toml)"
    print(json.dumps(document, indent=2))
