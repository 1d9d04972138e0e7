# Shared by the shell end-to-end scripts (source it after `set -euo pipefail`): a temporary
# work directory and background processes, both cleaned up on exit, and a gateway that writes
# its lake to a local directory.
work="$(mktemp -d)"
background_pids=()
cleanup() {
  for pid in "${background_pids[@]}"; do kill -9 "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() {
  for _ in $(seq 1 600); do curl -fs "$1" > /dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2
  return 1
}

# start_gateway SOURCES_TOML: runs $GATEWAY_BIN with its data in $work/gateway and its lake in
# $work/lake; sets gateway_url and gateway_pid.
start_gateway() {
  local port
  port="$(free_port)"
  INLET_DATA_DIR="$work/gateway" INLET_SERVER__LISTEN="127.0.0.1:$port" INLET_LOG_LEVEL=warn \
    INLET_LAKE__URL="$work/lake" INLET_SOURCES="$1" "$GATEWAY_BIN" > /dev/null 2> "$work/gateway.err" &
  gateway_pid=$!
  background_pids+=("$gateway_pid")
  gateway_url="http://127.0.0.1:$port"
  wait_for "$gateway_url/healthz"
}

# stop_gateway: SIGTERM, which flushes the lake and publishes the watermark.
stop_gateway() {
  kill -TERM "$gateway_pid"
  wait "$gateway_pid"
}
