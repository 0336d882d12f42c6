#!/usr/bin/env bash
# The sample exchange, end to end on the local platform.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
x=.venv/bin/exchange
$x dev up
$x catalog validate
$x catalog apply
$x catalog list
