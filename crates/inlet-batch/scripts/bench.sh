#!/usr/bin/env bash
# The batch benchmark, each figure beside DuckDB computing the same tables from the same lake
# (duckdb_metrics.py), one after the other on the same machine:
#   1. rebuild: every table over the whole lake (inlet-batch --full; DuckDB uncapped and with
#      memory_limit = 1GB);
#   2. daily run: the state built up to the day before, then one new day (--lookback 0); DuckDB
#      recomputing that day from history (the naive anchor).
# A generated lake: 333,333 events a day from 300k users over three sources (default 30 days).
#   crates/inlet-batch/scripts/bench.sh [DIR] [DAYS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
export RUST_LOG="${RUST_LOG:-warn}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/inlet/target}"
dir="${1:-/tmp/inlet-batch-bench}"
days="${2:-30}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/inlet/duckdb"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r crates/inlet-batch/scripts/requirements.txt
cargo build --release --locked -p inlet-batch --bin inlet-batch --example generate_lake
if [[ ! -d "$dir/events" ]]; then
  "$CARGO_TARGET_DIR/release/examples/generate_lake" "$dir" "$((333333 * days))" "$days" 300000
fi
first=2026-10-01
last="$(date -d "$first + $((days - 1)) days" +%F)"
before="$(date -d "$last - 1 day" +%F)"
echo "lake: $days days, $(find "$dir/events" -name '*.parquet' | wc -l) files, $(du -sh "$dir/events" | cut -f1)"
batch=("$CARGO_TARGET_DIR/release/inlet-batch" run --lake "$dir" --time-zone Asia/Seoul --lookback 0 --quiet)
duck=("$venv/bin/python" crates/inlet-batch/scripts/duckdb_metrics.py "$dir" --time-zone Asia/Seoul --threads 2)
timed() { /usr/bin/time -f "$1: %e s wall, %M KiB peak RSS" "${@:2}" > /dev/null; }

rm -rf "$dir/metrics" "$dir/state"
timed "inlet-batch rebuild" "${batch[@]}" --from "$first" --to "$last" --full
timed "DuckDB rebuild" "${duck[@]}" "$first" "$last"
timed "DuckDB rebuild, memory_limit 1GB" "${duck[@]}" "$first" "$last" --memory-limit 1GB

rm -rf "$dir/metrics" "$dir/state"
"${batch[@]}" --from "$first" --to "$before" --full > /dev/null
timed "inlet-batch daily run ($last)" "${batch[@]}" --from "$last" --to "$last"
timed "DuckDB daily run from history ($last)" "${duck[@]}" "$last" "$last"
