"""Which archive a restore takes (pure): newest, newest at or before a time, or named.

Times are compared as instants, never as wall-clock readings: ``--at
"2026-10-25 02:30"`` is read in the inventory's zone, and on the night the
clocks go back that reading names two instants; the earlier one is taken
(``fold=0``), as Proxmox's own schedules read such a time. A time inside the
gap of a spring-forward night does not exist and is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from nixmox.backup.archives import Archive
from nixmox.core.errors import UsageError


@dataclass(frozen=True)
class Verification:
    """What the newest ``backup verify`` of an archive found."""

    archive: str
    ok: bool
    when: datetime
    restore_seconds: float = 0.0
    boot_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.restore_seconds + self.boot_seconds


@dataclass(frozen=True)
class Candidate:
    """An archive a guest can be restored from, with its last verification (if any)."""

    archive: Archive
    verification: Verification | None = None

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.ok


_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)


def parse_at(text: str, zone: tzinfo) -> datetime:
    """``--at``: an ISO time with an offset, or a wall-clock time read in ``zone``."""
    text = text.strip()
    when = _parse(text)
    if when is None:
        raise UsageError(
            f"--at {text!r}: not a time (use YYYY-MM-DD HH:MM[:SS], optionally with an offset)"
        )
    if when.tzinfo is not None:
        return when
    local = when.replace(tzinfo=zone)
    # A reading that does not survive the round trip through UTC fell into a DST gap.
    back = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != when:
        raise UsageError(f"--at {text!r}: that time does not exist in {zone} (clocks went forward)")
    return local


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def candidates(
    archives: Iterable[Archive], verifications: Mapping[str, Verification]
) -> list[Candidate]:
    """The archives, newest first, each with its newest verification."""
    ordered = sorted(archives, key=lambda a: a.time, reverse=True)
    return [Candidate(a, verifications.get(a.volid)) for a in ordered]


def choose(
    found: Sequence[Candidate],
    *,
    at: datetime | None = None,
    volid: str | None = None,
    verified: bool = False,
) -> Candidate | None:
    """The candidate a restore takes: ``volid`` if given, else the newest (verified
    only, with ``verified``) taken at or before ``at`` (default: any time)."""
    if volid is not None:
        return next((c for c in found if c.archive.volid == volid), None)
    for c in sorted(found, key=lambda c: c.archive.time, reverse=True):
        if at is not None and c.archive.time > at:
            continue
        if verified and not c.verified:
            continue
        return c
    return None


def human_age(age: timedelta) -> str:
    """``timedelta(hours=27)`` -> ``1d 3h``; minutes under an hour, seconds under one."""
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"
