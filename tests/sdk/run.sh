#!/usr/bin/env bash
# End-to-end test with the unmodified official SDKs: @segment/analytics-node and
# segment-analytics-python (plain and gzip) send every message type to a running gateway whose
# lake is on S3 (Garage); the WAL and the lake (read back with pyarrow) are then checked.
# Expects: $GATEWAY_BIN (the built `inlet`), $SDK_PYTHON (a python with the SDK and pyarrow),
# tests/sdk/node_modules, and a running Garage described by `tests/garage/garage.sh env`
# (GARAGE_ENDPOINT, GARAGE_BUCKET, AWS_*). tests/run.sh provides all of them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
gateway_pid=""
cleanup() {
  if [[ -n "$gateway_pid" ]] && kill -0 "$gateway_pid" 2>/dev/null; then kill -9 "$gateway_pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "--- gateway stderr:"; cat "$work/gateway.err"; }
trap 'fail' ERR

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
key="sdk-test-write-key"
run_id="run$$"
lake_prefix="sdk-$run_id-$(date +%s)"
# Every event is read back from the WAL after the stop. With spare segments the first segment
# is closed early and deleted once the lake has it; without them it keeps all this test sends.
INLET_DATA_DIR="$work/data" INLET_SERVER__LISTEN="127.0.0.1:$port" INLET_ADMIN__LISTEN=127.0.0.1:0 \
  INLET_LOG_LEVEL=warn INLET_WAL__PREALLOCATE=false \
  INLET_LAKE__URL="s3://$GARAGE_BUCKET/$lake_prefix" INLET_LAKE__S3_ENDPOINT="$GARAGE_ENDPOINT" \
  INLET_LAKE__S3_FORCE_PATH_STYLE=true INLET_LAKE__MAX_AGE_SECS=1 \
  INLET_SOURCES="[{name = \"web\", write_key = \"$key\"}]" "$GATEWAY_BIN" > "$work/gateway.out" 2> "$work/gateway.err" &
gateway_pid=$!
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$port/healthz" > /dev/null && break
  sleep 0.05
done

node "$here/node-client.mjs" "http://127.0.0.1:$port" "$key" "$run_id" > "$work/sent-node.json"
"$SDK_PYTHON" "$here/python_client.py" "http://127.0.0.1:$port" "$key" "$run_id" plain > "$work/sent-python.json"
"$SDK_PYTHON" "$here/python_client.py" "http://127.0.0.1:$port" "$key" "$run_id" gzip > "$work/sent-python-gzip.json"
# Sending the same messages again must not store them twice (dedupe by messageId).
node "$here/node-client.mjs" "http://127.0.0.1:$port" "$key" "$run_id" > /dev/null

kill -TERM "$gateway_pid"
wait "$gateway_pid"
gateway_pid=""
INLET_DATA_DIR="$work/data" "$GATEWAY_BIN" wal dump > "$work/dump.jsonl"
python3 "$here/verify.py" "$work/dump.jsonl" "$work/sent-node.json" "$work/sent-python.json" "$work/sent-python-gzip.json"
"$SDK_PYTHON" "$here/verify_lake.py" "$work/dump.jsonl" "$lake_prefix"
# Left for the arrow-rs read-back (crates/inlet-gateway/tests/garage.rs), when asked for.
if [[ -n "${SDK_RESULTS_DIR:-}" ]]; then
  cp "$work/dump.jsonl" "$SDK_RESULTS_DIR/dump.jsonl"
  echo "$lake_prefix" > "$SDK_RESULTS_DIR/lake_prefix"
fi
