#!/usr/bin/env bash
# A throwaway MariaDB (the MySQL engine of the product-database tests) for the test suite.
#   mariadb.sh start DIR   install the Debian package if missing, create a data directory in
#                          DIR and start the server on a free loopback port
#   mariadb.sh env DIR     prints `export MYSQL_TEST_URL=...` (user `inlet`, password `inlet`)
#   mariadb.sh stop DIR
# The server runs as the package's `mysql` user.
set -euo pipefail

install() {
  if command -v mariadbd > /dev/null || [[ -x /usr/sbin/mariadbd ]]; then return; fi
  echo "installing MariaDB from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client > /dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1" port user=()
  install
  mkdir -p "$dir"
  if [[ "$(id -u)" == 0 ]]; then
    id mysql > /dev/null 2>&1 || useradd --system --home-dir "$dir" mysql
    chown mysql "$dir"
    chmod o+x "$(dirname "$dir")"
    user=(--user=mysql)
  fi
  port="$(free_port)"
  echo "$port" > "$dir/port"
  mariadb-install-db "${user[@]}" --datadir="$dir/data" --auth-root-authentication-method=socket \
    --skip-test-db > "$dir/install.log" 2>&1
  /usr/sbin/mariadbd "${user[@]}" --datadir="$dir/data" --socket="$dir/socket" --port="$port" \
    --bind-address=127.0.0.1 --pid-file="$dir/pid" --log-error="$dir/server.log" \
    --innodb-flush-log-at-trx-commit=0 --skip-log-bin > /dev/null 2>&1 &
  for _ in $(seq 1 100); do
    if mariadb --socket="$dir/socket" -uroot -e 'SELECT 1' > /dev/null 2>&1; then break; fi
    sleep 0.2
  done
  mariadb --socket="$dir/socket" -uroot -e "
    CREATE DATABASE IF NOT EXISTS inlet_test CHARACTER SET utf8mb4;
    CREATE USER IF NOT EXISTS 'inlet'@'%' IDENTIFIED BY 'inlet';
    GRANT ALL ON *.* TO 'inlet'@'%';"
}

stop() {
  local dir="$1"
  [[ -f "$dir/pid" ]] || return 0
  kill "$(cat "$dir/pid")" 2> /dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$(cat "$dir/pid" 2> /dev/null)" 2> /dev/null || return 0
    sleep 0.2
  done
}

env_of() {
  echo "export MYSQL_TEST_URL='mysql://inlet@127.0.0.1:$(cat "$1/port")/inlet_test' MYSQL_TEST_PASSWORD=inlet"
}

case "${1:-}" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  env) env_of "$2" ;;
  *) echo "usage: $0 start DIR | stop DIR | env DIR" >&2; exit 2 ;;
esac
