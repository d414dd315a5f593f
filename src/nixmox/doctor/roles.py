"""The least-privilege grant for the inventory's jobs: one place that asks each job.

Every job keeps its own needs next to it (``provision/privileges.py``,
``backup/privileges.py``, ``updates/privileges.py``, ``restore/privileges.py``); this module only
collects them for ``nixmox token`` (the ``pveum`` lines) and doctor's
``token-privileges``, so both say what the preflights check.
"""

from __future__ import annotations

from collections.abc import Iterable

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import read_guests
from nixmox.adapters.proxmox.permissions import Missing, Need, check, granted
from nixmox.backup.privileges import backup_needs, verify_needs, vzdump_prunes
from nixmox.backup.runs import choose_guests
from nixmox.core.errors import ConfigError
from nixmox.inventory.model import Guest, Inventory
from nixmox.provision.actual import read_state
from nixmox.provision.diff import make_plan
from nixmox.provision.privileges import needed
from nixmox.restore.privileges import restore_needs
from nixmox.restore.rebuild import prepare_rebuild
from nixmox.templates.build import images_storage, pick_storage
from nixmox.templates.privileges import vm_template_needs, vztmpl_needs
from nixmox.updates.privileges import cluster_has_peers, host_needs, nixos_needs, windows_needs
from nixmox.windows.privileges import provision_needs

#: The jobs ``nixmox token`` knows, in the order it prints them.
JOBS = (
    "apply",
    "backup",
    "backup-verify",
    "update-host",
    "update-nixos",
    "update-windows",
    "windows-provision",
    "template-upload",
    "restore",
    "rebuild",
)


def _updated_by(inv: Inventory, method: str) -> list[Guest]:
    return [g for g in inv.guests if g.update is not None and g.update.method == method]


def job_needs(inv: Inventory, api: Proxmox, job: str) -> list[Need]:
    """What ``job`` needs for this inventory now (apply: for the plan it would make)."""
    if job == "apply":
        actual = read_state(api, inv)
        return needed(inv, make_plan(inv, actual), actual.clone_sources)
    if job == "backup":
        try:
            settings, guests = choose_guests(inv, [])
        except ConfigError:
            return []
        nodes = sorted({g.node for g in guests})
        keep_all = any(vzdump_prunes(api, n, settings.storage) for n in nodes)
        return backup_needs(settings.storage, guests, keep_all_param=keep_all)
    if job == "backup-verify":
        try:
            settings, guests = choose_guests(inv, [])
        except ConfigError:
            return []
        return verify_needs(settings, guests, inv.storages)
    if job == "windows-provision":
        return [need for g in inv.guests if g.windows is not None for need in provision_needs(g)]
    if job == "template-upload":
        return template_upload_needs(inv)
    if job == "restore":
        return restore_role(inv, api)
    if job == "rebuild":
        # The rebuild this server would get now (on a fresh host: every guest).
        return prepare_rebuild(inv, check=False).needs
    if job == "update-host":
        peers = cluster_has_peers(api)
        return [need for n in inv.nodes for need in host_needs(n, inv.guests, migrate=peers)]
    if job == "update-nixos":
        return [need for g in _updated_by(inv, "nixos") for need in nixos_needs(g)]
    if job == "update-windows":
        return [need for g in _updated_by(inv, "windows") for need in windows_needs(g)]
    raise ConfigError(f"--job {job}: unknown job; one of {', '.join(JOBS)}")


#: What each job of a timer (schedule/units.py, by job name) asks at its preflight;
#: ``snapshot`` runs on the host's ZFS and asks the API nothing.
SCHEDULED = {"backup", "backup-verify", "update-host", "update-nixos", "update-windows"}


def scheduled_jobs(inv: Inventory) -> list[str]:
    """The jobs of :data:`JOBS` the inventory runs on a timer (apply is never one)."""
    from nixmox.schedule.units import scheduled

    names = {job.name for job, _spec in scheduled(inv.schedules)}
    return [job for job in JOBS if job in names and job in SCHEDULED]


def missing_by_job(inv: Inventory, api: Proxmox, jobs: Iterable[str]) -> list[tuple[Missing, str]]:
    """What the token lacks for each of ``jobs``, as those jobs' preflights would say it,
    from one ``/access/permissions``: (the missing privilege, the job)."""
    held = granted(api)
    found: list[tuple[Missing, str]] = []
    for job in jobs:
        found += [(m, job) for m in check(job_needs(inv, api, job), held, api.conn.token_id)]
    return found


def all_needs(inv: Inventory, api: Proxmox, jobs: Iterable[str]) -> list[Need]:
    """The needs of several jobs together."""
    return [need for job in jobs for need in job_needs(inv, api, job)]


def restore_role(inv: Inventory, api: Proxmox) -> list[Need]:
    """``restore`` in place of each backed-up guest: over it where it exists, taken to be
    running (the restore then shuts it down first), else into its free VMID.
    ``--as VMID`` needs its own grant on the new VMID (docs/least-privilege.md)."""
    try:
        settings, guests = choose_guests(inv, [])
    except ConfigError:
        return []
    rows = read_guests(api)
    needs: list[Need] = []
    for guest in guests:
        exists = guest.vmid in rows
        keep_all = exists and vzdump_prunes(api, guest.node, settings.storage)
        needs += restore_needs(
            guest,
            settings,
            guest.vmid,
            exists=exists,
            running=exists,
            keep_all_param=keep_all,
        )
    return needs


def template_upload_needs(inv: Inventory) -> list[Need]:
    """``template upload`` of the templates the inventory uses: each LXC template's
    storage, and the VM template its cloned VMs name by VMID (restored on their node)."""
    needs: list[Need] = []
    for store in sorted({g.template.split(":", 1)[0] for g in inv.guests if g.template}):
        needs += vztmpl_needs(store)
    for guest in inv.guests:
        if not isinstance(guest.clone, int):
            continue
        try:
            backup = pick_storage(inv, "backup", None, guest.node)
            disks = images_storage(inv, guest.node)
        except ConfigError:
            continue
        read = not (backup.type == "dir" and backup.path)
        needs += vm_template_needs(backup.storage, disks.storage, guest.clone, read_storage=read)
    return needs
