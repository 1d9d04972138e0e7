#!/usr/bin/env bash
# Delivery throughput from the WAL to each vendor, beside the ingestion rate in the same run.
# For each receiver latency (the vendor's round trip, LATENCIES="0 20 100" ms): the gateway with
# no destination (the anchor), then with one destination at a time (VENDORS="amplitude ga4"),
# each on a fresh data directory, under batches of 100 events from 16 clients in closed loop
# for SECONDS. The local receivers (`inlet-loadtest receivers`) enforce the vendors' contracts
# and count what they take. One line per run: events/s acknowledged; events/s delivered while
# the load ran; how long delivery took to finish after the load stopped (at most DRAIN seconds,
# default 60) and the delivered rate over the whole time.
# GA4 runs with GA4_CONCURRENCY requests in flight (8; its default is 1).
#   loadtest/delivery.sh SECONDS   (GATEWAY_BIN and LOADTEST_BIN: release builds)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../tests/lib.sh"
seconds="$1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inlet/target}"
bin="${GATEWAY_BIN:-$CARGO_TARGET_DIR/release/inlet}"
loadtest="${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/inlet-loadtest}"
key="delivery-write-key"
receivers_addr="127.0.0.1:$(free_port)"
receivers_url="http://$receivers_addr"
counts() { curl -sf "$receivers_url/counts"; }
for latency in ${LATENCIES:-0 20 100}; do
  "$loadtest" receivers --listen "$receivers_addr" --latency-ms "$latency" 2> "$work/receivers.log" &
  receivers_pid=$!
  wait_for "$receivers_url/counts"
  for variant in anchor ${VENDORS:-amplitude ga4}; do
    case "$variant" in
      anchor) destinations="[]" ;;
      amplitude) destinations="[{name = \"amp\", kind = \"amplitude\", api_key = \"bench-amplitude-key\", sources = [\"load\"], endpoint = \"$receivers_url/2/httpapi\"}]" ;;
      ga4) destinations="[{name = \"ga\", kind = \"ga4\", measurement_id = \"G-BENCH\", api_secret = \"bench-ga4-secret\", sources = [\"load\"], endpoint = \"$receivers_url/mp/collect\", delivery = {max_concurrent_requests = ${GA4_CONCURRENCY:-8}}}]" ;;
    esac
    start_fresh_gateway "$bin" "$key" INLET_DESTINATIONS="$destinations"
    before="$(counts)"
    started=$(date +%s.%N)
    report="$("$loadtest" run --target "$gateway_url" --pid "$gateway_pid" --concurrency 16 --duration "$seconds" \
      --write-key "$key" --mix batch=1)"
    at_end="$(counts)"
    ended=$(date +%s.%N)
    drained=""
    if [[ "$variant" != anchor ]]; then
      want=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["acknowledged_events"])' "$report")
      deadline=$(( $(date +%s) + ${DRAIN:-60} ))
      while :; do
        now_counts="$(counts)"
        done_count=$(python3 -c 'import json,sys; b=json.loads(sys.argv[1]); n=json.loads(sys.argv[2]); print(n[sys.argv[3]]-b[sys.argv[3]])' "$before" "$now_counts" "$variant")
        if (( done_count >= want )) || (( $(date +%s) >= deadline )); then break; fi
        sleep 0.5
      done
      drained="$done_count $(date +%s.%N)"
    fi
    python3 - "$report" "$latency" "$variant" "$before" "$at_end" "$started" "$ended" "$drained" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); t = r["target"] or {}
latency, variant = sys.argv[2], sys.argv[3]
line = (f"latency {latency} ms, {variant}: ingestion {r['events_per_second']:,.0f} events/s "
        f"({r['acknowledged_events']:,} acknowledged, answers {r['statuses']}), CPU {t.get('cpu_percent', 0):.0f} %")
if variant != "anchor":
    before, at_end = json.loads(sys.argv[4]), json.loads(sys.argv[5])
    started, ended = float(sys.argv[6]), float(sys.argv[7])
    done, drained_at = sys.argv[8].split()
    during = (at_end[variant] - before[variant]) / r["seconds"]
    total = int(done); whole = float(drained_at) - started
    left = r["acknowledged_events"] - total
    line += (f"; delivered during the load {during:,.0f} events/s ({during / r['events_per_second']:.2f}× ingestion); "
             f"{'all' if left <= 0 else f'{total:,} (not {left:,})'} delivered {float(drained_at) - ended:.1f} s after the load, "
             f"{total / whole:,.0f} events/s over the whole time")
print(line, flush=True)
PY
    stop_gateway
  done
  kill "$receivers_pid"
  wait "$receivers_pid" 2> /dev/null || true
done
