#!/usr/bin/env bash
# Set up a development environment: Java and Maven (for the local platform) and a Python venv
# with the package and its dev extras. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# --test: also what only the tests need (a PostgreSQL server for the SQL connector's tests,
# promtool to check and unit-test the Prometheus alert rules, Chromium and its driver for the
# portal's browser tests).
need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ "${1:-}" = "--test" ]; then
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 \
    || need_apt+=(postgresql)
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
  # A Chinese font, so the pages' screenshots show characters rather than boxes.
  [ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need_apt+=(fonts-wqy-zenhei)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]} (install them, then run this again)" >&2
    exit 1
  fi
fi

# Rust's cargo builds the router's compiled kernel during `pip install` (setuptools-rust).
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "missing: cargo, which builds the router's compiled kernel (install Rust: https://rustup.rs)" >&2
  exit 1
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# The stamp covers the compiled kernel's sources too: a change there needs a rebuild.
stamp=.venv/.installed-$(cat pyproject.toml kernel/Cargo.toml kernel/Cargo.lock kernel/src/*.rs \
  | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
