"""Counted words: singular for one, plural otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.core.words import plural


@pytest.mark.parametrize(
    ("count", "word", "expected"),
    [
        (1, "node", "1 node"),
        (0, "node", "0 nodes"),
        (3, "bridge", "3 bridges"),
        (1, "snapshot policy", "1 snapshot policy"),
        (2, "snapshot policy", "2 snapshot policies"),
        (2, "key", "2 keys"),
        (2, "pass", "2 passes"),
        (2, "box", "2 boxes"),
        (2, "patch", "2 patches"),
        (2, "package", "2 packages"),
        (-1, "change", "-1 changes"),
    ],
)
def test_plural(count: int, word: str, expected: str) -> None:
    assert plural(count, word) == expected


@given(st.integers(-5, 10_000), st.sampled_from(["datum", "guest", "archive"]))
def test_an_irregular_plural_is_given(count: int, word: str) -> None:
    many = {"datum": "data", "guest": "guests", "archive": "archives"}[word]
    assert plural(count, word, many) == f"{count} {word if count == 1 else many}"


def test_no_message_says_s_in_brackets() -> None:
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parent.parent / "src" / "nixmox"
    found = [
        f"{path.relative_to(src)}:{number}"
        for path in src.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        # A count, then a word with "(s)": `{n} upgrade(s)`, `%d warning(s)`.
        if re.search(r"(\d|%d|\}) \w+\(s\)", line)
    ]
    assert found == []  # `1 upgrade(s)`: core.words.plural says it right
