"""Lenient reading of JSON written earlier: journal summaries of any nixmox version.

A journal row outlives the code that wrote it, so a summary is read back
field by field: a missing or mistyped field gets its default, a row that is
not an object is skipped. Nothing here raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


def rows(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The objects listed under ``key`` (anything else there is skipped)."""
    found = data.get(key)
    return [r for r in found if isinstance(r, Mapping)] if isinstance(found, list) else []


def text(data: Mapping[str, Any], key: str, default: str = "") -> str:
    """``data[key]`` as text; ``default`` when missing or null."""
    value = data.get(key)
    return default if value is None else str(value)


def optional_text(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]`` as text, ``None`` when missing, null or empty."""
    value = data.get(key)
    return str(value) if value else None


def texts(data: Mapping[str, Any], key: str) -> list[str]:
    """``data[key]`` as a list of texts; ``[]`` when it is not a list."""
    value = data.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


def integer(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    """``data[key]`` as an int; ``default`` when missing or not a number."""
    value = data.get(key)
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError, OverflowError):
        return default


def optional_integer(data: Mapping[str, Any], key: str) -> int | None:
    """``data[key]`` as an int, ``None`` when missing or not a number."""
    value = data.get(key)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def real(data: Mapping[str, Any], key: str) -> float:
    """``data[key]`` as a float; 0 when missing or not a number."""
    try:
        return float(data.get(key) or 0)
    except (TypeError, ValueError, OverflowError):
        return 0.0


def _optional_real(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) else None


def _flag(data: Mapping[str, Any], key: str) -> bool:
    return bool(data.get(key))


def _optional_flag(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


#: How a field of each type is read (the types journaled summaries use).
_READERS: dict[object, Callable[[Mapping[str, Any], str], Any]] = {
    str: text,
    str | None: optional_text,
    int: integer,
    int | None: optional_integer,
    float: real,
    float | None: _optional_real,
    bool: _flag,
    bool | None: _optional_flag,
    list[str]: texts,
}


def record(cls: type[T], data: Mapping[str, Any], **keys: str) -> T:
    """The dataclass ``cls`` read from ``data`` field by field, each as its type says;
    a field missing (or null) in ``data`` keeps its default. ``keys`` name the fields
    journaled under another key (``volid="archive"``)."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = keys.get(f.name, f.name)
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        if data.get(key) is None and has_default:
            continue
        values[f.name] = _READERS[hints[f.name]](data, key)
    return cls(**values)
