"""Reading ``nixmox.toml``: parse, validate, cross-check, and say where it is wrong.

Every problem becomes one :class:`Diagnostic` line,
``FILE:LINE:COL: key.path: message``, and all of them are reported together.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from nixmox.core.errors import ConfigError
from nixmox.inventory.checks import Problem, check
from nixmox.inventory.locate import Path, Position, locate_keys, nearest, render_path
from nixmox.inventory.model import Inventory


@dataclass(frozen=True)
class Diagnostic:
    """One problem in the inventory, with where it is."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class InventoryInvalid(ConfigError):
    """The inventory has problems; ``diagnostics`` lists every one."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


def _syntax_diagnostic(file: str, text: str, exc: tomllib.TOMLDecodeError) -> Diagnostic:
    message = str(exc)
    found = _TOML_POSITION.search(message)
    if found:
        line, column = int(found.group(1)), int(found.group(2))
        message = message[: found.start()]
    else:
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
        message = _TOML_END.sub("", message)
    return Diagnostic(file, line, column, "syntax", f"TOML syntax error: {message}")


def _clean_location(loc: Sequence[str | int], data: Any) -> Path:
    """Drop pydantic's union-branch tags (``int``, ``function-after[...]``)
    from an error location, keeping only real keys and indices."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_table = isinstance(node, Mapping) and part in node
        in_array = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_table or in_array:
            node = node[part]
            path.append(part)
        elif i == len(loc) - 1 and isinstance(node, Mapping):
            path.append(part)  # a missing key: name it
    return tuple(path)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "dict_type"):
        # pydantic names its Python class ("instance of Startup"); the file has tables.
        got = _describe(error.get("input"))
        return f"should be a table ({{ key = value }} or its own [section]), got {got}"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    if kind.endswith("_type") or kind in ("literal_error", "enum"):
        return f"{message[0].lower()}{message[1:]}, got {_describe(error.get('input'))}"
    return f"{message[0].lower()}{message[1:]}"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The inventory tables an annotation can hold: through Optional, unions,
    lists and dict values (``policies: dict[str, KeepOptions]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin in (list, tuple, set, frozenset):
        return [m for a in args for m in _models_in(a)]
    if origin is dict:
        return _models_in(args[1]) if len(args) == 2 else []
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in args for m in _models_in(a)]
    return []


def _known_keys(path: Path) -> set[str]:
    """The keys the table at ``path`` accepts (as written in TOML: aliases)."""
    models: list[type[BaseModel]] = [Inventory]
    for part in path:
        if isinstance(part, int):
            continue
        below: list[type[BaseModel]] = []
        for model in models:
            field = next(
                (f for name, f in model.model_fields.items() if part in (name, f.alias)), None
            )
            # A key that is no field is a dict key (a policy's name): stay on the value type.
            below += _models_in(field.annotation) if field is not None else [model]
        models = below
    return {f.alias or name for model in models for name, f in model.model_fields.items()}


def _unknown_key(path: Path) -> str:
    """ "unknown key", with the closest key the table knows when one is close."""
    if not path or not isinstance(path[-1], str):
        return "unknown key"
    close = difflib.get_close_matches(path[-1], sorted(_known_keys(path[:-1])), n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]}?" if close else "unknown key"


def _pydantic_problems(exc: ValidationError, data: Any) -> list[Problem]:
    merged: dict[Path, list[str]] = {}
    for error in exc.errors():
        path = _clean_location(error["loc"], data)
        message = _unknown_key(path) if error["type"] == "extra_forbidden" else _message(error)
        bucket = merged.setdefault(path, [])
        if message not in bucket:
            bucket.append(message)
    return [Problem(path, " or ".join(messages)) for path, messages in merged.items()]


def _checks_without(data: dict[str, Any], broken: list[Problem]) -> list[Problem]:
    """Cross-check the inventory minus every entry a field error touched.

    A broken ``[[guests]]`` element is left out whole (its references cannot
    be trusted); list indices are mapped back, so each problem keeps the path
    it has in the file.
    """
    drop: dict[str, set[int]] = {}
    keys: set[str] = set()
    for problem in broken:
        path = problem.path
        if len(path) >= 2 and isinstance(path[1], int) and isinstance(path[0], str):
            drop.setdefault(path[0], set()).add(path[1])
        elif path and isinstance(path[0], str):
            keys.add(path[0])
    trimmed: dict[str, Any] = {}
    index_maps: dict[str, list[int]] = {}
    for key, value in data.items():
        if key in keys:
            continue
        if isinstance(value, list) and key in drop:
            kept = [i for i in range(len(value)) if i not in drop[key]]
            index_maps[key] = kept
            trimmed[key] = [value[i] for i in kept]
        else:
            trimmed[key] = value
    try:
        partial = Inventory.model_validate(trimmed)
    except ValidationError:
        return []  # still broken: the field errors say enough for now
    # What the dropped entries were called: a reference to one of them is not
    # "undeclared", it is broken, and its field error already says so.
    gone = {
        f"'{item.get(field)}'"
        for key, indices in drop.items()
        for i in indices
        if isinstance(data.get(key), list) and isinstance(item := data[key][i], dict)
        for field in ("name", "storage", "dataset")
        if item.get(field) is not None
    }
    mapped = []
    for problem in check(partial):
        if any(name in problem.message for name in gone):
            continue
        path = problem.path
        if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], int):
            original = index_maps.get(path[0])
            if original is not None:
                path = (path[0], original[path[1]], *path[2:])
        mapped.append(Problem(path, problem.message))
    return mapped


def parse_inventory(text: str, file: str = "nixmox.toml") -> Inventory:
    """Validate inventory text; raise :class:`InventoryInvalid` with every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryInvalid([_syntax_diagnostic(file, text, exc)]) from None
    positions = locate_keys(text)

    def diagnose(problems: list[Problem]) -> InventoryInvalid:
        diagnostics = []
        for problem in problems:
            pos: Position = nearest(positions, problem.path)
            diagnostics.append(
                Diagnostic(file, pos.line, pos.column, render_path(problem.path), problem.message)
            )
        diagnostics.sort(key=lambda d: (d.line, d.column))
        return InventoryInvalid(diagnostics)

    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems = _pydantic_problems(exc, data)
        # Check references too, on what is left without the broken entries, so one
        # run reports a wrong type and an undeclared bridge together.
        raise diagnose(problems + _checks_without(data, problems)) from None
    problems = check(inventory)
    if problems:
        raise diagnose(problems)
    inventory.remember_source(file, positions)
    return inventory


def load_inventory(path: FsPath) -> Inventory:
    """Read and validate the inventory file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: inventory not found (give --config PATH)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot read the inventory: not UTF-8 text (byte {exc.start})"
        ) from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(f"{path}: cannot read the inventory: {reason}") from None
    return parse_inventory(text, str(path))


DEFAULT_PATHS = (FsPath("/etc/nixmox/nixmox.toml"), FsPath("nixmox.toml"))


def find_inventory(explicit: FsPath | None) -> FsPath:
    """The inventory to use: ``--config``, else /etc/nixmox, else ./nixmox.toml."""
    if explicit is not None:
        return explicit
    for candidate in DEFAULT_PATHS:
        if candidate.exists():
            return candidate
    tried = " or ".join(str(p) for p in DEFAULT_PATHS)
    raise ConfigError(f"no inventory found at {tried} (give --config PATH)")
