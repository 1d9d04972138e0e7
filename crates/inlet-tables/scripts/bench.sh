#!/usr/bin/env bash
# Copies one table of ROWS rows (a dozen mixed columns) from PostgreSQL and from MariaDB to
# Parquet with `inlet-batch tables run` (release build) and, on the same servers in the same
# run, with connectorx, ADBC (PostgreSQL) and DuckDB's extensions; prints seconds, rows/s and
# peak RSS of each (docs/benchmarks.md).
#   bench.sh [ROWS]      default 10000000; servers are started in a temporary directory
set -euo pipefail
rows="${1:-10000000}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/inlet"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
cargo build --release --locked -p inlet-batch --manifest-path "$root/Cargo.toml" > /dev/null 2>&1
venv="$cache/tables-bench"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

work="$(mktemp -d)"
trap 'bash "$root/tests/postgres/postgres.sh" stop "$work/pg"; bash "$root/tests/mariadb/mariadb.sh" stop "$work/my"; rm -rf "$work"' EXIT
chmod o+x "$work"
bash "$root/tests/postgres/postgres.sh" start "$work/pg"
bash "$root/tests/mariadb/mariadb.sh" start "$work/my"
pg_port="$(cat "$work/pg/port")" my_port="$(cat "$work/my/port")"

echo "generating $rows rows in each database" >&2
PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres psql -XAtq -d postgres -c "
  CREATE TABLE bench (id bigint PRIMARY KEY, member_id integer, title varchar(100), body text,
    score numeric(12,2), ratio double precision, is_public boolean, created date,
    updated_at timestamptz, category smallint, tag text, ref uuid);
  INSERT INTO bench SELECT g, g % 100000, 'title ' || g, md5(g::text) || md5((g * 7)::text),
    (g % 1000000) / 100.0, (g % 9973) / 9973.0, g % 2 = 0, date '2020-01-01' + g % 2000,
    timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second', g % 30, 'tag' || g % 50,
    md5(g::text)::uuid FROM generate_series(1, $rows) g;" -c "VACUUM ANALYZE bench"
mariadb --socket="$work/my/socket" -uroot inlet_test -e "
  CREATE TABLE bench (id BIGINT PRIMARY KEY, member_id INT, title VARCHAR(100), body TEXT,
    score DECIMAL(12,2), ratio DOUBLE, is_public TINYINT(1), created DATE, updated_at DATETIME(6),
    category SMALLINT, tag VARCHAR(20), ref CHAR(36)) ENGINE=InnoDB;
  SET SESSION unique_checks = 0;
  INSERT INTO bench SELECT seq, seq % 100000, CONCAT('title ', seq), CONCAT(MD5(seq), MD5(seq * 7)),
    (seq % 1000000) / 100.0, (seq % 9973) / 9973.0, seq % 2 = 0, DATE '2020-01-01' + INTERVAL seq % 2000 DAY,
    TIMESTAMP '2020-01-01 00:00:00' + INTERVAL seq SECOND, seq % 30, CONCAT('tag', seq % 50), UUID()
    FROM seq_1_to_$rows;"

cat > "$work/batch.toml" <<TOML
lake_url = "$work/lake"
[databases.pg]
engine = "postgres"
url = "postgres://postgres@127.0.0.1:$pg_port/postgres"
[databases.pg.tables.bench]
mode = "snapshot"
[databases.my]
engine = "mysql"
url = "mysql://inlet@127.0.0.1:$my_port/inlet_test"
password_env = "MYSQL_BENCH_PASSWORD"
[databases.my.tables.bench]
mode = "snapshot"
TOML
export MYSQL_BENCH_PASSWORD=inlet

measure() {  # label command... → "label seconds rows/s peak_rss_mb"
  local label="$1" seconds kb
  shift
  if /usr/bin/time -o "$work/time" -f '%e %M' "$@" > /dev/null 2> "$work/err"; then
    read -r seconds kb < "$work/time"
    printf '%-28s %8.1f s %12.0f rows/s %8.0f MB\n' "$label" "$seconds" "$(echo "$rows / $seconds" | bc -l)" "$((kb / 1024))"
  else
    printf '%-28s failed: %s\n' "$label" "$(tail -c 300 "$work/err" | tr '\n' ' ')"
  fi
}
batch="$CARGO_TARGET_DIR/release/inlet-batch"
pg_url="postgresql://postgres@127.0.0.1:$pg_port/postgres"
my_url="mysql://inlet:inlet@127.0.0.1:$my_port/inlet_test"
echo "tool                          seconds          rows/s   peak RSS"
for engine in pg my; do
  if [[ "$engine" == pg ]]; then url="$pg_url" name=postgres; else url="$my_url" name=mysql; fi
  measure "inlet ($name)" "$batch" --config "$work/batch.toml" tables run --table "$engine.bench" --date 2026-12-04
  measure "connectorx ($name)" "$venv/bin/python" "$here/peers.py" connectorx "$name" "$url" bench "$work/cx.parquet"
  measure "connectorx 2 parts ($name)" "$venv/bin/python" "$here/peers.py" connectorx-2 "$name" "$url" bench "$work/cx.parquet"
  [[ "$name" == postgres ]] && measure "adbc ($name)" "$venv/bin/python" "$here/peers.py" adbc "$name" "$url" bench "$work/adbc.parquet"
  if [[ "$name" == postgres ]]; then duck="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"
  else duck="host=127.0.0.1 port=$my_port user=inlet password=inlet database=inlet_test"; fi
  measure "duckdb ($name)" "$venv/bin/python" "$here/peers.py" duckdb "$name" "$duck" bench "$work/duck.parquet"
  rm -f "$work"/*.parquet
done
