"""`nixmox doctor`: run the health checks and print them."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.doctor.proxmox_area import check_guests, check_proxmox
from nixmox.doctor.verdict import Check, Status, exit_code, totals
from nixmox.errors import ConfigError, NotImplementedYet
from nixmox.inventory.load import find_inventory, load_inventory

#: Areas whose checks exist today, in the order they run.
AVAILABLE = ("proxmox", "guests")
#: Areas of the interface contract still to come (issue 8).
LATER = ("passthrough", "storage", "backups", "snapshots", "host")


def run(config: Path | None, only: list[str], host_root: Path, *, as_json: bool) -> int:
    """Run the asked areas; return the Nagios-style exit code."""
    for area in only:
        if area in LATER:
            raise NotImplementedYet(f"doctor --only {area}", 8)
        if area not in AVAILABLE:
            raise ConfigError(
                f"--only {area}: unknown area (known: {', '.join(AVAILABLE + LATER)})"
            )
    if not host_root.is_dir():
        raise ConfigError(f"--host-root {host_root}: not a directory")
    areas = only or list(AVAILABLE)
    inv = load_inventory(find_inventory(config))
    checks: list[Check] = []
    proxmox_checks, api = check_proxmox(inv)
    if "proxmox" in areas:
        checks += proxmox_checks
    if "guests" in areas:
        if api is None:
            checks.append(
                Check(
                    "guest-exists",
                    Status.UNKNOWN,
                    "guests",
                    "the Proxmox API is not reachable",
                    "see the proxmox checks",
                )
            )
        else:
            checks += check_guests(inv, api)
    code = exit_code(checks)
    if as_json:
        summary = {**totals(checks), "exit_code": code, "areas": areas}
        print(json.dumps({"checks": [c.as_json() for c in checks], "summary": summary}, indent=2))
        return code
    _print(checks, areas)
    return code


def _print(checks: list[Check], areas: list[str]) -> None:
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
            f"[{colour[c.status]}]{c.status.value:<7}[/] {c.id:<20} "
            f"{escape(c.subject)}: {escape(c.message)}"
        )
        if c.status not in (Status.PASS, Status.INFO) and c.fix:
            console.print(f"        fix: {escape(c.fix)}")
    counts = totals(checks)
    console.print(", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "no checks ran")
    missing = [a for a in LATER if a not in areas]
    if missing:
        console.print(f"not checked yet (issue 8): {', '.join(missing)}", style="dim")
