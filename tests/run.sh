#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (npm and PyPI packages of
# the official Segment SDKs), then runs every layer: unit and property tests, the golden corpus,
# the bad-input table, the SIGKILL crash test, and the unmodified SDKs against a live gateway.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# Build output and installed tools live outside the clone, so rebuilds stay fast.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/inlet"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$cache"
step() { printf '\n==> %s\n' "$*"; }

step "node dependencies (official @segment/analytics-node)"
if ! command -v npm > /dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
npm ci --prefix tests/sdk --no-audit --no-fund --loglevel=error

step "python dependencies (official segment-analytics-python)"
venv="$cache/venv"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "unit, property, golden, bad-input, crash and HTTP tests"
cargo test --workspace --locked

step "unmodified Segment SDKs against a running gateway"
GATEWAY_BIN="$CARGO_TARGET_DIR/debug/inlet" SDK_PYTHON="$venv/bin/python" bash tests/sdk/run.sh

step "all tests passed"
