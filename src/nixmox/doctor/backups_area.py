"""Doctor area ``backups``: the newest vzdump archive of each guest vs the schedule.

Archives are read from the backup storage's content listing
(``/nodes/{node}/storage/{storage}/content?content=backup``); their names,
``vzdump-{qemu|lxc}-VMID-YYYY_MM_DD-HH_MM_SS.*``, carry the kind, the guest
and the time in the node's zone. How old the newest may be follows from
``schedules.backup``: more than two of its periods is WARN, four is FAIL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import read_guests
from nixmox.adapters.proxmox.fanout import TOTAL, run_all
from nixmox.backup.archives import Archive, all_archives
from nixmox.core.errors import NixmoxError
from nixmox.core.verdict import Check, Status
from nixmox.core.zones import zone
from nixmox.inventory.model import Guest, Inventory
from nixmox.rules.oncalendar import CalendarError, longest_gap, parse_calendar
from nixmox.snapshot.policy import human

#: Without schedules.backup, a daily backup is assumed.
DEFAULT_PERIOD = timedelta(days=1)


def backup_period(schedule: str | None) -> tuple[timedelta, str]:
    """How often backups run per ``schedules.backup``, and how the doctor knows."""
    if schedule is None:
        return DEFAULT_PERIOD, "no schedules.backup, daily assumed"
    try:
        gap = longest_gap(parse_calendar(schedule))
    except CalendarError:
        gap = None
    if gap is None:
        return DEFAULT_PERIOD, f"schedules.backup {schedule!r} has no period, daily assumed"
    return gap, f"schedule {schedule!r}"


def backup_check(
    guest: Guest,
    archives: Iterable[Archive],
    now: datetime,
    period: timedelta,
    why: str,
    exists: bool,
) -> Check:
    """The verdict for one guest: its newest archive's age against the schedule."""
    subject = f"{guest.name} ({guest.vmid})"
    mine = [a for a in archives if a.vmid == guest.vmid and a.kind == guest.pve_type]
    fix = f"`nixmox backup --guest {guest.name}`; check `nixmox history --job backup`"
    if not mine:
        if not exists:
            return Check(
                "backup-fresh", Status.INFO, subject, "the guest does not exist yet: no backup"
            )
        return Check("backup-fresh", Status.FAIL, subject, "no backup archive", fix)
    newest = max(mine, key=lambda a: a.time)
    age = now - newest.time
    warn, fail = 2 * period, 4 * period
    text = f"newest {newest.volid} is {human(age)} old ({why})"
    if age >= fail:
        return Check("backup-fresh", Status.FAIL, subject, f"{text}; FAIL after {human(fail)}", fix)
    if age >= warn:
        return Check("backup-fresh", Status.WARN, subject, f"{text}; WARN after {human(warn)}", fix)
    return Check("backup-fresh", Status.PASS, subject, text)


def backed_up_guests(inv: Inventory) -> list[Guest]:
    """The guests ``[backups]`` covers: its ``guests`` (all when empty) minus ``exclude``."""
    if inv.backups is None:
        return []
    names = set(inv.backups.guests)
    excluded = set(inv.backups.exclude)
    return [g for g in inv.guests if (not names or g.name in names) and g.name not in excluded]


def check_backups(inv: Inventory, api: Proxmox | None, now: datetime | None = None) -> list[Check]:
    """Each backed-up guest's newest archive on the backup storage vs the schedule."""
    if inv.backups is None:
        return [Check("backup-fresh", Status.INFO, "backups", "no [backups] declared")]
    storage = inv.backups.storage
    if api is None:
        return [
            Check(
                "backup-fresh",
                Status.UNKNOWN,
                storage,
                "the Proxmox API is not reachable",
                "see the proxmox checks",
            )
        ]
    now = now or datetime.now(UTC)
    node_zone = zone(inv.timezone)
    guests = backed_up_guests(inv)
    period, why = backup_period(inv.schedules.backup if inv.schedules else None)
    try:
        existing = set(read_guests(api))
    except NixmoxError:
        existing = {g.vmid for g in guests}  # cannot tell: treat them as existing
    nodes = sorted({g.node for g in guests})
    listed: dict[str, list[Archive] | NixmoxError] = {}

    def list_backups(node: str) -> None:
        path = f"/nodes/{node}/storage/{storage}/content"
        try:
            listed[node] = all_archives(api.get(path, content="backup") or [], node_zone)
        except NixmoxError as exc:
            listed[node] = exc

    run_all(list_backups, nodes, TOTAL)  # a listing per node, all at once
    archives: list[Archive] = []
    out: list[Check] = []
    unlisted: set[str] = set()
    for node in nodes:
        found = listed[node]
        if not isinstance(found, NixmoxError):
            archives += found
            continue
        unlisted.add(node)
        out.append(
            Check(
                "backup-fresh",
                Status.UNKNOWN,
                f"{storage} on {node}",
                str(found),
                f"check that storage {storage} is active on {node} (`pvesm status`)",
            )
        )
    # Each guest's own archives, found once: not the whole listing per guest.
    by_guest: dict[tuple[int, str], list[Archive]] = {}
    for archive in archives:
        by_guest.setdefault((archive.vmid, archive.kind), []).append(archive)
    for guest in (g for g in guests if g.node not in unlisted):
        mine = by_guest.get((guest.vmid, guest.pve_type), [])
        out.append(backup_check(guest, mine, now, period, why, guest.vmid in existing))
    return out
