#!/usr/bin/env bash
# Set up, lint, type-check and run every test (integration tests start the local platform).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The kernel's own tests (the pure Rust parts: per-key state, its store); the Python tests below
# compare the kernel with the Python core.
(cd kernel && cargo fmt --check && cargo test --release --quiet)
# pytest exits 5 when it collected no test: under `set -e` that fails the run, as it should.
.venv/bin/pytest "$@"
