"""Plain aligned tables for command output (timers and logs read them too)."""

from __future__ import annotations

from collections.abc import Sequence

from nixmox.core.text import printable


def table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the first is the header) as aligned lines; the last column runs free."""
    if not rows:
        return []
    rows = [[printable(c).replace("\n", " ") for c in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]).rstrip()
        for row in rows
    ]


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print :func:`table_lines`."""
    for line in table_lines(rows):
        print(line)
