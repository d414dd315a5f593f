"""Debian's nix 2.8 locks and evaluates flakes offline in an isolated store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.peers.nix import NixError, NixSandbox

pytestmark = pytest.mark.peer


def _flake(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "flake.nix").write_text(text)
    return directory


def _lock(directory: Path) -> dict[str, object]:
    return dict(json.loads((directory / "flake.lock").read_text()))


def test_version_is_2_8_or_newer(nix_sandbox: NixSandbox) -> None:
    assert "nix (Nix) 2." in nix_sandbox.nix("--version").stdout
    assert nix_sandbox.version() >= (2, 8)


def test_lock_with_path_input_offline(nix_sandbox: NixSandbox, tmp_path: Path) -> None:
    dep = _flake(tmp_path / "dep", "{ outputs = { self }: { value = 41; }; }\n")
    top = _flake(
        tmp_path / "top",
        f'{{ inputs.dep.url = "path:{dep}";\n'
        "  outputs = { self, dep }: { answer = dep.value + 1; }; }\n",
    )
    nix_sandbox.nix("flake", "lock", f"path:{top}")
    nodes = _lock(top)["nodes"]
    assert isinstance(nodes, dict)
    assert nodes["dep"]["locked"]["type"] == "path"
    assert nodes["dep"]["locked"]["narHash"].startswith("sha256-")
    evaluated = nix_sandbox.nix("eval", "--json", f"path:{top}#answer").stdout
    assert json.loads(evaluated) == 42


def test_override_input_stubs_github_nixpkgs(nix_sandbox: NixSandbox, tmp_path: Path) -> None:
    stub = nix_sandbox.write_stub_nixpkgs(tmp_path / "stub")
    top = _flake(
        tmp_path / "top",
        '{ inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";\n'
        "  outputs = { self, nixpkgs }: { v = nixpkgs.lib.version; }; }\n",
    )
    # Never lock without the override here: nix would try to reach GitHub,
    # and tests may talk to 127.0.0.1 only.
    override = ["--override-input", "nixpkgs", f"path:{stub}"]
    nix_sandbox.nix("flake", "lock", f"path:{top}", *override)
    nodes = _lock(top)["nodes"]
    assert isinstance(nodes, dict)
    # The lock remembers what the flake asked for, and what it got instead.
    assert nodes["nixpkgs"]["original"]["type"] == "github"
    assert nodes["nixpkgs"]["original"]["repo"] == "nixpkgs"
    assert nodes["nixpkgs"]["locked"]["type"] == "path"
    assert nodes["nixpkgs"]["locked"]["path"] == str(stub)
    evaluated = nix_sandbox.nix("eval", "--json", f"path:{top}#v", *override).stdout
    assert json.loads(evaluated) == "stub"


def test_update_input_relocks_only_when_asked(nix_sandbox: NixSandbox, tmp_path: Path) -> None:
    dep = _flake(tmp_path / "dep", "{ outputs = { self }: { value = 1; }; }\n")
    top = _flake(
        tmp_path / "top",
        f'{{ inputs.dep.url = "path:{dep}";\n  outputs = {{ self, dep }}: {{ }}; }}\n',
    )
    nix_sandbox.nix("flake", "lock", f"path:{top}")
    before = (top / "flake.lock").read_text()

    _flake(dep, "{ outputs = { self }: { value = 2; }; }\n")
    # A plain lock keeps the pinned input even though it changed on disk.
    nix_sandbox.nix("flake", "lock", f"path:{top}")
    assert (top / "flake.lock").read_text() == before

    # nix 2.8 spelling; nix >= 2.19 wants "nix flake update dep" instead.
    nix_sandbox.nix("flake", "lock", f"path:{top}", "--update-input", "dep")
    after = _lock(top)["nodes"]
    assert isinstance(after, dict)
    old = json.loads(before)["nodes"]["dep"]["locked"]["narHash"]
    assert after["dep"]["locked"]["narHash"] != old


def test_instantiate_eval_strict_json(nix_sandbox: NixSandbox, tmp_path: Path) -> None:
    stub = nix_sandbox.write_stub_nixpkgs(tmp_path / "stub")
    expr = tmp_path / "module.nix"
    # Module-shaped file evaluated against the stub lib: checks option names,
    # defaults and conditions, as nixmox's NixOS-side tests do.
    expr.write_text(
        f"let lib = (import {stub}/flake.nix).outputs {{ self = null; }}; in\n"
        "let l = lib.lib; cfg = { enable = true; port = 8006; }; in {\n"
        '  options.nixmox.enable = l.mkEnableOption "nixmox agent";\n'
        "  config = l.mkIf cfg.enable {\n"
        '    ports = [ cfg.port ]; name = l.optionalString true "x";\n'
        "  };\n"
        "}\n"
    )
    out = nix_sandbox.instantiate("--eval", "--strict", "--json", str(expr)).stdout
    value = json.loads(out)
    assert value["options"]["nixmox"]["enable"]["default"] is False
    assert value["config"] == {
        "_type": "if",
        "condition": True,
        "content": {"ports": [8006], "name": "x"},
    }


def test_syntax_error_is_reported(nix_sandbox: NixSandbox, tmp_path: Path) -> None:
    bad = tmp_path / "bad.nix"
    bad.write_text("{ a = 1 }\n")
    with pytest.raises(NixError) as err:
        nix_sandbox.instantiate("--parse", str(bad))
    assert "syntax error" in str(err.value)


def test_sandbox_is_isolated(nix_sandbox: NixSandbox, tmp_path: Path) -> None:
    # Anything fetched lands in the sandbox store, not in /nix/store.
    dep = _flake(tmp_path / "dep", "{ outputs = { self }: { }; }\n")
    path = nix_sandbox.nix("flake", "metadata", "--json", f"path:{dep}").stdout
    store_path = json.loads(path)["path"]
    assert store_path.startswith("/nix/store/")
    assert (nix_sandbox.store / store_path.lstrip("/")).exists()
    assert nix_sandbox.env["HOME"] == str(nix_sandbox.home)
