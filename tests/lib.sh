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

# start_gateway DATA_DIR SOURCES_TOML [VAR=VALUE ...]: runs $GATEWAY_BIN on $gateway_port (a
# free port, chosen once, so a restart listens where clients send), with its data in DATA_DIR
# (the lake in DATA_DIR/lake unless a VAR says otherwise), its admin listener on $admin_port;
# sets gateway_url, gateway_admin_url (metrics) and gateway_pid.
start_gateway() {
  local data="$1" sources="$2"
  shift 2
  gateway_port="${gateway_port:-$(free_port)}"
  admin_port="${admin_port:-$(free_port)}"
  local admin=(INLET_ADMIN__LISTEN="127.0.0.1:$admin_port")
  gateway_admin_url="http://127.0.0.1:$admin_port"
  # A build from before the admin listener (an A/B baseline) serves /metrics on its one port.
  if ! env "${admin[@]}" "$GATEWAY_BIN" check-config > /dev/null 2>&1; then
    admin=()
    gateway_admin_url="http://127.0.0.1:$gateway_port"
  fi
  env INLET_DATA_DIR="$data" INLET_SERVER__LISTEN="127.0.0.1:$gateway_port" "${admin[@]}" INLET_LOG_LEVEL=warn \
    INLET_SOURCES="$sources" "$@" "$GATEWAY_BIN" >> "$data.log" 2>&1 &
  gateway_pid=$!
  background_pids+=("$gateway_pid")
  gateway_url="http://127.0.0.1:$gateway_port"
  wait_for "$gateway_url/healthz"
}

# start_fresh_gateway BIN WRITE_KEY [VAR=VALUE ...]: as start_gateway, with BIN on a new data
# directory in $work (one source, `load`), after deleting the previous one and leaving the
# disk 8 s to settle, so its freed blocks do not slow this run's fsyncs (the A/B scripts).
start_fresh_gateway() {
  local bin="$1" key="$2"
  shift 2
  rm -rf "$work/data" "$work/data.log"
  sync
  sleep 8
  mkdir -p "$work/data"
  GATEWAY_BIN="$bin"
  start_gateway "$work/data" "[{name = \"load\", write_key = \"$key\"}]" "$@"
}

# stop_gateway: SIGTERM, which flushes the lake and publishes the watermark.
stop_gateway() {
  kill -TERM "$gateway_pid"
  wait "$gateway_pid"
}
