"""A disk's SMART data as plain data, and which disks lie under a pool (pure).

:func:`parse_smart` reads the JSON of ``smartctl --json -a`` (smartmontools
7.0+; fields as in its JSON format version 1) for ATA/SATA disks (the
attribute table) and NVMe drives (the health information log) into one
:class:`DiskHealth`. :func:`pool_disks` finds the whole disks behind a pool's
leaves by their ``/dev/disk/by-id`` names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from nixmox.core import jsonrows

#: ATA attribute ids: reallocated sectors, sectors waiting to be reallocated,
#: sectors that could not be read offline.
REALLOCATED, PENDING, OFFLINE_UNCORRECTABLE = 5, 197, 198
BY_ID = "/dev/disk/by-id"


@dataclass(frozen=True)
class DiskHealth:
    """One disk's SMART health; ``None`` where the disk does not report it."""

    device: str  # the /dev/disk/by-id path it was read through
    model: str = ""
    serial: str = ""
    protocol: str = ""  # ATA | NVMe | SCSI
    passed: bool | None = None  # SMART overall-health self-assessment
    reallocated: int | None = None
    pending: int | None = None
    offline_uncorrectable: int | None = None
    media_errors: int | None = None  # NVMe
    percentage_used: int | None = None  # NVMe endurance used (may pass 100)
    critical_warning: int | None = None  # NVMe bit field; 0 is fine
    temperature: int | None = None  # degrees Celsius
    power_on_hours: int | None = None
    error: str | None = None  # smartctl could not read it

    @property
    def name(self) -> str:
        """The by-id name without its directory (what the metrics label it)."""
        return os.path.basename(self.device)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> DiskHealth:
        return jsonrows.record(cls, row)


#: The counters whose growth between two readings means wear or damage.
GROWING = ("reallocated", "pending", "offline_uncorrectable", "media_errors")


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_smart(doc: Mapping[str, Any], device: str) -> DiskHealth:
    """``smartctl --json -a`` output as :class:`DiskHealth`."""
    dev = doc.get("device") if isinstance(doc.get("device"), Mapping) else {}
    assert isinstance(dev, Mapping)
    status = doc.get("smart_status")
    passed = status.get("passed") if isinstance(status, Mapping) else None
    temperature = doc.get("temperature")
    power = doc.get("power_on_time")
    health = DiskHealth(
        device=device,
        model=str(doc.get("model_name") or doc.get("scsi_model_name") or ""),
        serial=str(doc.get("serial_number") or ""),
        protocol=str(dev.get("protocol") or ""),
        passed=passed if isinstance(passed, bool) else None,
        temperature=_number(temperature.get("current"))
        if isinstance(temperature, Mapping)
        else None,
        power_on_hours=_number(power.get("hours")) if isinstance(power, Mapping) else None,
    )
    nvme = doc.get("nvme_smart_health_information_log")
    if isinstance(nvme, Mapping):
        return _replace(
            health,
            media_errors=_number(nvme.get("media_errors")),
            percentage_used=_number(nvme.get("percentage_used")),
            critical_warning=_number(nvme.get("critical_warning")),
            temperature=health.temperature
            if health.temperature is not None
            else _number(nvme.get("temperature")),
            power_on_hours=health.power_on_hours
            if health.power_on_hours is not None
            else _number(nvme.get("power_on_hours")),
        )
    table = doc.get("ata_smart_attributes")
    attributes: dict[int, int] = {}
    if isinstance(table, Mapping):
        for row in table.get("table") or []:
            if not isinstance(row, Mapping):
                continue
            raw = row.get("raw")
            value = _number(raw.get("value")) if isinstance(raw, Mapping) else None
            ident = _number(row.get("id"))
            if ident is not None and value is not None:
                # The low 16 bits: some drives pack more into the raw value.
                attributes[ident] = value & 0xFFFF if ident in (5, 197, 198) else value
    return _replace(
        health,
        reallocated=attributes.get(REALLOCATED),
        pending=attributes.get(PENDING),
        offline_uncorrectable=attributes.get(OFFLINE_UNCORRECTABLE),
    )


def _replace(health: DiskHealth, **changes: Any) -> DiskHealth:
    data = asdict(health)
    data.update(changes)
    return DiskHealth(**data)


def growth(now: DiskHealth, before: DiskHealth | None) -> dict[str, tuple[int, int]]:
    """Counters that grew since ``before``: name -> (before, now)."""
    if before is None:
        return {}
    grown = {}
    for name in GROWING:
        old, new = getattr(before, name), getattr(now, name)
        if isinstance(old, int) and isinstance(new, int) and new > old:
            grown[name] = (old, new)
    return grown


# -- which disks ---------------------------------------------------------------------

_PARTITION = re.compile(r"-part\d+$")


def whole_disk(name: str) -> str | None:
    """The by-id name of the whole disk behind a leaf zpool printed, if it is one.

    ``ata-WDC_..._WD-WX1-part1`` and ``/dev/disk/by-id/nvme-...-part3`` give the
    disk's by-id name; a file vdev, a ``/dev/sdX`` name or a GUID does not
    (``None``): only by-id names stay the same disk across reboots.
    """
    if name.startswith("/"):
        if os.path.dirname(name) != BY_ID:
            return None
        name = os.path.basename(name)
    if name.isdigit() or "-" not in name:
        return None
    return _PARTITION.sub("", name)


def pool_disks(
    leaves: Iterable[tuple[str, str | None]], exists: Callable[[str], bool] = os.path.exists
) -> list[str]:
    """The ``/dev/disk/by-id`` paths of the disks under a pool's leaves (name, path)."""
    found: list[str] = []
    for name, path in leaves:
        disk = whole_disk(name) or (whole_disk(path) if path else None)
        if disk is None:
            continue
        device = f"{BY_ID}/{disk}"
        if device not in found and exists(device):
            found.append(device)
    return found
