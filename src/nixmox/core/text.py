"""Text from outside (guests, the API, commands) made safe to print and store.

A guest controls its update titles, script output and error messages; the API
relays task logs. Terminal escape sequences in them could retitle the user's
terminal, hide lines or fake output, and they would reach the journal and the
notifications too. Everything nixmox shows or stores from outside passes
through :func:`printable` first: escape sequences and control characters are
dropped (newlines and tabs kept, where the text may span lines).
"""

from __future__ import annotations

import re
from typing import Any

# ESC-introduced sequences (CSI ... final byte, OSC ... BEL/ST, and two-byte
# escapes), then any other C0/C1 control character but \t and \n.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, screen clearing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]?"  # two-byte escapes (and a lone ESC)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the 8-bit CSI
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences or control characters (``\\n``, ``\\t`` kept)."""
    if text.isprintable():
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\r\n", "\n")))


def printable_data(value: Any) -> Any:
    """:func:`printable` applied to every string inside JSON-like data (keys too)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_data(v) for v in value]
    return value
