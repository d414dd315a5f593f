"""Where each key of a TOML document stands, so errors can name FILE:LINE:COL.

``tomllib`` parses values but forgets positions. This scanner walks the same
text (already known to be valid TOML, because ``tomllib`` read it first) and
records, for every key path, the line and column of the key or table header
that defines it. Paths are tuples of keys and list indices, the shape pydantic
uses for error locations: ``("guests", 2, "disks", 0, "size")``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

Path = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]")


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in the inventory file."""

    line: int
    column: int


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.positions: dict[Path, Position] = {}
        # Arrays of tables seen so far (resolved path -> number of elements).
        self.aot: dict[Path, int] = {}

    # -- low-level -----------------------------------------------------------
    def pos(self, index: int) -> Position:
        line = bisect.bisect_right(self.line_starts, index)
        return Position(line, index - self.line_starts[line - 1] + 1)

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip_inline_space(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    def skip_space_and_comments(self) -> None:
        """Skip white space, newlines and comments (inside arrays)."""
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif c == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.i)
        self.i = len(self.text) if end < 0 else end

    def remember(self, path: Path, index: int) -> None:
        self.positions.setdefault(path, self.pos(index))

    # -- keys and strings ----------------------------------------------------
    def read_string(self) -> str:
        text = self.text
        for quote in ('"""', "'''"):
            if text.startswith(quote, self.i):
                end = self._find_closing(quote, self.i + 3, escapes=quote == '"""')
                # A closing delimiter may be followed by one or two more quotes
                # that belong to the content.
                while text.startswith(quote[0], end + 3):
                    end += 1
                value = text[self.i + 3 : end]
                self.i = end + 3
                return value
        quote = text[self.i]
        end = self._find_closing(quote, self.i + 1, escapes=quote == '"')
        value = text[self.i + 1 : end]
        self.i = end + 1
        return value

    def _find_closing(self, quote: str, start: int, *, escapes: bool) -> int:
        j = start
        while True:
            if escapes and self.text[j] == "\\":
                j += 2
                continue
            if self.text.startswith(quote, j):
                return j
            j += 1

    def read_key(self) -> list[tuple[str, int]]:
        """Read a dotted key; return each part with its start index."""
        parts: list[tuple[str, int]] = []
        while True:
            self.skip_inline_space()
            start = self.i
            if self.peek() in ('"', "'"):
                parts.append((self.read_string(), start))
            else:
                m = _BARE_KEY.match(self.text, self.i)
                if m is None:
                    raise ValueError(f"key expected at {self.pos(self.i)}")
                parts.append((m.group(0), start))
                self.i = m.end()
            self.skip_inline_space()
            if self.peek() != ".":
                return parts
            self.i += 1

    # -- values --------------------------------------------------------------
    def read_value(self, path: Path) -> None:
        c = self.peek()
        if c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip_space_and_comments()
                if self.peek() == "]":
                    self.i += 1
                    return
                self.remember((*path, index), self.i)
                self.read_value((*path, index))
                index += 1
                self.skip_space_and_comments()
                if self.peek() == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip_inline_space()
                if self.peek() == "}":
                    self.i += 1
                    return
                self.read_keyvalue(path)
                self.skip_inline_space()
                if self.peek() == ",":
                    self.i += 1
        elif c in ('"', "'"):
            self.read_string()
        else:
            m = _SCALAR_END.search(self.text, self.i)
            self.i = len(self.text) if m is None else m.start()

    def read_keyvalue(self, table: Path) -> None:
        parts = self.read_key()
        path = table
        for name, start in parts:
            path = (*path, name)
            self.remember(path, start)
        self.skip_inline_space()
        self.i += 1  # the "="
        self.skip_inline_space()
        self.read_value(path)

    # -- tables --------------------------------------------------------------
    def resolve(self, names: list[str], start: int) -> Path:
        """Turn header keys into a concrete path, entering the newest element
        of every array of tables on the way. Tables a header creates
        implicitly (``a`` for ``[a.b]``) are placed at that header."""
        path: Path = ()
        for name in names:
            path = (*path, name)
            if path in self.aot:
                path = (*path, self.aot[path] - 1)
            self.remember(path, start)
        return path

    def read_header(self) -> Path:
        start = self.i
        array = self.text.startswith("[[", self.i)
        self.i += 2 if array else 1
        parts = self.read_key()
        names = [name for name, _ in parts]
        if array:
            parent = self.resolve(names[:-1], start)
            base = (*parent, names[-1])
            count = self.aot.get(base, 0)
            self.aot[base] = count + 1
            self.remember(base, start)
            table = (*base, count)
        else:
            table = self.resolve(names, start)
        self.positions[table] = self.pos(start)
        self.i = self.text.find("]", self.i) + (2 if array else 1)
        return table

    def scan(self) -> dict[Path, Position]:
        table: Path = ()
        while True:
            self.skip_space_and_comments()
            if self.i >= len(self.text):
                return self.positions
            if self.peek() == "[":
                table = self.read_header()
            else:
                self.read_keyvalue(table)


def locate_keys(text: str) -> dict[Path, Position]:
    """Map every key path of a valid TOML document to where it is defined."""
    return _Scanner(text).scan()


def render_path(path: Path) -> str:
    """``("guests", 2, "vmid")`` -> ``guests[2].vmid``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def nearest(positions: dict[Path, Position], path: Path) -> Position:
    """The position of ``path``, or of its closest ancestor that has one."""
    for end in range(len(path), 0, -1):
        found = positions.get(path[:end])
        if found is not None:
            return found
    return Position(1, 1)
