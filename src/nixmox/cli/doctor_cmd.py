"""`nixmox doctor`: run the health checks and print them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from nixmox.doctor.verdict import Check, Status, exit_code, totals
from nixmox.errors import ConfigError, NixmoxError
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Inventory
from nixmox.proxmox.client import Proxmox

#: Every area, in the order they run.
AREAS = ("proxmox", "guests", "host", "passthrough", "storage", "snapshots", "backups")


def run(config: Path | None, only: list[str], host_root: Path, *, as_json: bool) -> int:
    """Run the asked areas (all by default); return the Nagios-style exit code."""
    for area in only:
        if area not in AREAS:
            raise ConfigError(f"--only {area}: unknown area (known: {', '.join(AREAS)})")
    if not host_root.is_dir():
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


def run_areas(inv: Inventory, areas: list[str], host_root: Path) -> list[Check]:
    """The checks of ``areas``; an area that breaks says UNKNOWN, the others still run."""
    from nixmox.doctor.proxmox_area import check_proxmox, check_token_privileges

    proxmox_checks, api = check_proxmox(inv)
    checks: list[Check] = []
    if "proxmox" in areas:
        checks += proxmox_checks
        if api is not None:
            checks += check_token_privileges(inv, api)
    for area in areas:
        if area == "proxmox":
            continue
        try:
            checks += _AREA_RUNNERS[area](inv, api, host_root)
        except NixmoxError as exc:
            checks.append(
                Check(
                    f"{area}-area",
                    Status.UNKNOWN,
                    area,
                    str(exc),
                    f"run `nixmox -vv doctor --only {area}` for details",
                )
            )
    return checks


def _guests(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.proxmox_area import check_guests

    if api is None:
        return [
            Check(
                "guest-exists",
                Status.UNKNOWN,
                "guests",
                "the Proxmox API is not reachable",
                "see the proxmox checks",
            )
        ]
    return check_guests(inv, api)


def _host(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.host_area import check_host

    return check_host(inv, host_root)


def _passthrough(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.passthrough import check_passthrough

    return check_passthrough(inv, host_root, api)


def _storage(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.storage_area import check_storage
    from nixmox.runner import Runner
    from nixmox.zfs import Zfs, Zpool, zpool_command

    runner = Runner()
    zpool = Zpool(runner, zpool_command(inv.zfs.command, inv.zfs.zpool_command))
    return check_storage(inv, Zfs(runner, inv.zfs.command), zpool, api)


def _snapshots(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.storage_area import check_snapshots
    from nixmox.runner import Runner
    from nixmox.zfs import Zfs

    return check_snapshots(inv, Zfs(Runner(), inv.zfs.command), datetime.now(UTC))


def _backups(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.backups_area import check_backups

    return check_backups(inv, api)


_AREA_RUNNERS: dict[str, Callable[[Inventory, Proxmox | None, Path], list[Check]]] = {
    "guests": _guests,
    "host": _host,
    "passthrough": _passthrough,
    "storage": _storage,
    "snapshots": _snapshots,
    "backups": _backups,
}


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
