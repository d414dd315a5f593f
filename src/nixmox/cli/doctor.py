"""`nixmox doctor`: run the health checks and print them."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.core.errors import ConfigError
from nixmox.core.verdict import Check, Status, exit_code, totals
from nixmox.doctor.areas import AREAS, run_areas
from nixmox.inventory.load import find_inventory, load_inventory


def run(config: Path | None, only: list[str], host_root: Path | None, *, as_json: bool) -> int:
    """Run the asked areas (all by default); return the Nagios-style exit code."""
    for area in only:
        if area not in AREAS:
            raise ConfigError(f"--only {area}: unknown area (known: {', '.join(AREAS)})")
    if host_root is not None and not host_root.is_dir():
        raise ConfigError(f"--host-root {host_root}: not a directory")
    areas = [a for a in AREAS if a in only] if only else list(AREAS)
    inv = load_inventory(find_inventory(config))
    checks = run_areas(inv, areas, host_root)
    code = exit_code(checks)
    if as_json:
        summary = {**totals(checks), "exit_code": code, "areas": areas}
        print(json.dumps({"checks": [c.as_json() for c in checks], "summary": summary}, indent=2))
        return code
    _print(checks)
    return code


def _print(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    colour = {
        Status.PASS: "green",
        Status.INFO: "blue",
        Status.WARN: "yellow",
        Status.FAIL: "red",
        Status.UNKNOWN: "magenta",
    }
    for c in checks:
        console.print(
            f"[{colour[c.status]}]{c.status.value:<7}[/] {c.id:<22} "
            f"{escape(c.subject)}: {escape(c.message)}"
        )
        if c.status is not Status.PASS and c.fix:
            console.print(f"        fix: {escape(c.fix)}")
    counts = totals(checks)
    console.print(", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "no checks ran")
