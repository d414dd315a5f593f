#!/usr/bin/env bash
# Set everything up, then run the whole suite: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --peers
echo "==> ruff check"
.venv/bin/ruff check src tests bench
echo "==> ruff format --check"
.venv/bin/ruff format --check src tests bench
echo "==> mypy --strict src"
.venv/bin/mypy --strict src
echo "==> pytest"
exec .venv/bin/python -m pytest -q "$@"
