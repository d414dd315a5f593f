"""`nixmox render diagram`: pick the inventory, read the live state if reachable, print."""

from __future__ import annotations

import os
from pathlib import Path

from nixmox.core.errors import ConfigError, UsageError
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.observe import diagrams
from nixmox.observe.live import try_live

#: Another mermaid browser bundle (``mermaid.min.js``) to inline into HTML pages.
MERMAID_JS_ENV = "NIXMOX_MERMAID_JS"

TITLES = {
    "network": "Network topology",
    "storage": "Storage layout",
    "updates": "Update and backup flow",
}


def _script(path: Path | None) -> str:
    """--mermaid-js, else $NIXMOX_MERMAID_JS, else the mermaid packaged with nixmox."""
    chosen = path if path is not None else os.environ.get(MERMAID_JS_ENV) or None
    if chosen is None:
        return diagrams.mermaid_script()
    try:
        return Path(chosen).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"mermaid script {chosen}: {exc.strerror}") from None


def render(
    config: Path | None,
    kind: str,
    fmt: str,
    *,
    live: bool = True,
    mermaid_js: Path | None = None,
) -> int:
    """Print diagram ``kind`` as mermaid text or an HTML page."""
    if kind not in diagrams.KINDS:
        raise UsageError(f"--kind must be one of {', '.join(diagrams.KINDS)}, not {kind!r}")
    if fmt not in ("mermaid", "html"):
        raise UsageError(f"--format must be mermaid or html, not {fmt!r}")
    inv = load_inventory(find_inventory(config))
    facts, reason = try_live(inv) if live else (None, "--no-live given")
    text = diagrams.diagram(kind, inv, facts, reason)
    if fmt == "html":
        text = diagrams.html(text, f"nixmox: {TITLES[kind]}", _script(mermaid_js))
    print(text, end="")
    return 0
