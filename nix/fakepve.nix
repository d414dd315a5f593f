# fakepve, the simulated Proxmox VE API the tests run against. AGPL-3.0 and
# test-only: it is never a dependency of the nixmox package.
{ lib, buildPythonPackage, fetchPypi, aiohttp, cryptography, pytest }:

buildPythonPackage rec {
  pname = "fakepve";
  version = "0.5.0"; # the pin of pyproject.toml's dev extra (tests use private hooks)
  format = "wheel";

  src = fetchPypi {
    inherit pname version;
    format = "wheel";
    dist = "py3";
    python = "py3";
    hash = "sha256-QRogzp5oXFaKgw8oXgz/9TltxbwRIYwJDxfRxSUVxTU=";
  };

  dependencies = [ aiohttp cryptography pytest ];
  # Its metadata pins aiohttp and cryptography newer than some nixpkgs
  # releases carry; the APIs it uses are older than those pins.
  dontCheckRuntimeDeps = true;
  pythonImportsCheck = [ "fakepve" ];

  meta.license = lib.licenses.agpl3Plus;
}
