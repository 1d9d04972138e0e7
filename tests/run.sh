#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (the official Segment SDKs
# from npm and PyPI, pyarrow, and Garage, a real S3 server, built from crates.io once), then
# runs every layer: unit and property tests, the golden corpus, the bad-input table, the SIGKILL
# crash tests, the lake on S3 under outage and SIGKILL, the unmodified SDKs end to end (the
# server SDKs, and in Debian's Chromium sdk-js and analytics-next), delivery
# to Amplitude and GA4 (contract-enforcing local receivers) across faults and SIGKILL, product
# tables copied from a real PostgreSQL and a real MariaDB (Debian's package), the batch job's
# metrics published to a real PostgreSQL, the Airflow DAG run by real Airflow and the Superset
# bundle imported into real Superset.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# Build output and installed tools live outside the clone, so rebuilds stay fast.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/inlet"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$cache"
step() { printf '\n==> %s\n' "$*"; }
# Runs one `#[ignore]`d integration test target; prints only its summary lines (PATTERN), or its
# whole log when it fails. `--workspace` (not `-p`) so dependency features unify as in the build:
# nothing recompiles.
ignored_test() {
  local target="$1" pattern="$2" log
  log="$(mktemp)"
  if ! cargo test --workspace --locked --test "$target" -- --ignored --nocapture > "$log" 2>&1; then
    cat "$log"
    exit 1
  fi
  grep -E "$pattern" "$log"
  rm -f "$log"
}

step "build tools (make, for jemalloc, the gateway's allocator, built from C sources; openssl, for the privacy test's service account key)"
if ! command -v make > /dev/null; then
  apt-get update -qq && apt-get install -y -qq make
fi
if ! command -v openssl > /dev/null; then
  apt-get update -qq && apt-get install -y -qq openssl
fi

step "node dependencies (official @segment/analytics-node and @segment/analytics-next, playwright-core, sdk-js's build tools)"
if ! command -v npm > /dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
for package in tests/sdk tests/browser sdk-js; do
  npm ci --prefix "$package" --no-audit --no-fund --loglevel=error
done

step "Debian's Chromium (driven headless by playwright-core)"
if ! command -v chromium > /dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
chromium --version 2> /dev/null

step "sdk-js: type check, build (ESM, CJS, script tag, snippet), unit tests, size budget"
npm --prefix sdk-js test

step "python dependencies (official segment-analytics-python, pyarrow, DuckDB)"
venv="$cache/venv"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt \
  -r crates/inlet-batch/scripts/requirements.txt

step "Apache Airflow (its own virtualenv)"
airflow_venv="$cache/airflow"
[[ -x "$airflow_venv/bin/python" ]] || python3 -m venv "$airflow_venv"
"$airflow_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/airflow/requirements.txt

step "Apache Superset (its own virtualenv)"
superset_venv="$cache/superset"
[[ -x "$superset_venv/bin/python" ]] || python3 -m venv "$superset_venv"
"$superset_venv/bin/pip" install --quiet --disable-pip-version-check -r tests/superset/requirements.txt

step "Garage (S3-compatible object store) on loopback"
bash tests/garage/garage.sh install
garage_dir="$(mktemp -d)"
pg_dir="$(mktemp -d)"
cleanup() {
  bash tests/garage/garage.sh stop "$garage_dir"
  bash tests/postgres/postgres.sh stop "$pg_dir/pg"
  bash tests/mariadb/mariadb.sh stop "$pg_dir/mariadb"
  rm -rf "$garage_dir" "$pg_dir"
}
trap cleanup EXIT
bash tests/garage/garage.sh start "$garage_dir"
eval "$(bash tests/garage/garage.sh env "$garage_dir")"

step "PostgreSQL (the stand-in for Redshift) on loopback"
bash tests/postgres/postgres.sh start "$pg_dir/pg"
eval "$(bash tests/postgres/postgres.sh env "$pg_dir/pg")"

step "MariaDB (the MySQL engine of the product-database tests) on loopback"
bash tests/mariadb/mariadb.sh start "$pg_dir/mariadb"
eval "$(bash tests/mariadb/mariadb.sh env "$pg_dir/mariadb")"

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny: licences, bans and sources of every dependency (deny.toml; advisories need a database this machine cannot fetch)"
tools="$cache/tools"
if [[ ! -x "$tools/bin/cargo-deny" ]]; then
  cargo install --quiet --locked --version 0.20.2 --root "$tools" cargo-deny
