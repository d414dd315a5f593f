"""Time zones: the inventory's zone, or this machine's, as a DST-aware zone."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nixmox.core.errors import ConfigError


def zone(name: str | None) -> tzinfo:
    """The zone called ``name`` (IANA), or this machine's local zone if ``None``."""
    if name is None:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Vienna)"
        ) from None


def local_zone() -> tzinfo:
    """This machine's zone with its DST rules ($TZ, /etc/localtime, /etc/timezone; else UTC).

    ``datetime.now().astimezone()`` would give a fixed offset, wrong for half
    of the year's days in a zone with DST.
    """
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for name in candidates:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    if localtime.exists():
        try:
            with localtime.open("rb") as data:
                return ZoneInfo.from_file(data, key="localtime")
        except (OSError, ValueError):
            pass
    return UTC
