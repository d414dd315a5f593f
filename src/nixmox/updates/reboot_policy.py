"""May nixmox reboot a node, or stop a guest for it, now? Pure decisions.

A reboot window is a systemd calendar spec read as a set of times: now is
inside when the spec matches now. Time fields that end the spec as single
zeros count as ``*``, so ``Sun 04:00`` (``Sun *-*-* 04:00:00``) is Sunday
04:00-04:59, ``Sat 03..05:00`` is Saturday 03:00-05:59 and ``Sun`` is all
of Sunday; ``Sat 04:30`` is the one minute 04:30. The spec's own time zone
applies when it names one, else the inventory's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from nixmox.calendar import USEC_PER_SEC, CalendarComponent, parse_calendar
from nixmox.inventory.model import Guest, Node

_Chain = tuple[CalendarComponent, ...] | None


@dataclass(frozen=True)
class Verdict:
    """Allowed or not, and why in words."""

    allowed: bool
    reason: str


def _single_zero(chain: _Chain) -> bool:
    return chain is not None and len(chain) == 1 and chain[0] == CalendarComponent(0, None, 0)


def _hits(chain: _Chain, value: int, unit: int = 1) -> bool:
    if chain is None:
        return True
    for c in chain:
        if c.stop is None and not c.repeat:
            if value == c.start:
                return True
            continue
        step = c.repeat or unit
        top = c.stop if c.stop is not None else value
        if c.start <= value <= top and (value - c.start) % step == 0:
            return True
    return False


def _hits_from_end(chain: _Chain, days_left: int) -> bool:
    """``~`` days count from the month's end (``~01`` is the last day); ``~07/1`` runs to it."""
    if chain is None:
        return True
    for c in chain:
        if c.stop is None and not c.repeat:
            if days_left == c.start:
                return True
            continue
        low, high = (c.start, c.stop) if c.stop is not None else (1, c.start)
        low, high = min(low, high), max(low, high)
        if low <= days_left <= high and (c.start - days_left) % (c.repeat or 1) == 0:
            return True
    return False


def _days_in_month(year: int, month: int) -> int:
    nxt = datetime(year + month // 12, month % 12 + 1, 1)
    return (nxt - datetime(year, month, 1)).days


def inside_window(spec: str, now: datetime, zone: tzinfo) -> bool:
    """Whether ``now`` (aware) lies in the window ``spec`` (see the module docstring)."""
    cal = parse_calendar(spec)
    tz: tzinfo = zone if cal.timezone is None else ZoneInfo(cal.timezone)
    t = now.astimezone(tz)
    second, minute, hour = cal.second, cal.minute, cal.hour
    if _single_zero(second):
        second = None
        if _single_zero(minute):
            minute = None
            if _single_zero(hour):
                hour = None
    if cal.weekdays and t.weekday() not in cal.weekdays:
        return False
    if not (_hits(cal.year, t.year) and _hits(cal.month, t.month)):
        return False
    if cal.end_of_month:
        if not _hits_from_end(cal.day, _days_in_month(t.year, t.month) - t.day + 1):
            return False
    elif not _hits(cal.day, t.day):
        return False
    return (
        _hits(hour, t.hour)
        and _hits(minute, t.minute)
        and _hits(second, t.second * USEC_PER_SEC, USEC_PER_SEC)
    )


def node_reboot(node: Node, now: datetime, zone: tzinfo) -> Verdict:
    """May ``update host`` reboot ``node`` now (``reboot`` = never, allowed or window)?"""
    if node.reboot == "allowed":
        return Verdict(True, "reboot = allowed")
    if node.reboot == "window" and node.reboot_window is not None:
        if inside_window(node.reboot_window, now, zone):
            return Verdict(True, f"inside the reboot window {node.reboot_window}")
        return Verdict(False, f"outside the reboot window {node.reboot_window}")
    return Verdict(False, "reboot = never")


def guest_stop(guest: Guest, now: datetime, zone: tzinfo) -> Verdict:
    """May nixmox stop (or restart) the running ``guest`` for a host reboot now?

    ``when-idle`` is not judged here: whether a game or download runs is the
    Windows update's business, so a host reboot never stops such a guest.
    """
    policy = guest.reboot.policy
    if policy == "allowed":
        return Verdict(True, "reboot policy allowed")
    if policy == "window" and guest.reboot.window is not None:
        if inside_window(guest.reboot.window, now, zone):
            return Verdict(True, f"inside its reboot window {guest.reboot.window}")
        return Verdict(False, f"reboot policy: outside its window {guest.reboot.window}")
    if policy == "when-idle":
        return Verdict(False, "reboot policy when-idle (not judged for a host reboot)")
    return Verdict(False, "reboot policy never")
