"""`nixmox status` and `nixmox history`."""

from __future__ import annotations

import json
from datetime import tzinfo
from pathlib import Path

from nixmox.adapters.journal import Journal, state_dir
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ConfigError
from nixmox.core.tables import print_table


def history(job: str | None, limit: int, *, as_json: bool, config: Path | None = None) -> int:
    """Print the newest ``limit`` runs (of ``job``), newest first, their times in the
    inventory's zone (this machine's without an inventory)."""
    from nixmox.observe.history import as_json as run_json
    from nixmox.observe.history import table

    if limit < 1:
        raise ConfigError(f"--limit {limit}: must be at least 1")
    journal = Journal(state_dir())
    try:
        runs = journal.runs(job, limit=limit)
    finally:
        journal.close()
    if as_json:
        print(json.dumps([run_json(r) for r in runs], indent=2))
    elif runs:
        print_table(table(runs, _zone(config)))
    else:
        print(f"no runs of {job} in the journal" if job else "no runs in the journal yet")
    return 0


def _zone(config: Path | None) -> tzinfo | None:
    """The inventory's zone; None (this machine's) when there is no inventory to read.

    The journal is worth reading also while the inventory is broken, so only a
    ``--config`` given explicitly must load.
    """
    from nixmox.core.zones import zone
    from nixmox.inventory.load import find_inventory, load_inventory

    try:
        return zone(load_inventory(find_inventory(config)).timezone)
    except ConfigError:
        if config is not None:
            raise
        return None


def status(
    config: Path | None,
    *,
    as_json: bool,
    host_root: Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Print the status report; exit 0 fine, 1 a job's last run failed, 2 doctor FAIL."""
    from nixmox.inventory.load import find_inventory, load_inventory
    from nixmox.observe.status import gather, lines

    inv = load_inventory(find_inventory(config))
    journal = Journal(state_dir())
    try:
        report = gather(inv, journal, host_root=host_root, clock=clock)
    finally:
        journal.close()
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print("\n".join(lines(report)))
    return report.exit_code
