# checks.tests: the whole test suite against the built package, the way
# scripts/test.sh runs it. Peers missing from the build sandbox (zfs-fuse,
# qemu-ga, sshd, nix, faketime) skip; systemd-analyze is here and runs.
{ lib, runCommand, python3, systemd, nixmox }:

let
  python = python3.withPackages (ps: [
    (ps.toPythonModule nixmox)
    (ps.callPackage ./fakepve.nix { })
    ps.pytest
    ps.hypothesis
    ps.jsonschema
  ]);
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [ ../pyproject.toml ../tests ../examples ];
  };
in
runCommand "nixmox-tests" { nativeBuildInputs = [ python systemd ]; } ''
  cp -r ${src}/. source
  chmod -R u+w source
  cd source
  export HOME=$TMPDIR
  # The tests find the nixmox script next to the interpreter, as in a venv:
  # python3.withPackages links both into one bin/.
  ${python}/bin/python -m pytest -q -p no:cacheprovider tests
  touch $out
''
