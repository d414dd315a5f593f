"""`nixmox backup` and `nixmox backup verify`."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.backup.archives import human_size
from nixmox.backup.job import BackupJob, GuestResult
from nixmox.core.errors import ConfigError
from nixmox.core.tables import print_table
from nixmox.core.zones import zone
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Backups, Guest, Inventory
from nixmox.runtime.run import observed_run


def _setup(config: Path | None, names: list[str]) -> tuple[Inventory, Backups, list[Guest]]:
    inv = load_inventory(find_inventory(config))
    if inv.backups is None:
        raise ConfigError("the inventory has no [backups] section: nothing to back up")
    settings = inv.backups
    known = {g.name: g for g in inv.guests}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--guest {unknown[0]}: no such guest in the inventory")
    if names:
        guests = [known[n] for n in names]
    else:
        chosen = settings.guests or [g.name for g in inv.guests]
        guests = [known[n] for n in chosen if n not in settings.exclude]
    if not guests:
        raise ConfigError("no guest to back up (check [backups] guests and exclude)")
    return inv, settings, guests


def backup(
    config: Path | None, names: list[str], *, dry_run: bool, protected: bool, as_json: bool
) -> int:
    """Back up and prune; exit 0 if every guest succeeded, 1 otherwise."""
    inv, settings, guests = _setup(config, names)
    api = Proxmox(connection(inv.proxmox))
    job = BackupJob(api, settings, zone(inv.timezone), protected=protected, dry_run=dry_run)
    if dry_run:
        results = job.run(guests)
    else:
        with observed_run(inv, "backup") as run:
            results = job.run(guests)
            run.result = "ok" if all(r.ok for r in results) else "failed"
            run.summary = {"guests": [_row(r) for r in results], "requests": api.calls}
    if as_json:
        print(
            json.dumps(
                {"dry_run": dry_run, "guests": [_row(r) for r in results], "requests": api.calls},
                indent=2,
            )
        )
    else:
        _print(results, dry_run)
    return 0 if all(r.ok for r in results) else 1


def _row(r: GuestResult) -> dict[str, object]:
    return {
        "guest": r.name,
        "vmid": r.vmid,
        "result": r.result,
        "message": r.message,
        "archive": r.volid,
        "size": r.size,
        "seconds": round(r.seconds, 1),
        "kept": r.kept,
        "removed": r.removed,
        "errors": r.errors,
    }


def _print(results: list[GuestResult], dry_run: bool) -> None:
    rows = [("guest", "result", "size", "time", "kept", "removed")]
    for r in results:
        state = r.result.upper() if not r.errors else "ok, prune errors"
        rows.append(
            (
                r.name,
                state,
                human_size(r.size) if r.size else "-",
                f"{r.seconds:.0f} s" if r.seconds else "-",
                str(r.kept),
                str(len(r.removed)),
            )
        )
    print_table(rows)
    for r in results:
        if r.message and r.result != "ok":
            print(f"{r.name}: {r.message}")
        for volid in r.removed:
            print(f"{r.name}: {'would remove' if dry_run else 'removed'} {volid}")
        for error in r.errors:
            print(f"{r.name}: {error}")
    failed = [r for r in results if not r.ok]
    verb = "planned" if dry_run else "backed up"
    print(
        f"{len(results) - len(failed)} of {len(results)} guests {verb}"
        + (f", {len(failed)} failed" if failed else "")
    )


def verify(config: Path | None, names: list[str], *, as_json: bool) -> int:
    """Restore-verify each guest's newest archive; exit 1 on any failure."""
    from nixmox.backup.verify import verify_guest

    inv, settings, guests = _setup(config, names)
    api = Proxmox(connection(inv.proxmox))
    tz = zone(inv.timezone)
    with observed_run(inv, "backup verify") as run:
        results = [verify_guest(api, g, settings, tz, inv.storages) for g in guests]
        run.result = "ok" if all(r.ok for r in results) else "failed"
        run.summary = {"guests": [r.__dict__ for r in results]}
    if as_json:
        print(json.dumps({"guests": [r.__dict__ for r in results]}, indent=2))
    else:
        for r in results:
            mark = "OK    " if r.ok else "FAILED"
            print(f"{mark} {r.name}: {r.archive or '-'} -> scratch {r.scratch or '-'}: {r.message}")
    return 0 if all(r.ok for r in results) else 1
