#!/usr/bin/env bash
# A/B of gateway builds at one open-loop rate, as docs/bench-log/2026-11-to-12.md's "changes" rows measure
# them: for each round, each binary in turn gets a fresh data directory (the previous one
# deleted first, then `sync` and a pause, so its freed blocks do not slow the next run's
# fsyncs), single events at RATE for SECONDS, and one line: p50/p99/p99.9, answers, CPU, peak
# RSS and the WAL's fdatasyncs over 10 ms.
#   loadtest/ab.sh RATE SECONDS BIN_A BIN_B ...      (ROUNDS=3 by default; GATEWAY_ENV as bench.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../tests/lib.sh"
rate="$1" seconds="$2"
shift 2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inlet/target}"
loadtest="${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/inlet-loadtest}"
key="ab-write-key"
for round in $(seq 1 "${ROUNDS:-3}"); do
  for bin in "$@"; do
    # shellcheck disable=SC2086
    start_fresh_gateway "$bin" "$key" ${GATEWAY_ENV:-}
    report="$("$loadtest" run --target "$gateway_url" --pid "$gateway_pid" --rate "$rate" --duration "$seconds" \
      --write-key "$key" --mix track=6,page=3,identify=1)"
    slow="$(curl -s "$gateway_admin_url/metrics" | awk '/^inlet_wal_fsync_duration_seconds_bucket\{le="0.01"\}/{b=$2} /^inlet_wal_fsync_duration_seconds_count /{c=$2} END{print c-b "/" c}')"
    stop_gateway
    python3 - "$report" "$round" "$bin" "$slow" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); l = r["latency"]; t = r["target"] or {}; m = r.get("machine") or {}
print(f"round {sys.argv[2]} {sys.argv[3]}: {r['requests_per_second']:,.0f} req/s, "
      f"p50 {l['p50_ms']:.2f} p99 {l['p99_ms']:.2f} p99.9 {l['p999_ms']:.2f} ms, answers {r['statuses']}, "
      f"transport errors {r['transport_errors']}, CPU {t.get('cpu_percent', 0):.0f} %, "
      f"peak RSS {t.get('peak_rss_mib', 0):.0f} MiB, fdatasyncs over 10 ms {sys.argv[4]}, "
      f"generator CPU {(r.get('generator') or {}).get('cpu_percent', 0):.0f} %, "
      f"machine idle {m.get('idle_percent', 0):.0f} % steal {m.get('steal_percent', 0):.1f} %")
PY
  done
done
