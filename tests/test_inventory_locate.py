"""Key positions in TOML: every located key really stands where we say."""

from __future__ import annotations

import string
import tomllib
from typing import Any

import tomlkit
from hypothesis import given, settings
from hypothesis import strategies as st

from nixmox.inventory.locate import Position, locate_keys, nearest

TRICKY = '''\
# comment with = and [brackets]
title = "a # not a comment"
"quoted key" = 'literal \\ string'
multi = """
line one
[not.a.table]
key = "not a key"
"""
lit = \'\'\'
x = 1
\'\'\'
dotted.inner.leaf = 1
arr = [
  1, # one
  { name = "x", sub = { deep = true } },
  [2, 3],
]
when = 1979-05-27 07:32:00Z

[table]
a = 1

[[guests]]
name = "g0"

[[guests.disks]]
slot = "scsi0"

[[guests.disks]]
slot = "scsi1"

[guests.update]
method = "nixos"

[[guests]]
name = "g1"

[[guests.disks]]
slot = "virtio0"
'''


def at(text: str, pos: Position) -> str:
    line = text.splitlines()[pos.line - 1]
    return line[pos.column - 1 :]


def test_tricky_document_positions() -> None:
    pos = locate_keys(TRICKY)
    assert pos[("title",)] == Position(2, 1)
    assert pos[("quoted key",)] == Position(3, 1)
    assert pos[("lit",)] == Position(9, 1)
    assert at(TRICKY, pos[("dotted", "inner", "leaf")]).startswith("leaf")
    assert at(TRICKY, pos[("arr", 1, "sub", "deep")]).startswith("deep = true")
    assert at(TRICKY, pos[("arr", 2)]).startswith("[2, 3]")
    assert pos[("when",)].line == 18
    # Keys inside multi-line strings are text, not keys.
    assert ("key",) not in pos and ("not", "a", "table") not in pos
    assert at(TRICKY, pos[("guests", 0, "disks", 1, "slot")]) == 'slot = "scsi1"'
    assert at(TRICKY, pos[("guests", 0, "update", "method")]) == 'method = "nixos"'
    assert at(TRICKY, pos[("guests", 1, "disks", 0, "slot")]) == 'slot = "virtio0"'
    assert at(TRICKY, pos[("guests", 1)]) == "[[guests]]"


def test_nearest_falls_back_to_the_enclosing_table() -> None:
    pos = locate_keys(TRICKY)
    assert nearest(pos, ("guests", 1, "vmid")) == pos[("guests", 1)]
    assert nearest(pos, ("nothing",)) == Position(1, 1)


KEYS = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.text(alphabet=string.printable, max_size=20),
)


def documents() -> st.SearchStrategy[dict[str, Any]]:
    leaves = st.dictionaries(KEYS, SCALARS, max_size=4)
    tables = st.dictionaries(KEYS, leaves, max_size=3)
    arrays = st.lists(leaves.filter(bool), min_size=1, max_size=3)
    return st.dictionaries(KEYS, st.one_of(SCALARS, leaves, tables, arrays), max_size=5)


def walk(data: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Any]]:
    found: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append(((*path, key), value))
            found += walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += walk(value, (*path, i))
    return found


@settings(max_examples=200, deadline=None)
@given(documents())
def test_every_key_of_a_generated_document_is_located_at_its_name(doc: dict[str, Any]) -> None:
    text = tomlkit.dumps(doc)
    assert tomllib.loads(text) == doc
    pos = locate_keys(text)
    for path, _ in walk(doc):
        key = path[-1]
        assert isinstance(key, str)
        where = pos[path]
        rest = at(text, where)
        # The key is written bare, quoted, or as the last part of a header.
        assert rest.startswith((key, f'"{key}"', "[")), (path, rest)
