#!/usr/bin/env bash
# The two engines side by side on one generated lake, both ending with every table in the same
# PostgreSQL: the DataFusion engine (computes here, publishes with binary COPY) and the warehouse
# engine (copies the events of the days read into PostgreSQL, then runs every step as SQL there).
#   1. rebuild of every table over the whole lake (--full);
#   2. daily run: the state built up to the day before, then one new day (--lookback 0).
# Then the bytes each read: the lake's column chunks the SQL reads (scan_bytes.py, what Spectrum
# would scan) and the size of PostgreSQL's copy of the events.
# A generated lake: 333,333 events a day from 300k users over three sources (default 30 days).
# PostgreSQL: $PG_TEST_URL, else one started here (tests/postgres/postgres.sh).
#   crates/inlet-batch/scripts/bench_engines.sh [DIR] [DAYS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
export RUST_LOG="${RUST_LOG:-warn}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/inlet/target}"
dir="${1:-/tmp/inlet-batch-bench}"
days="${2:-30}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/inlet/venv"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow
cargo build --release --locked -p inlet-batch --bin inlet-batch --example generate_lake
if [[ ! -d "$dir/events" ]]; then
  "$CARGO_TARGET_DIR/release/examples/generate_lake" "$dir" "$((333333 * days))" "$days" 300000
fi
if [[ -z "${PG_TEST_URL:-}" ]]; then
  pg="$(mktemp -d)"
  bash tests/postgres/postgres.sh start "$pg/pg" > /dev/null
  trap 'bash tests/postgres/postgres.sh stop "$pg/pg" > /dev/null; rm -rf "$pg"' EXIT
  eval "$(bash tests/postgres/postgres.sh env "$pg/pg")"
fi
psql_url() { PGOPTIONS='-c client_min_messages=warning' PGHOST=127.0.0.1 PGPORT="$(sed 's/.*port=\([0-9]*\).*/\1/' <<< "$PG_TEST_URL")" PGUSER=postgres psql -XAtq -d postgres "$@"; }
first=2026-10-01
last="$(date -d "$first + $((days - 1)) days" +%F)"
before="$(date -d "$last - 1 day" +%F)"
echo "lake: $days days, $(find "$dir/events" -name '*.parquet' | wc -l) files, $(du -sh "$dir/events" | cut -f1)"
for engine in datafusion warehouse; do
  cat > "$dir/$engine.toml" <<TOML
lake_url = "$dir"
time_zone = "Asia/Seoul"
lookback_days = 0
engine = "$engine"
[warehouse]
kind = "postgres"
schema = "bench_$engine"
postgres_url = "$PG_TEST_URL"
TOML
done
batch=("$CARGO_TARGET_DIR/release/inlet-batch" run --quiet)
# timed LABEL ENGINE ARGS…: one run, its wall time and the batch process's peak memory.
timed() {
  /usr/bin/time -f "$1: %e s wall, %M KiB peak RSS (inlet-batch)" "${batch[@]}" --config "$dir/$2.toml" "${@:3}" > /dev/null
}
reset() { rm -rf "$dir/metrics" "$dir/state"; psql_url -c "DROP SCHEMA IF EXISTS bench_$1 CASCADE; DROP SCHEMA IF EXISTS bench_$1_state CASCADE"; }

for engine in datafusion warehouse; do
  reset "$engine"
  timed "$engine rebuild ($first..$last)" "$engine" --from "$first" --to "$last" --full
done
psql_url -c "SELECT 'PostgreSQL copy of the events: ' || pg_size_pretty(pg_total_relation_size('bench_warehouse_state.events'))"
for engine in datafusion warehouse; do
  reset "$engine"
  "${batch[@]}" --config "$dir/$engine.toml" --from "$first" --to "$before" --full > /dev/null
  timed "$engine daily run ($last)" "$engine" --from "$last" --to "$last"
done
"$venv/bin/python" crates/inlet-batch/scripts/scan_bytes.py "$dir"
