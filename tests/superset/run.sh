#!/usr/bin/env bash
# The Superset bundle (deploy/superset) with real Apache Superset: metrics published by
# inlet-batch to PostgreSQL from a lake a real gateway wrote; a fresh Superset imports the
# bundle, every chart's saved query runs through Superset's API and returns rows, the source
# filter narrows them, and headless Chromium renders the dashboard with no chart in error.
# Expects: $SUPERSET_VENV, $GATEWAY_BIN, $BATCH_BIN, $PG_TEST_URL, tests/browser/node_modules
# (playwright-core) and Chromium. tests/run.sh provides all of them.
# $SUPERSET_SCREENSHOT: where to save the dashboard's picture (default: the temp dir).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/../lib.sh"

"$SUPERSET_VENV/bin/python" "$root/deploy/superset/build_bundle.py" --check

# 1. Two apps' events through a real gateway into a local lake, then the metrics into
#    PostgreSQL's schema `inlet` (the bundle's datasets).
start_gateway "$work/gateway" '[{name = "dentists", write_key = "key-dentists"}, {name = "hygienists", write_key = "key-hygienists"}]' \
  INLET_LAKE__URL="$work/lake"
python3 "$here/events.py" dentists=key-dentists hygienists=key-hygienists | while read -r batch; do
  curl -fsS "$gateway_url/v1/import" -H 'Content-Type: application/json' --data-binary @- <<< "$batch" > /dev/null
done
stop_gateway
psql_url() { python3 -c 'import sys; a=dict(p.split("=",1) for p in sys.argv[1].split()); print("postgresql+psycopg2://%(user)s@%(host)s:%(port)s/%(dbname)s" % a)' "$PG_TEST_URL"; }
PGHOST=127.0.0.1 PGPORT="$(sed 's/.*port=\([0-9]*\).*/\1/' <<< "$PG_TEST_URL")" PGUSER=postgres PGDATABASE=postgres \
  psql -XAtq -c 'DROP SCHEMA IF EXISTS inlet CASCADE'
RUST_LOG=warn "$BATCH_BIN" --lake "$work/lake" --postgres "$PG_TEST_URL" run --from 2026-11-01 --to 2026-11-14 --quiet > "$work/batch.out"
# The product database's members (profession, specialty), copied into the lake and loaded next
# to the metrics; `[members]` names the table the `Inlet members` dashboard joins.
pg_port="$(sed 's/.*port=\([0-9]*\).*/\1/' <<< "$PG_TEST_URL")"
app_db="superset_app_$$"
PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres psql -XAtq -d postgres -c "CREATE DATABASE $app_db"
PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres psql -XAtq -d "$app_db" -c "
  CREATE TABLE members (id bigint PRIMARY KEY, user_id text UNIQUE, job text, specialty text);
  INSERT INTO members SELECT n, 'u' || n, CASE WHEN n % 3 = 0 THEN 'hygienist' ELSE 'dentist' END,
    (ARRAY['orthodontics', 'periodontics', 'prosthodontics'])[n % 3 + 1] FROM generate_series(0, 39) n;"
cat > "$work/tables.toml" <<TOML
lake_url = "$work/lake"
[warehouse]
kind = "postgres"
postgres_url = "$PG_TEST_URL"
[databases.app]
engine = "postgres"
url = "postgres://postgres@127.0.0.1:$pg_port/$app_db"
[databases.app.tables.members]
mode = "snapshot"
[members]
table = "app.members"
user_id = "user_id"
profession = "job"
specialty = "specialty"
TOML
RUST_LOG=warn "$BATCH_BIN" --config "$work/tables.toml" tables run --date 2026-11-14 > "$work/tables.out"

# 2. A fresh Superset (SQLite metadata) on loopback.
export SUPERSET_CONFIG_PATH="$work/superset_config.py" FLASK_APP=superset
cat > "$SUPERSET_CONFIG_PATH" <<PY
SECRET_KEY = "inlet-test-only-$(date +%s%N)"
SQLALCHEMY_DATABASE_URI = "sqlite:///$work/superset.db"
WTF_CSRF_ENABLED = False
PY
superset="$SUPERSET_VENV/bin/superset"
{
  "$superset" db upgrade
  "$superset" fab create-admin --username admin --firstname Inlet --lastname Test --email admin@example.com --password admin
  "$superset" init
} > "$work/superset-setup.log" 2>&1 || { cat "$work/superset-setup.log"; exit 1; }
superset_port="$(free_port)"
"$superset" run -h 127.0.0.1 -p "$superset_port" --with-threads > "$work/superset.log" 2>&1 &
background_pids+=($!)
wait_for "http://127.0.0.1:$superset_port/health"

# 3. Import the bundle as checked in, point its database at the test PostgreSQL, query every
#    chart; then render the dashboard in Chromium.
url="http://127.0.0.1:$superset_port"
if ! "$SUPERSET_VENV/bin/python" "$here/check_bundle.py" "$url" "$root/deploy/superset/inlet_dashboard" "$(psql_url)" "$PG_TEST_URL"; then
  grep -v "INFO:werkzeug" "$work/superset.log" | grep -B5 -A40 "Traceback" | head -120
  exit 1
fi
if ! NODE_PATH="$root/tests/browser/node_modules" node "$here/screenshot.mjs" "$url" "${SUPERSET_SCREENSHOT:-$work/dashboard.png}"; then
  grep -v "INFO:werkzeug" "$work/superset.log" | grep -iE -A20 "Traceback|error" | head -120
  exit 1
fi
