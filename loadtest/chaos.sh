#!/usr/bin/env bash
# Chaos under load, each scenario ending with `inlet-loadtest verify`: every event the gateway
# acknowledged must be in the lake (missing = 0).
#   crash   the gateway is SIGKILLed at random moments and restarted while an open-loop load
#           runs; a final SIGTERM flushes.
#   disk    a WAL budget far below the load: the gateway answers 503 storage_full, keeps its
#           WAL intact (it restarts and `wal dump` reads it), and recovers once the lake drains it.
#   s3      the lake's S3 server (Garage) is stopped for a while under load, then restarted.
# Usage: chaos.sh [small|large] [crash disk s3 ...]  (default: small, all three; s3 needs a
# Garage started by tests/garage/garage.sh, named by $GARAGE_DIR with its `env` sourced).
# Binaries: $GATEWAY_BIN and $LOADTEST_BIN (default: the debug builds under $CARGO_TARGET_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../tests/lib.sh"
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/inlet/target}"
GATEWAY_BIN="${GATEWAY_BIN:-$target_dir/debug/inlet}"
loadtest="${LOADTEST_BIN:-$target_dir/debug/inlet-loadtest}"
scale="${1:-small}"
shift || true
scenarios=("${@:-crash disk s3}")
read -r -a scenarios <<< "${scenarios[*]}"
case "$scale" in
  small) rate=150 seconds=12 kills=3 ;;
  large) rate=2000 seconds=120 kills=20 ;;
  *) echo "usage: $0 [small|large] [crash disk s3 ...]" >&2; exit 2 ;;
esac
key="loadtest-write-key"
sources="[{name = \"load\", write_key = \"$key\"}]"

# start_inlet DATA_DIR [VAR=VALUE ...]: the gateway, on the same port across restarts.
start_inlet() {
  local data="$1"
  shift
  start_gateway "$data" "$sources" INLET_LAKE__MAX_AGE_SECS=2 "$@"
  inlet_pid="$gateway_pid"
  url="$gateway_url"
}

# load NAME [ARGS]: open-loop load in the background (ARGS override the defaults),
# acknowledged ids to $work/NAME.acks.
load() {
  local name="$1"; shift
  "$loadtest" run --target "$url" --rate "$rate" --duration "$seconds" --mix track=6,page=3,batch=1 \
    --batch-size 20 --max-in-flight 256 --run-id "$name" --acks "$work/$name.acks" "$@" > "$work/$name.report" &
  load_pid=$!
}

report() {
  local name="$1" lake="$2"; shift 2
  local verdict
  verdict="$("$loadtest" verify --lake "$lake" --acks "$work/$name.acks" "$@")" || {
    echo "chaos $name: acknowledged events missing from the lake: $verdict" >&2
    exit 1
  }
  python3 - "$name" "$work/$name.report" "$verdict" <<'PY'
import json, sys
name, report, verdict = sys.argv[1], json.load(open(sys.argv[2])), json.loads(sys.argv[3])
rejected = {s: n for s, n in report["statuses"].items() if not s.startswith("2")}
print(f"chaos {name}: {report['requests']} requests, {report['acknowledged_events']} events acknowledged, "
      f"rejected by status {rejected or '{}'}, {report['transport_errors']} transport errors; "
      f"lake: {verdict['in_lake']} of {verdict['acknowledged']} acknowledged, missing {verdict['missing']}, "
      f"duplicated {verdict['duplicated']}, stored unacknowledged {verdict['stored_unacknowledged']}")
PY
}

crash() {
  local data="$work/crash"
  # Small segments, so kills also land while segments roll and in preallocated ones; the lake
  # flushes every second, so confirmed segments are recycled as spares while kills land too.
  local segments=(INLET_WAL__SEGMENT_BYTES=1048576 INLET_LAKE__MAX_AGE_SECS=1)
  start_inlet "$data" "${segments[@]}"
  load crash
  for _ in $(seq 1 "$kills"); do
    sleep "$(python3 -c "import random; print(random.uniform(1.0, $seconds / ($kills + 1.0)))")"
    kill -9 "$inlet_pid"
    wait "$inlet_pid" 2> /dev/null || true
    start_inlet "$data" "${segments[@]}"
  done
  wait "$load_pid"
  kill -TERM "$inlet_pid"
  wait "$inlet_pid"
  # The graceful stop flushed everything: the lake is verified as it is, without a restart.
  if grep -q "stay in the WAL only" "$data.log"; then
    echo "chaos crash: the final stop left acknowledged events in the WAL only: $(grep "stay in the WAL only" "$data.log")" >&2
    exit 1
  fi
  report crash "$data/lake"
}

disk() {
  local data="$work/disk"
  # 2 MiB of WAL against several MB/s of batches: the budget runs out within a second.
  local budget=(INLET_WAL__SEGMENT_BYTES=1048576 INLET_WAL__MAX_DISK_BYTES=2097152 INLET_LAKE__MAX_AGE_SECS=1)
  start_inlet "$data" "${budget[@]}"
  load disk --mix batch=1 --batch-size 100 --rate "$((rate / 2))"
  wait "$load_pid"
  grep -q '"503"' "$work/disk.report" || { echo "chaos disk: the budget was never reached: $(cat "$work/disk.report")" >&2; exit 1; }
  # Recovered: accepting again once the lake has drained the WAL.
  wait_for "$url/readyz"
  curl -fsS -u "$key:" "$url/v1/track" -d '{"userId":"after","event":"Recovered","messageId":"disk-after"}' > /dev/null
  kill -TERM "$inlet_pid"
  wait "$inlet_pid"
  # The WAL is intact: it reads from end to end and the gateway starts on it again.
  INLET_DATA_DIR="$data" "$GATEWAY_BIN" wal dump > /dev/null
  start_inlet "$data" "${budget[@]}"
  kill -TERM "$inlet_pid"
  wait "$inlet_pid"
  report disk "$data/lake"
}

s3() {
  local data="$work/s3"
  local lake="s3://$GARAGE_BUCKET/chaos-$(date +%s)"
  start_inlet "$data" INLET_LAKE__URL="$lake" INLET_LAKE__S3_ENDPOINT="$GARAGE_ENDPOINT" INLET_LAKE__S3_FORCE_PATH_STYLE=true
  load s3
  sleep "$((seconds / 4))"
  bash "$here/../tests/garage/garage.sh" stop "$GARAGE_DIR"
  sleep "$((seconds / 3))"
  bash "$here/../tests/garage/garage.sh" restart "$GARAGE_DIR"
  wait "$load_pid"
  kill -TERM "$inlet_pid"
  wait "$inlet_pid"
  report s3 "$lake" --s3-endpoint "$GARAGE_ENDPOINT" --s3-force-path-style
}

for scenario in "${scenarios[@]}"; do
  case "$scenario" in
    crash | disk | s3) "$scenario" ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
  esac
done
