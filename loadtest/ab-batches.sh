#!/usr/bin/env bash
# A/B of gateway builds under batch bursts, with the lake's catch-up timed: for each round,
# each binary in turn gets a fresh data directory (the previous one deleted first, then `sync`
# and a pause), then BURSTS (2 by default) bursts of batches of 100 events from 32 clients in
# closed loop for SECONDS each, each followed by waiting until the lake is within one range of
# the WAL. One line per burst: events/s acknowledged, CPU, peak RSS, how long the lake took to
# catch up after the load, and events/s from the burst's start until they were in the lake.
#   loadtest/ab-batches.sh SECONDS BIN_A BIN_B ...   (ROUNDS=1 by default; GATEWAY_ENV as bench.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../tests/lib.sh"
seconds="$1"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inlet/target}"
loadtest="${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/inlet-loadtest}"
key="ab-write-key"
# The WAL's durable LSN less the lake's cursor: records acknowledged and not yet in the lake.
metric() { curl -s "$gateway_admin_url/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
for round in $(seq 1 "${ROUNDS:-1}"); do
  for bin in "$@"; do
    # shellcheck disable=SC2086
    start_fresh_gateway "$bin" "$key" ${GATEWAY_ENV:-}
    for burst in $(seq 1 "${BURSTS:-2}"); do
      started=$(date +%s.%N) first="$(metric inlet_wal_durable_lsn)"
      report="$("$loadtest" run --target "$gateway_url" --pid "$gateway_pid" --concurrency 32 --duration "$seconds" \
        --write-key "$key" --mix batch=1)"
      loaded=$(date +%s.%N)
      # Within one range (lake.max_range_records, 250,000) of the WAL: the last range is in flight.
      until [ "$(( $(metric inlet_wal_durable_lsn) - $(metric inlet_lake_cursor_lsn) ))" -lt 250000 ]; do sleep 0.2; done
      caught_up=$(date +%s.%N) last="$(metric inlet_wal_durable_lsn)"
      python3 - "$report" "$round" "$bin" "$burst" "$started" "$loaded" "$caught_up" "$first" "$last" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); t = r["target"] or {}
started, loaded, caught_up, first, last = map(float, sys.argv[5:10])
print(f"round {sys.argv[2]} {sys.argv[3]} burst {sys.argv[4]}: {r['events_per_second']:,.0f} events/s acknowledged, "
      f"answers {r['statuses']}, CPU {t.get('cpu_percent', 0):.0f} %, peak RSS {t.get('peak_rss_mib', 0):.0f} MiB; "
      f"lake caught up {caught_up - loaded:.1f} s after the load: {(last - first) / (caught_up - started):,.0f} events/s "
      f"from the burst's start to the lake")
PY
      sleep 5
    done
    stop_gateway
  done
done
