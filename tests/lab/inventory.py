"""Reading the lab's inventory (examples/homelab.toml) as plain data.

The lab reads the TOML itself instead of importing nixmox's config model: the
lab is a peer the product is tested against, so it must not share the
product's understanding (or bugs) of the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = REPO_ROOT / "examples" / "homelab.toml"

Inventory = dict[str, Any]


def load_inventory(path: str | Path | None = None) -> Inventory:
    """The inventory at ``path`` (default: examples/homelab.toml) as a plain dict."""
    with open(path or DEFAULT_INVENTORY, "rb") as fh:
        return tomllib.load(fh)


def size_bytes(text: str | int) -> int:
    """A size string of the inventory ("32G", "512M", "1T") or a byte count, in bytes."""
    if isinstance(text, int):
        return text
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    text = text.strip().upper()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