fi
"$tools/bin/cargo-deny" check licenses bans sources

step "build"
cargo build --workspace --all-targets --locked

step "deploy/redshift: the checked-in DDL is what the binaries print"
INLET_BIN="$CARGO_TARGET_DIR/debug/inlet" INLET_BATCH_BIN="$CARGO_TARGET_DIR/debug/inlet-batch" \
  bash deploy/redshift/generate.sh --check

step "deploy: Kubernetes and compose settings and the example configurations validated by the binaries they configure; alert rules read documented metrics"
"$airflow_venv/bin/python" tests/deploy/check_deploy.py deploy "$CARGO_TARGET_DIR/debug/inlet" "$CARGO_TARGET_DIR/debug/inlet-batch"

step "unit, property, golden, bad-input, crash, HTTP and lake tests"
cargo test --workspace --locked

step "unmodified Segment SDKs → gateway → WAL and lake on S3 (read back with pyarrow)"
export SDK_RESULTS_DIR="$garage_dir/sdk-results"
mkdir -p "$SDK_RESULTS_DIR"
GATEWAY_BIN="$CARGO_TARGET_DIR/debug/inlet" SDK_PYTHON="$venv/bin/python" bash tests/sdk/run.sh

step "real browser: sdk-js and unmodified analytics-next in Chromium → gateway (offline/reload, page hide, Retry-After)"
GATEWAY_BIN="$CARGO_TARGET_DIR/debug/inlet" node --test --test-reporter=spec tests/browser/browser.test.mjs

step "tracking plans and the live debugger: analytics-node → sources in observe, flag and block mode → metrics and lake (pyarrow); the debugger page in Chromium"
GATEWAY_BIN="$CARGO_TARGET_DIR/debug/inlet" SDK_PYTHON="$venv/bin/python" node --test --test-reporter=spec tests/browser/debugger.test.mjs

step "destinations: analytics-node → gateway (SIGKILLed) → Amplitude and GA4 receivers with faults; dead letters; replay"
ignored_test destinations '^(destinations e2e|test result)'

step "lake on S3 (Garage): SDK events read back with arrow-rs; outage, cut multipart upload, SIGKILL mid-flush"
ignored_test garage '^(lake verification|S3 outage|SIGKILL|cut multipart|test result)'

step "chaos under load (small scale): SIGKILL loop, WAL disk budget exhausted, S3 outage; every acknowledged event in the lake"
GARAGE_DIR="$garage_dir" bash loadtest/chaos.sh small

step "batch: hand-computed metrics in PostgreSQL; a lake on S3 (Garage); the DataFusion and warehouse engines give the same tables"
cargo test --workspace --locked --test warehouse_postgres --test invariants --test lake_on_s3 --test engines -- --ignored

step "privacy: a member on two devices deleted everywhere (lake on Garage, dead letters, PostgreSQL, Amplitude), the deletion killed midway and rerun, new events suppressed"
ignored_test privacy '^(test |test result)'

step "product tables: PostgreSQL and MariaDB → lake (every type read back with pyarrow), one snapshot under concurrent writes, incremental days, a run that dies before its commit, a lake on Garage"
PYARROW_PYTHON="$venv/bin/python" ignored_test databases '^(test |test result)'

step "batch: every table equal to DuckDB's reading of the same definitions, run day by day and rebuilt"
bash crates/inlet-batch/scripts/check_against_duckdb.sh "$CARGO_TARGET_DIR/debug" "$venv/bin/python"

step "quickstart: docs/quickstart.md's commands run as written and print what it shows"
python3 tests/quickstart/run_quickstart.py docs/quickstart.md "$CARGO_TARGET_DIR/debug"

step "Airflow: the DAG imports, follows the step order, and \`airflow dags test\` publishes a day to PostgreSQL"
AIRFLOW_VENV="$airflow_venv" GATEWAY_BIN="$CARGO_TARGET_DIR/debug/inlet" BATCH_BIN="$CARGO_TARGET_DIR/debug/inlet-batch" \
  bash tests/airflow/run.sh

step "Superset: the bundle imports into a fresh instance, every chart's query returns rows, the dashboard renders in Chromium"
SUPERSET_VENV="$superset_venv" GATEWAY_BIN="$CARGO_TARGET_DIR/debug/inlet" BATCH_BIN="$CARGO_TARGET_DIR/debug/inlet-batch" \
  bash tests/superset/run.sh

step "all tests passed"
