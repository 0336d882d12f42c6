#!/usr/bin/env bash
# Set up, lint, type-check and run every test (integration tests start the local platform).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# pytest exits 5 when it collected no test: under `set -e` that fails the run, as it should.
.venv/bin/pytest "$@"
