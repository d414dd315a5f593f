#!/usr/bin/env bash
# Set up a development environment from a fresh clone: a virtualenv in .venv
# with nixmox (editable) and its dev tools. With --peers, also the Debian
# packages of the real programs the tests run against (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium opens the HTML diagram page headless (tests/test_diagrams.py).
PEERS="zfs-fuse qemu-guest-agent nix-bin openssh-server faketime smartmontools prometheus prometheus-node-exporter chromium"

if [ "${1:-}" = "--peers" ]; then
  missing=""
  for pkg in $PEERS; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
  done
  # Node.js runs mermaid's own parser on the generated diagrams. Asked for by
  # command, not by package: a node from elsewhere (NodeSource, nvm) will do,
  # and Debian's npm conflicts with NodeSource's nodejs.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing="$missing nodejs npm"
  fi
  if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing Debian packages:$missing"
      apt-get update -qq
      # Through apt-install.sh: Prometheus and node_exporter must not start as services.
      bash scripts/apt-install.sh $missing
    else
      echo "==> missing Debian packages:$missing (tests that need them will skip; run as root to install)"
    fi
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.nixmox-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing nixmox and its dev tools into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# mermaid and jsdom (tests/mermaid) for the diagram tests, and tree-sitter's PowerShell
# grammar (tests/pwsh) for the packaged Windows scripts; both pinned by their lock files.
if command -v npm >/dev/null; then
  for dir in tests/mermaid tests/pwsh; do
    lock=$dir/package-lock.json
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$lock" -nt "$dir/node_modules/.package-lock.json" ]; then
      echo "==> installing the test parsers into $dir (npm ci)"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
  done
else
  echo "==> npm not found: the diagram and PowerShell syntax tests will skip (run with --peers as root to install)"
fi
