#!/usr/bin/env bash
# The batch benchmark: a generated lake (default 10 million events over 30 days, 300k users,
# three sources), then every step over the 30 days, timed per step with peak memory, optionally
# published to PostgreSQL (PG_URL=...).
#   crates/inlet-batch/scripts/bench.sh [DIR] [EVENTS] [DAYS] [USERS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/inlet/target}"
dir="${1:-/tmp/inlet-batch-bench}"
events="${2:-10000000}"
days="${3:-30}"
users="${4:-300000}"
cargo build --release --locked -p inlet-batch --bin inlet-batch --example generate_lake
if [[ ! -d "$dir/events" ]]; then
  "$CARGO_TARGET_DIR/release/examples/generate_lake" "$dir" "$events" "$days" "$users"
fi
echo "lake: $(find "$dir/events" -name '*.parquet' | wc -l) files, $(du -sh "$dir/events" | cut -f1)"
rm -rf "$dir/metrics"
args=(run --lake "$dir" --from 2026-10-01 --to "$(date -d "2026-10-01 + $((days - 1)) days" +%F)" --time-zone Asia/Seoul --lookback 0 --quiet)
if [[ -n "${PG_URL:-}" ]]; then args+=(--postgres "$PG_URL"); fi
/usr/bin/time -f "total: %e s wall, %M KiB peak RSS" "$CARGO_TARGET_DIR/release/inlet-batch" "${args[@]}"
