"""Inlet's daily metrics, for Airflow 3.

One run per reporting day (midnight to midnight in the reporting time zone):

1. `lake_complete` waits until every gateway's watermark in the lake is past the day's end
   (`inlet-batch lake-status`: exit 0 = complete, 3 = not yet, anything else fails the task).
2. `state` reads the day (and any day whose lake files changed since) into the state in the
   lake; then each table's step runs as its own task, after the steps it reads, with retries.

3. Product database tables (`[databases.NAME]` in the configuration; docs/tables.md): one task
   per table (`inlet-batch tables run --table DB.TABLE`), or one per database where
   `airflow_tasks = "per_database"` (all its tables from one snapshot). They copy the database
   as it is when they run, so they run only for the latest interval (and manual runs), after
   `latest_only`; they are independent of the lake and of the metric steps (no metric reads them:
   dashboards join them in the warehouse), so they run beside those.

4. `lake_retention` deletes lake events and dead letters past the ages in `[retention]`
   (`inlet-batch retention`), once the day's steps are done, for the latest interval only.
   Deletions asked for by privacy regulations need no task: the `state` task applies those whose
   lake files are erased (docs/privacy.md).

Steps are idempotent (each replaces its slice of the day and the lookback days before it), so
retries, catch-up and `airflow backfill create` are safe. Runs go one at a time
(`max_active_runs=1`): each run's `state` task commits the state the next run starts from.

Settings come from the workers' environment, as `inlet-batch` reads them:
    INLET_BATCH_BIN         path of the `inlet-batch` binary (default: on the PATH)
    INLET_BATCH_CONFIG      its TOML configuration (lake, warehouse; docs/config.md)
    INLET_BATCH_TIME_ZONE   the reporting time zone (default UTC); also this DAG's schedule
    INLET_BATCH_ENGINE      `datafusion` (in the worker) or `warehouse` (SQL inside the warehouse,
                            docs/scaling.md); default: the configuration's `engine`
    INLET_METRICS_START     first reporting day to compute (default 2026-11-01)
Any other INLET_BATCH_* variable (INLET_BATCH_LAKE_URL, INLET_BATCH_POSTGRES_URL) reaches the
tasks unchanged.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta

import tomllib

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.latest_only import LatestOnlyOperator
from airflow.providers.standard.sensors.bash import BashSensor
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

INLET_BATCH = shlex.quote(os.environ.get("INLET_BATCH_BIN", "inlet-batch"))
TIME_ZONE = os.environ.get("INLET_BATCH_TIME_ZONE", "UTC")
START = pendulum.parse(os.environ.get("INLET_METRICS_START", "2026-11-01"), tz=TIME_ZONE)

# Each step and the steps whose tables it reads: `inlet-batch steps` prints the same, and
# tests/airflow/test_dag.py fails if the two disagree.
STEPS: dict[str, list[str]] = {
    "state": [],
    "identity_map": ["state"],
    "daily_user_activity": ["state"],
    "active_users": ["daily_user_activity"],
    "monthly_active_users": ["daily_user_activity"],
    "new_users": ["daily_user_activity"],
    "retention": ["daily_user_activity"],
    "retention_weekly": ["daily_user_activity"],
    "lifecycle_daily": ["daily_user_activity"],
    "lifecycle_weekly": ["daily_user_activity"],
    "stickiness_weekly": ["daily_user_activity"],
    "stickiness_monthly": ["daily_user_activity"],
    "page_views": ["state"],
    "sessions": ["state"],
    "event_counts": ["state"],
    "tracking_plan_violations": ["state"],
    "users": ["state"],
}


def table_tasks(config_path: str | None) -> dict[str, str]:
    """Task id → the `--table` argument, from the same configuration file the tasks read."""
    if not config_path or not os.path.exists(config_path):
        return {}
    with open(config_path, "rb") as file:
        databases = tomllib.load(file).get("databases", {})
    tasks = {}
    for database, settings in sorted(databases.items()):
        if settings.get("airflow_tasks", "per_table") == "per_database":
            tasks[f"tables__{database}"] = database
        else:
            for table in sorted(settings.get("tables", {})):
                tasks[f"tables__{database}__{table}"] = f"{database}.{table}"
    return tasks


TABLE_TASKS = table_tasks(os.environ.get("INLET_BATCH_CONFIG"))


def reporting_day(moment) -> str:
    """The reporting day an interval boundary falls on (Airflow's `ds` is the UTC date)."""
    return pendulum.instance(moment).in_timezone(TIME_ZONE).to_date_string()


DAY = "{{ reporting_day(data_interval_start) }}"

with DAG(
    dag_id="inlet_metrics",
    description="Inlet metrics tables (DAU/WAU/MAU, retention, page views, sessions, …) from the lake",
    # A data interval per day: the run for a day starts after it ends, and its
    # data_interval_start is the day's local midnight.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=TIME_ZONE),
    start_date=START,
    catchup=True,
    max_active_runs=1,
    user_defined_macros={"reporting_day": reporting_day},
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=10),
        "retry_exponential_backoff": True,
    },
    tags=["inlet"],
) as dag:
    lake_complete = BashSensor(
        task_id="lake_complete",
        bash_command=f"{INLET_BATCH} lake-status --date {DAY}",
        retry_exit_code=3,
        mode="reschedule",
        poke_interval=300,
        timeout=timedelta(hours=12).total_seconds(),
    )
    tasks = {
        step: BashOperator(
            task_id=step,
            bash_command=f"{INLET_BATCH} run --from {DAY} --to {DAY} --steps {step} --quiet",
            execution_timeout=timedelta(hours=2),
        )
        for step in STEPS
    }
    for step, inputs in STEPS.items():
        lake_complete >> tasks[step]
        for upstream in inputs:
            tasks[upstream] >> tasks[step]
    latest_only = LatestOnlyOperator(task_id="latest_only")
    lake_retention = BashOperator(
        task_id="lake_retention",
        bash_command=f"{INLET_BATCH} retention",
        execution_timeout=timedelta(hours=1),
    )
    latest_only >> lake_retention
    for task in tasks.values():
        task >> lake_retention
    if TABLE_TASKS:
        for task_id, selection in TABLE_TASKS.items():
            latest_only >> BashOperator(
                task_id=task_id,
                bash_command=f"{INLET_BATCH} tables run --table {shlex.quote(selection)} --date {DAY}",
                execution_timeout=timedelta(hours=4),
            )
