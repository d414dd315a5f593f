"""Imports only go down the layers: cli -> runtime -> features -> adapters -> inventory
-> rules -> core (docs/ARCHITECTURE.md). Read from the source with ``ast``, so an
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import nixmox

SRC = Path(nixmox.__file__).parent

#: Lowest first; a module may import its own layer and the ones below it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"rules"}),
    frozenset({"inventory"}),
    frozenset({"adapters"}),
    frozenset(
        {
            "backup",
            "snapshot",
            "replicate",
            "provision",
            "updates",
            "windows",
            "doctor",
            "passthrough",
            "pool",
            "observe",
            "schedule",
            "templates",
            "zfs_cache",
        }
    ),
    frozenset({"runtime"}),
    frozenset({"cli"}),
)
#: Importers left out of the check: they sit on top and wire everything together.
UNCHECKED = frozenset({"runtime", "cli"})
#: Known upward imports, each with the reason it is still there.
PENDING: set[tuple[str, str]] = set()


def _rank(package: str) -> int:
    for rank, members in enumerate(LAYERS):
        if package in members:
            return rank
    raise AssertionError(f"nixmox.{package} is in no layer: add it to LAYERS")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every ``nixmox.X`` module ``path`` imports (without the prefix), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nixmox."):
                    yield alias.name.removeprefix("nixmox."), node.lineno
        elif isinstance(node, ast.ImportFrom):
            # nixmox imports absolutely (ruff's TID252 would flag a relative one).
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            if node.module and node.module.startswith("nixmox."):
                yield node.module.removeprefix("nixmox."), node.lineno


def _edges() -> Iterator[tuple[str, str, int]]:
    for path in sorted(SRC.rglob("*.py")):
        importer = _module(path)
        if "." not in importer and importer != "":
            continue  # nixmox/__init__.py and top-level modules: none import anything of ours
        for imported, line in _imports(path):
            yield importer, imported, line


def test_no_import_runs_up_the_layers() -> None:
    upward = []
    for importer, imported, line in _edges():
        top = importer.split(".", 1)[0]
        if top in UNCHECKED or (importer, imported) in PENDING:
            continue
        if _rank(imported.split(".", 1)[0]) > _rank(top):
            upward.append(f"nixmox/{importer.replace('.', '/')}.py:{line} imports {imported}")
    assert upward == []


def test_features_import_each_other_without_cycles() -> None:
    features = LAYERS[4]
    graph: dict[str, set[str]] = {f: set() for f in features}
    for importer, imported, _ in _edges():
        a, b = importer.split(".", 1)[0], imported.split(".", 1)[0]
        if a in features and b in features and a != b:
            graph[a].add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start] - seen:
            seen.add(nxt)
            if nxt == goal or reaches(nxt, goal, seen):
                return True
        return False

    assert sorted(f for f in features if reaches(f, f, set())) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walker finds a function-level import too (so the test above can fail)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from nixmox.provision.diff import Plan\n")
    assert list(_imports(module)) == [("provision.diff", 2)]
