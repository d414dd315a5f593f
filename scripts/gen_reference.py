"""Write the generated reference pages in docs/reference/ from the code.

    python scripts/gen_reference.py            # rewrite docs/reference/{inventory,metrics}.md
    python scripts/gen_reference.py --check    # exit 1 when a page is stale

The inventory page comes from the inventory's JSON Schema (what
``nixmox config schema`` prints), the metrics page from
``nixmox.observe.metric_names.METRICS``. Both renderers are pure functions
of that data, so the test can regenerate and compare. It also writes
``src/nixmox/cli/usage.py``: ``nixmox --help`` as typer renders it, which
``nixmox --help`` prints without loading typer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
REGENERATE = "python scripts/gen_reference.py"

Schema = Mapping[str, Any]
_PLURAL = {"string": "strings", "integer": "integers", "boolean": "booleans"}


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def _value(value: object) -> str:
    """A default as it would be written in TOML (JSON spells these the same way)."""
    return "`" + json.dumps(value, ensure_ascii=False).replace("|", "\\|") + "`"


def _ref(schema: Schema) -> str | None:
    ref = schema.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else None


class _Reference:
    """Walks the schema once, depth first in key order, one section per table."""

    def __init__(self, schema: Schema) -> None:
        self.defs: Mapping[str, Schema] = schema.get("$defs", {})
        self.root = schema
        #: definition name -> (anchor, header) of the first section that shows it
        self.shown: dict[str, tuple[str, str]] = {}
        self.sections: list[tuple[str, str, list[str]]] = []

    # -- naming ---------------------------------------------------------------

    @staticmethod
    def anchor(path: tuple[str, ...]) -> str:
        return "-".join(p.replace("NAME", "name") for p in path) or "top-level"

    def link(self, path: tuple[str, ...], array: bool) -> str:
        return f"[`{self.header(path, array)}`](#{self.anchor(path)})"

    @staticmethod
    def header(path: tuple[str, ...], array: bool) -> str:
        if not path:
            return "Top level"
        dotted = ".".join(path)
        return f"[[{dotted}]]" if array else f"[{dotted}]"

    # -- types ------------------------------------------------------------------

    @staticmethod
    def child(schema: Schema) -> tuple[str, str] | None:
        """The tables a property holds, if any: (definition, "table" | "array" | "named")."""
        for option in schema.get("anyOf", [schema]):
            if _ref(option):
                return str(_ref(option)), "table"
            items = option.get("items")
            if option.get("type") == "array" and isinstance(items, Mapping) and _ref(items):
                return str(_ref(items)), "array"
            extra = option.get("additionalProperties")
            if option.get("type") == "object" and isinstance(extra, Mapping) and _ref(extra):
                return str(_ref(extra)), "named"
        return None

    def type_text(self, schema: Schema, path: tuple[str, ...]) -> str:
        options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
        return " or ".join(self._one_type(o, path) for o in options)

    def _one_type(self, schema: Schema, path: tuple[str, ...]) -> str:
        ref = _ref(schema)
        if ref:
            return f"table, see {self.link(path, False)}"
        if "const" in schema:
            return _value(schema["const"])
        if "enum" in schema:
            return " \\| ".join(_value(v) for v in schema["enum"])
        kind = schema.get("type")
        if kind == "array":
            items = schema.get("items", {})
            if _ref(items):
                text = f"array of tables, see {self.link(path, True)}"
            else:
                text = "list of " + _PLURAL.get(str(items.get("type")), self._one_type(items, path))
            low, high = schema.get("minItems"), schema.get("maxItems")
            if low is not None and low == high:
                text += f", exactly {low}"
            elif high is not None:
                text += f", at most {high}"
            elif low:
                text += f", at least {low}"
            return text
        if kind == "object":
            extra = schema.get("additionalProperties")
            if isinstance(extra, Mapping) and _ref(extra):
                return f"tables by name, see {self.link((*path, 'NAME'), False)}"
            inner = self._one_type(extra, path) if isinstance(extra, Mapping) else "value"
            return f"table of {inner}"
        if kind == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is not None and high is not None:
                return f"integer, {low} to {high}"
            if low is not None:
                return f"integer ≥ {low}"
            return "integer"
        return str(kind or "value")

    # -- sections ---------------------------------------------------------------

    def default_text(self, name: str, schema: Schema, required: bool) -> str:
        if required:
            return "required"
        if "default" in schema:
            value = schema["default"]
            return "unset" if value is None else _value(value)
        kinds = {o.get("type") for o in schema.get("anyOf", [schema])}
        if _ref(schema):
            return "its keys' defaults"
        if "array" in kinds:
            return "`[]`"
        if "object" in kinds:
            return "`{}`"
        raise ValueError(f"{name}: no default in the schema and not required")

    def walk(self, definition: str | None, path: tuple[str, ...], array: bool) -> None:
        schema = self.root if definition is None else self.defs[definition]
        anchor, header = self.anchor(path), self.header(path, array)
        lines: list[str] = []
        if definition is not None and definition in self.shown:
            first_anchor, first_header = self.shown[definition]
            lines.append(f"The same keys as [`{first_header}`](#{first_anchor}).")
            self.sections.append((anchor, header, lines))
            return
        if definition is not None:
            self.shown[definition] = (anchor, header)
        if schema.get("description") and definition is not None:
            lines += [" ".join(str(schema["description"]).split()), ""]
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        required = set(schema.get("required", []))
        children: list[tuple[str, tuple[str, ...], bool]] = []
        for key, prop in schema.get("properties", {}).items():
            sub = (*path, key)
            described = _escape(" ".join(str(prop.get("description", "")).split()))
            examples = prop.get("examples")
            if examples:
                described += "; e.g. " + ", ".join(_value(e) for e in examples)
            lines.append(
                f"| `{key}` | {self.type_text(prop, sub)} "
                f"| {self.default_text('.'.join(sub), prop, key in required)} | {described} |"
            )
            child = self.child(prop)
            if child is not None:
                target, shape = child
                children.append(
                    (target, (*sub, "NAME") if shape == "named" else sub, shape == "array")
                )
        self.sections.append((anchor, header, lines))
        for target, sub, is_array in children:
            self.walk(target, sub, is_array)

    def sections_text(self) -> Iterator[str]:
        for anchor, header, lines in self.sections:
            title = header if anchor == "top-level" else f"`{header}`"
            yield f'<a id="{anchor}"></a>\n\n## {title}\n'
            yield "\n".join(lines) + "\n"


def inventory_reference(schema: Schema) -> str:
    """The inventory reference page, in Markdown, from the inventory's JSON Schema."""
    ref = _Reference(schema)
    ref.walk(None, (), False)
    index = ", ".join(f"[`{header}`](#{anchor})" for anchor, header, _ in ref.sections[1:])
    head = [
        "# Inventory reference",
        "",
        f"<!-- Generated by `{REGENERATE}` from `nixmox config schema`; do not edit. -->",
        "",
        "Every key of `nixmox.toml`, table by table. The descriptions come from the inventory",
        "model (`src/nixmox/inventory/model.py`): edit them there and regenerate. Units are in",
        "the descriptions: memory in MiB as in Proxmox, sizes as strings with a K/M/G/T suffix,",
        "time spans as systemd writes them (`90s`, `10min`, `2h`), schedules and windows as",
        "systemd calendar specs (`man systemd.time`). Unknown keys are errors. A default of",
        "*unset* means nixmox leaves that value alone (for a guest: Proxmox keeps its own).",
        "For how the tables fit together see [the inventory guide](../inventory.md).",
        "",
        "Tables: " + index + ".",
        "",
        "",
    ]
    return "\n".join(head) + "\n".join(ref.sections_text())


