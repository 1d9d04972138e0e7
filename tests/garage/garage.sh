#!/usr/bin/env bash
# A single-node Garage (real S3-compatible object store) on loopback, for the lake tests.
#   garage.sh install          build and install Garage into the cache (once; ~6 minutes)
#   garage.sh start DIR        start a node with its state in DIR, create bucket and key
#   garage.sh stop DIR | restart DIR
#   garage.sh env DIR          print the environment (endpoint, bucket, credentials) to source
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/inlet"
GARAGE_VERSION="2.5.0"
garage_bin="$cache/garage/bin/garage"
# Test credentials, imported into the node (Garage key ids are GK + 24 hex digits).
KEY_ID="GK0123456789abcdef01234567"
SECRET="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
BUCKET="inlet-lake"

install() {
  if [[ -x "$garage_bin" ]] && "$garage_bin" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    return
  fi
  echo "installing garage $GARAGE_VERSION (first time only)" >&2
  cargo install garage --version "$GARAGE_VERSION" --locked --root "$cache/garage" >&2
}

ports() {
  # Fixed per state dir so a restart reuses them.
  cat "$1/ports"
}

g() { local dir="$1"; shift; "$garage_bin" -c "$dir/garage.toml" "$@"; }

start_daemon() {
  local dir="$1"
  read -r s3 rpc admin < <(ports "$dir")
  "$garage_bin" -c "$dir/garage.toml" server > "$dir/garage.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 1 100); do
    if (echo > "/dev/tcp/127.0.0.1/$s3") 2> /dev/null; then return; fi
    sleep 0.1
  done
  echo "garage did not start; log:" >&2
  cat "$dir/garage.log" >&2
  exit 1
}

start() {
  local dir="$1"
  install
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [[ ! -f "$dir/ports" ]]; then
    python3 -c 'import socket
ports = []
socks = []
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s); ports.append(s.getsockname()[1])
print(*ports)' > "$dir/ports"
  fi
  read -r s3 rpc admin < <(ports "$dir")
  cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(printf '%064x' 42)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "inlet-test-admin-token"
TOML
  start_daemon "$dir"
  if [[ ! -f "$dir/initialised" ]]; then
    local node
    for _ in $(seq 1 50); do
      node="$(g "$dir" node id -q 2> /dev/null | cut -d@ -f1)" && [[ -n "$node" ]] && break
      sleep 0.2
    done
    g "$dir" layout assign -z dc1 -c 1G "$node" > /dev/null
    g "$dir" layout apply --version 1 > /dev/null
    g "$dir" key import --yes -n inlet-test "$KEY_ID" "$SECRET" > /dev/null
    g "$dir" bucket create "$BUCKET" > /dev/null
    g "$dir" bucket allow --read --write --owner "$BUCKET" --key inlet-test > /dev/null
    touch "$dir/initialised"
  fi
}

stop() {
  local dir="$1"
  if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2> /dev/null; then
    kill "$(cat "$dir/pid")"
    while kill -0 "$(cat "$dir/pid")" 2> /dev/null; do sleep 0.05; done
  fi
  rm -f "$dir/pid"
}

env_of() {
  local dir="$1"
  read -r s3 rpc admin < <(ports "$dir")
  cat <<ENV
export GARAGE_ENDPOINT=http://127.0.0.1:$s3
export GARAGE_BUCKET=$BUCKET
export GARAGE_DIR=$dir
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=garage
ENV
}

case "${1:-}" in
  install) install ;;
  start) start "$2" ;;
  stop) stop "$2" ;;
  restart) stop "$2"; start_daemon "$(cd "$2" && pwd)" ;;
  env) env_of "$(cd "$2" && pwd)" ;;
  *) echo "usage: $0 install | start DIR | stop DIR | restart DIR | env DIR" >&2; exit 2 ;;
esac
