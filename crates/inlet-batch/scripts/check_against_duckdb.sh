#!/usr/bin/env bash
# Every metrics table of inlet-batch against DuckDB computing the same definitions from the same
# generated lake (duckdb_metrics.py --compare): once run day by day, once rebuilt with --full.
#   crates/inlet-batch/scripts/check_against_duckdb.sh BIN_DIR PYTHON
# BIN_DIR holds inlet-batch and examples/generate_lake; PYTHON has duckdb
# (crates/inlet-batch/scripts/requirements.txt).
set -euo pipefail
export RUST_LOG=warn
bin="$1"
python="$2"
scripts="$(cd "$(dirname "$0")" && pwd)"
lake="$(mktemp -d)"
trap 'rm -rf "$lake"' EXIT
"$bin/examples/generate_lake" "$lake" 60000 6 3000 > /dev/null
batch=("$bin/inlet-batch" run --lake "$lake" --time-zone Asia/Seoul --lookback 0 --quiet)
compare() {
  "$python" "$scripts/duckdb_metrics.py" "$lake" 2026-10-01 2026-10-06 --time-zone Asia/Seoul --threads 2 \
    --compare "$lake/metrics" > "$lake/report.json" || { cat "$lake/report.json"; echo "differences with DuckDB ($1)"; exit 1; }
  "$python" -c "import json,sys; r=json.load(open(sys.argv[1])); print('$1:', r['totals']['sum_dau'], 'DAU summed,', len(r['differences']), 'tables identical to DuckDB')" "$lake/report.json"
}
for day in 01 02 03 04 05 06; do
  "${batch[@]}" --from "2026-10-$day" --to "2026-10-$day" > /dev/null
done
compare "day by day"
"${batch[@]}" --from 2026-10-01 --to 2026-10-06 --full > /dev/null
compare "rebuilt"
