#!/usr/bin/env bash
# The benchmarks of docs/benchmarks.md, on this machine, load generator included:
#   1. the baseline server (HTTP stack only) and the gateway, closed loop, single events;
#   2. the same for batches of 100 events (plain with 16 and 32 clients, and gzip), then the
#      time the lake takes to catch up: events / (load seconds + catch-up seconds) is the rate
#      the whole pipeline sustains, which a short run above the lake's pace would overstate;
#   3. the gateway in open loop at half its measured single-event maximum (latency);
#   4. 2x overload in open loop, then half rate again (backpressure and recovery);
#   5. verify: every acknowledged event of the gateway runs is in the lake.
# Release builds; the gateway fsyncs before acknowledging (the default). Prints one JSON line
# per run, then a Markdown table. Usage: loadtest/bench.sh [SECONDS_PER_RUN]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
source "$root/tests/lib.sh"
seconds="${1:-20}"
# Exported, so the build goes where the binaries are then taken from.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inlet/target}"
(cd "$root" && cargo build --release --locked -q -p inlet-gateway -p inlet-loadtest)
GATEWAY_BIN="$CARGO_TARGET_DIR/release/inlet"
loadtest="$CARGO_TARGET_DIR/release/inlet-loadtest"
key="loadtest-write-key"
singles="track=6,page=3,identify=1"
# Every run's JSON report; kept when BENCH_RESULTS names a file.
results="${BENCH_RESULTS:-$work/results.jsonl}"
# The gateway's log (with GATEWAY_ENV=INLET_LOG_LEVEL=… for its debug lines) is kept when
# BENCH_GATEWAY_LOG names a file, to line the reports' stalls up with what the gateway did.
gateway_log="${BENCH_GATEWAY_LOG:-}"
run_id="bench$(date +%s)"

measure() { "$loadtest" run --duration "$seconds" --run-id "$run_id" --write-key "$key" "$@" | tee -a "$results"; }

baseline_port="$(free_port)"
"$loadtest" baseline --listen "127.0.0.1:$baseline_port" &
baseline_pid=$!
background_pids+=("$baseline_pid")
wait_for "http://127.0.0.1:$baseline_port/anything"
baseline="http://127.0.0.1:$baseline_port"
measure --label "baseline singles" --target "$baseline" --pid "$baseline_pid" --concurrency 64 --mix "$singles"
measure --label "baseline batch" --target "$baseline" --pid "$baseline_pid" --concurrency 16 --mix batch=1

# GATEWAY_ENV: extra VAR=VALUE settings for the gateway (e.g. _RJEM_MALLOC_CONF=background_thread:false).
# shellcheck disable=SC2086
start_gateway "$work/data" "[{name = \"load\", write_key = \"$key\"}]" ${GATEWAY_ENV:-}
gateway="$gateway_url"
gateway_admin="$gateway_admin_url"
next=0
# lake_catch_up EVENTS SINCE: waits until the lake is within one range of the WAL (the last
# partial range waits for its age limit) and prints the rate of the whole pipeline from SINCE
# (epoch seconds) on: gaps between runs count as time, so it errs low.
lake_catch_up() {
  local caught_up lag
  while :; do
    lag="$(curl -s "$gateway_admin/metrics" | awk '/^inlet_wal_durable_lsn /{d=$2} /^inlet_lake_cursor_lsn /{c=$2} END{print d-c}')"
    [ "$lag" -lt 250000 ] && break
    sleep 0.5
  done
  caught_up="$(date +%s.%N)"
  # Then the system settles before the latency runs: the WAL segments the lake confirmed are
  # deleted (gigabytes after the batch runs) and dirty pages written back, which otherwise
  # stall fsyncs during the next run. The wait is on the segment files, not on
  # inlet_wal_segments: that metric drops when a segment is handed to the reaper, which then
  # frees it 8 MiB at a time for a while longer.
  local tries=0
  while [ "$(find "$work/data/wal" -name '*.wal' | wc -l)" -gt 8 ] && [ $((tries += 1)) -lt 240 ]; do
    sleep 0.5
  done
  sync
  python3 -c 'import json,sys; e,since,now,load_end=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4])
print(json.dumps({"lake_catch_up": {"events": e, "seconds": round(now-since, 1), "after_load_seconds": round(now-load_end, 1), "sustained_events_per_second": round(e/(now-since))}}))' \
    "$1" "$2" "$caught_up" "$load_end" | tee -a "$results"
}
gateway_run() {
  local line
  line="$(measure --target "$gateway" --pid "$gateway_pid" --first-id "$next" --acks "$work/acks-$next" "$@")"
  next="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["next_id"])' "$line")"
  echo "$line" > "$work/last"
  echo "$line"
}
gateway_run --label "gateway singles" --concurrency 64 --mix "$singles"
batches_from="$next"
batches_started="$(date +%s.%N)"
max_rate="$(python3 -c 'import json; print(int(json.load(open("'"$work/last"'"))["requests_per_second"]))')"
gateway_run --label "gateway batch" --concurrency 16 --mix batch=1
gateway_run --label "gateway batch, 32 clients" --concurrency 32 --mix batch=1
gateway_run --label "gateway batch gzip" --concurrency 16 --mix batch=1 --gzip
load_end="$(date +%s.%N)"
lake_catch_up "$(( next - batches_from ))" "$batches_started"
gateway_run --label "gateway singles at half max" --rate "$((max_rate / 2))" --mix "$singles"
gateway_run --label "gateway 2x overload" --rate "$((max_rate * 2))" --max-in-flight 8192 --mix "$singles"
gateway_run --label "gateway after overload (half max)" --rate "$((max_rate / 2))" --mix "$singles"

kill -TERM "$gateway_pid"
wait "$gateway_pid"
[ -z "$gateway_log" ] || cp "$work/data.log" "$gateway_log"
"$loadtest" verify --lake "$work/data/lake" --acks "$work"/acks-* | tee -a "$results"

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n| run | mode | req/s | events/s | p50 ms | p99 ms | p99.9 ms | statuses | target CPU % | target peak RSS MiB | generator CPU % | machine idle / steal % |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if "lake_catch_up" in r:
        c = r["lake_catch_up"]
        print(f"\nlake caught up {c['after_load_seconds']} s after the batch runs: {c['events']:,} events from the first batch to the lake in {c['seconds']} s, {c['sustained_events_per_second']:,} events/s sustained\n")
        continue
    if "label" not in r:
        print(f"\nverify: {r['acknowledged']} acknowledged, {r['in_lake']} in the lake, missing {r['missing']}, duplicated {r['duplicated']}")
        continue
    l, t, g, m = r["latency"], r["target"] or {}, r.get("generator") or {}, r.get("machine") or {}
    mode = f"closed {r['mode']['closed']}" if "closed" in r["mode"] else f"open {r['mode']['open_rate']:.0f}/s"
    statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items()) + (f", errors: {r['transport_errors']}" if r["transport_errors"] else "")
    print(f"| {r['label']} | {mode} | {r['requests_per_second']:,.0f} | {r['events_per_second']:,.0f} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} | {l['p999_ms']:.2f} | {statuses} | "
          f"{t.get('cpu_percent', 0):.0f} | {t.get('peak_rss_mib', 0):.0f} | {g.get('cpu_percent', 0):.0f} | "
          f"{m.get('idle_percent', 0):.0f} / {m.get('steal_percent', 0):.1f} |")
PY
