#!/usr/bin/env bash
# A throwaway PostgreSQL (the local stand-in for Redshift) for the test suite.
#   postgres.sh start DIR   initdb into DIR and start on a free loopback port (installs the
#                           Debian package first if the server is missing)
#   postgres.sh env DIR     prints `export PG_TEST_URL=...`
#   postgres.sh stop DIR
# initdb refuses to run as root, so the server runs as the `postgres` user.
set -euo pipefail

server_bin() {
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1 || true)"
  [[ -n "$bin" && -x "$bin/initdb" ]] && echo "$bin"
}

install() {
  if server_bin > /dev/null; then return; fi
  echo "installing PostgreSQL from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null
}

as_postgres() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1" bin port
  install
  bin="$(server_bin)"
  mkdir -p "$dir"
  if [[ "$(id -u)" == 0 ]]; then
    id postgres > /dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown postgres "$dir"
    # The server must reach its directory through the (often private) temporary parent.
    chmod o+x "$(dirname "$dir")"
  fi
  port="$(free_port)"
  echo "$port" > "$dir/port"
  as_postgres "$bin/initdb" --pgdata="$dir/data" --auth=trust --username=postgres --encoding=UTF8 --no-sync > "$dir/initdb.log"
  as_postgres "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait \
    --options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" start > /dev/null
}

stop() {
  local dir="$1" bin
  bin="$(server_bin)" || return 0
  [[ -d "$dir/data" ]] && as_postgres "$bin/pg_ctl" --pgdata="$dir/data" --mode=fast --wait stop > /dev/null 2>&1 || true
}

env_of() {
  echo "export PG_TEST_URL='host=127.0.0.1 port=$(cat "$1/port") user=postgres dbname=postgres'"
}

case "${1:-}" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  env) env_of "$2" ;;
  *) echo "usage: $0 start DIR | stop DIR | env DIR" >&2; exit 2 ;;
esac
