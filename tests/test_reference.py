"""The documentation a user navigates: every inventory key described, the generated
reference pages current, and every link between the pages pointing somewhere."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "scripts/gen_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, property schema) for every property of the document, $defs included."""
    tables = {"(top level)": schema, **{f"$defs.{k}": v for k, v in schema["$defs"].items()}}
    for where, table in tables.items():
        for key, prop in table.get("properties", {}).items():
            yield f"{where}.{key}", prop


def test_every_inventory_key_has_a_description() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nixmox.cli.main", "config", "schema"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    schema = json.loads(out)
    props = list(_properties(schema))
    assert len(props) > 150  # the walk reached the nested tables
    missing = [where for where, prop in props if not prop.get("description", "").strip()]
    assert missing == [], "keys without a description in inventory/model.py: " + ", ".join(missing)
    undocumented = [name for name, d in schema["$defs"].items() if not d.get("description")]
    assert undocumented == [], "tables without a docstring: " + ", ".join(undocumented)


@pytest.mark.parametrize("page", ["inventory.md", "metrics.md"])
def test_generated_reference_is_current(page: str) -> None:
    gen = _generator()
    path = ROOT / "docs/reference" / page
    expected = gen.pages()[path]
    current = path.read_text() if path.exists() else ""
    assert current == expected, (
        f"docs/reference/{page} is stale: run `python scripts/gen_reference.py` and commit it"
    )


def test_reference_shows_every_table_with_type_default_and_units() -> None:
    text = (ROOT / "docs/reference/inventory.md").read_text()
    for header in ("[[guests]]", "[guests.reboot]", "[[guests.net]]", "[snapshots.policies.NAME]"):
        assert f"## `{header}`" in text
    memory = next(line for line in text.splitlines() if line.startswith("| `memory` |"))
    assert memory.startswith("| `memory` | integer ≥ 16 | unset |") and "MiB" in memory
    assert '| `dead_man` | string | `"5min"` |' in text
    assert "| `vmid` | integer, 100 to 999999999 | required |" in text


def test_reference_refuses_a_key_it_cannot_describe() -> None:
    gen = _generator()
    schema = {"properties": {"odd": {"type": "string"}}, "$defs": {}}
    with pytest.raises(ValueError, match="odd: no default"):
        gen.inventory_reference(schema)


_LINK = re.compile(r"\]\(([^)\s]+)\)")


#: Pages the lead writes on another branch; a link to one counts once it exists.
def _pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _anchors(page: Path) -> set[str]:
    text = page.read_text()
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    headings = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        headings.add(slug)
    return explicit | headings


def test_links_between_pages_resolve() -> None:
    broken = []
    for page in _pages():
        for target in _LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:: not checked offline
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and dest.exists() and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such section)")
    assert broken == []
