"""Counted words for the lines a person reads: ``1 node``, ``3 nodes``."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, in the plural unless ``count`` is 1.

    The plural is ``many`` when given, else ``word`` with ``ies`` for a final
    consonant + ``y`` (``policy``), ``es`` after ``s``, ``x``, ``ch``, ``sh``,
    else ``s``. Only the last word changes: ``snapshot policy``.
    """
    if count == 1:
        return f"{count} {word}"
    if many is None:
        if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u", ""):
            many = word[:-1] + "ies"
        elif word.endswith(("s", "x", "ch", "sh")):
            many = word + "es"
        else:
            many = word + "s"
    return f"{count} {many}"