def metrics_reference(metrics: Mapping[str, tuple[str, tuple[str, ...], str]]) -> str:
    """The metrics reference page, in Markdown, from ``METRICS`` (name -> type, labels, help)."""
    lines = [
        "# Metrics reference",
        "",
        f"<!-- Generated by `{REGENERATE}` from `nixmox.observe.metric_names`; do not edit. -->",
        "",
        "What nixmox writes to `[metrics] textfile` after every journaled run, for",
        "node_exporter's textfile collector. Guest metrics carry `id` (`qemu/101`, `lxc/100`)",
        "to join with prometheus-pve-exporter's `pve_guest_info`, and `name` (the inventory's).",
        "See [status, history, metrics and notifications](../observability.md).",
        "",
        "| metric | type | labels | help |",
        "| --- | --- | --- | --- |",
    ]
    for name, (kind, labels, help_text) in metrics.items():
        shown = ", ".join(f"`{label}`" for label in labels) or "none"
        lines.append(f"| `{name}` | {kind} | {shown} | {_escape(help_text)} |")
    return "\n".join(lines) + "\n"


USAGE = ROOT / "src" / "nixmox" / "cli" / "usage.py"


def usage_module() -> str:
    """``cli/usage.py``: the top-level help as typer renders it on a terminal of 80
    columns or more (click wraps at 78 there, whatever the width)."""
    render = "from nixmox.cli.app import invoke; invoke(['--help'])"
    text = subprocess.run(
        [sys.executable, "-c", render],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT / "src")},
    ).stdout.removesuffix("\n")
    if '"""' in text or "\\" in text:
        raise SystemExit("the help text needs quoting that usage.py does not do")
    return (
        '"""``nixmox --help`` as typer renders it (``cli/main.py`` prints it without\n'
        "loading typer). Written by scripts/gen_reference.py from cli/app.py: do not edit.\n"
        '"""\n\n'
        f'HELP = """\\\n{text}"""\n'
    )


def pages() -> dict[Path, str]:
    """Every generated page with the text it should have."""
    from nixmox.inventory.model import Inventory
    from nixmox.observe.metric_names import METRICS

    # The same call as `nixmox config schema`.
    schema = Inventory.model_json_schema(by_alias=True, mode="validation")
    return {
        REFERENCE / "inventory.md": inventory_reference(schema),
        REFERENCE / "metrics.md": metrics_reference(METRICS),
        USAGE: usage_module(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in pages().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"stale: {names}; run `{REGENERATE}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
