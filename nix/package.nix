# nixmox built from pyproject.toml; its dependencies by their nixpkgs names.
{ lib, python3Packages }:

let
  pyproject = lib.importTOML ../pyproject.toml;
in
python3Packages.buildPythonApplication {
  pname = "nixmox";
  inherit (pyproject.project) version;
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [ ../pyproject.toml ../README.md ../src ];
  };

  build-system = with python3Packages; [ setuptools wheel ];
  # [project.dependencies] of pyproject.toml, every one: nixpkgs' runtime-deps
  # check fails the build on a missing one (tests/test_nix.py compares them).
  dependencies = with python3Packages; [
    typer pydantic rich proxmoxer requests tomlkit prometheus-client apprise
  ];

  # The suite talks to real peers and to fakepve: it runs in the flake's
  # checks.tests (nix/tests.nix), not in every build of the package.
  doCheck = false;
  pythonImportsCheck = [ "nixmox" "nixmox.cli.app" "nixmox.schedule.units" ];

  meta = {
    inherit (pyproject.project) description;
    license = lib.licenses.mit;
    mainProgram = "nixmox";
    platforms = lib.platforms.linux;
  };
}
