#!/usr/bin/env bash
# The Airflow DAG (deploy/airflow) with real Apache Airflow: it imports cleanly and its task
# order is `inlet-batch steps` (test_dag.py), then `airflow dags test` runs it end to end for
# one reporting day (Asia/Seoul) over a lake written by a real gateway, publishing to a real
# PostgreSQL, and the published numbers are checked.
# Expects: $AIRFLOW_VENV (a virtualenv with requirements.txt), $GATEWAY_BIN, $BATCH_BIN, and
# $PG_TEST_URL (a running PostgreSQL). tests/run.sh provides all of them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/../lib.sh"

# 1. A lake with two days of events, written by the gateway (its shutdown flush publishes the
#    watermark that the DAG's sensor waits for).
key="airflow-test-key"
start_gateway "$work/gateway" "[{name = \"web\", write_key = \"$key\"}]" INLET_LAKE__URL="$work/lake"
python3 "$here/events.py" "$key" | curl -fsS "$gateway_url/v1/import" -H 'Content-Type: application/json' --data-binary @- > /dev/null
stop_gateway

# 2. Airflow with a throwaway home and metadata database; the DAG folder is deploy/airflow.
export AIRFLOW_HOME="$work/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$root/deploy/airflow"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
schema="airflow_test_$$"
# A product database (the members of the app, as a read replica would hold them) whose
# `members` table the DAG's table task copies into the lake and loads next to the metrics.
pg_port="$(sed 's/.*port=\([0-9]*\).*/\1/' <<< "$PG_TEST_URL")"
app_db="airflow_app_$$"
PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres psql -XAtq -d postgres -c "CREATE DATABASE $app_db"
PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres psql -XAtq -d "$app_db" -c "
  CREATE TABLE members (id text PRIMARY KEY, profession text, specialty text, email text, joined_at timestamptz);
  INSERT INTO members VALUES ('user-1', 'dentist', 'orthodontics', 'one@example.kr', '2026-01-02 03:04:05+09'),
    ('user-2', 'dentist', 'periodontics', 'two@example.kr', NULL), ('user-3', 'hygienist', NULL, NULL, NULL),
    ('user-4', 'doctor', 'dermatology', 'four@example.kr', NULL), ('user-5', 'hygienist', NULL, NULL, NULL);"
printf 'a-test-salt-of-some-length\n' > "$work/salt"
cat > "$work/batch.toml" <<TOML
lake_url = "$work/lake"
time_zone = "Asia/Seoul"
[warehouse]
kind = "postgres"
schema = "$schema"
postgres_url = "$PG_TEST_URL"
[databases.app]
engine = "postgres"
url = "postgres://postgres@127.0.0.1:$pg_port/$app_db"
hash_salt_file = "$work/salt"
[databases.app.tables.members]
mode = "snapshot"
hash = ["email"]
primary_key = ["id"]
TOML
export INLET_BATCH_BIN="$BATCH_BIN" INLET_BATCH_CONFIG="$work/batch.toml" INLET_BATCH_TIME_ZONE="Asia/Seoul"
export INLET_METRICS_START="2026-11-18"
# The sensor's command answers "not yet" (3) for a day the gateway has not flushed past.
code=0
"$BATCH_BIN" lake-status --date "$(date -u -d tomorrow +%F)" > /dev/null || code=$?
[[ "$code" == 3 ]] || { echo "lake-status for tomorrow exited $code, expected 3" >&2; exit 1; }
"$AIRFLOW_VENV/bin/airflow" db migrate > "$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; exit 1; }
"$AIRFLOW_VENV/bin/python" "$here/test_dag.py" "$root/deploy/airflow" "$BATCH_BIN"

# 3. The run for reporting day 2026-11-20. A manual run at a moment covers the last complete
#    interval before it: the 21st's Seoul midnight gives [20th 00:00, 21st 00:00) in Seoul.
if ! "$AIRFLOW_VENV/bin/airflow" dags test inlet_metrics 2026-11-21T00:00:00+09:00 > "$work/dags-test.log" 2>&1; then
  cat "$work/dags-test.log"
  exit 1
fi
if ! "$AIRFLOW_VENV/bin/python" "$here/check_published.py" "$PG_TEST_URL" "$schema"; then
  cat "$work/dags-test.log"
  exit 1
fi

# 4. The same day with the warehouse engine (every step as SQL inside PostgreSQL), into another
#    schema, from a fresh Airflow metadata database: the same numbers.
export AIRFLOW_HOME="$work/airflow-warehouse" INLET_BATCH_ENGINE=warehouse
sed "s/^schema = .*/schema = \"${schema}_wh\"/" "$work/batch.toml" > "$work/batch-warehouse.toml"
export INLET_BATCH_CONFIG="$work/batch-warehouse.toml"
"$AIRFLOW_VENV/bin/airflow" db migrate > "$work/migrate-warehouse.log" 2>&1 || { cat "$work/migrate-warehouse.log"; exit 1; }
if ! "$AIRFLOW_VENV/bin/airflow" dags test inlet_metrics 2026-11-21T00:00:00+09:00 > "$work/dags-test-warehouse.log" 2>&1; then
  cat "$work/dags-test-warehouse.log"
  exit 1
fi
if ! "$AIRFLOW_VENV/bin/python" "$here/check_published.py" "$PG_TEST_URL" "${schema}_wh"; then
  cat "$work/dags-test-warehouse.log"
  exit 1
fi
# The state schema exists only if the warehouse engine ran.
PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres psql -XAtq -d postgres -c "DROP SCHEMA ${schema}_wh_state CASCADE"
