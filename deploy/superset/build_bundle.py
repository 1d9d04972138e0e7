"""Writes deploy/superset/inlet_dashboard/, the Superset import bundle for Inlet's metrics tables
(a database, one dataset per table with its DATE column temporal, the charts and the dashboard;
and the virtual datasets joining the metrics with the product database's members, behind the
`Inlet members` dashboard),
from the compact description below: one place for every chart, so the YAML cannot drift
between charts.

    python build_bundle.py            rewrite the bundle
    python build_bundle.py --check    fail if the checked-in bundle differs (tests/run.sh)

To import: zip the folder (`cd deploy/superset && zip -r inlet_dashboard.zip inlet_dashboard`),
then Dashboards → Import in Superset (or `POST /api/v1/dashboard/import/`), and set the
database's connection string to your Redshift or PostgreSQL (docs/deploy.md).
Needs PyYAML (Superset's own Python has it).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import yaml

BUNDLE = Path(__file__).resolve().parent / "inlet_dashboard"
SCHEMA = "inlet"
# Stable ids, so re-importing a newer bundle updates the same objects instead of copying them.
NAMESPACE = uuid.UUID("6d0f4f64-3c1e-4b8e-9a53-4c1c2b5d7e10")


def uid(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


DATABASE = {
    "database_name": "Inlet metrics",
    # Placeholder: set the real connection after import (Redshift: redshift+psycopg2://…:5439/…).
    "sqlalchemy_uri": "postgresql+psycopg2://inlet@localhost:5432/metrics",
    "cache_timeout": None,
    "expose_in_sqllab": True,
    "allow_run_async": False,
    "allow_ctas": False,
    "allow_cvas": False,
    "allow_dml": False,
    "allow_file_upload": False,
    "extra": {"allows_virtual_table_explore": True},
    "uuid": uid("database"),
    "version": "1.0.0",
}

# table → (temporal column, [(column, SQL type)]) as inlet-batch creates them (docs/metrics.md).
TABLES = {
    "active_users": ("activity_date", [("activity_date", "DATE"), ("source", "VARCHAR"), ("dau", "BIGINT"), ("wau", "BIGINT"), ("mau", "BIGINT"), ("stickiness", "DOUBLE PRECISION")]),
    "monthly_active_users": ("month", [("month", "DATE"), ("source", "VARCHAR"), ("mau", "BIGINT")]),
    "new_users": ("activity_date", [("activity_date", "DATE"), ("source", "VARCHAR"), ("new_users", "BIGINT"), ("returning_users", "BIGINT")]),
    "retention": ("cohort_date", [("cohort_date", "DATE"), ("source", "VARCHAR"), ("day_number", "INTEGER"), ("cohort_size", "BIGINT"), ("retained_users", "BIGINT"), ("retention_rate", "DOUBLE PRECISION"), ("retained_on_or_after", "BIGINT"), ("unbounded_retention_rate", "DOUBLE PRECISION")]),
    "lifecycle_daily": ("activity_date", [("activity_date", "DATE"), ("source", "VARCHAR"), ("new_users", "BIGINT"), ("returning_users", "BIGINT"), ("resurrecting_users", "BIGINT"), ("dormant_users", "BIGINT")]),
    "lifecycle_weekly": ("week", [("week", "DATE"), ("source", "VARCHAR"), ("new_users", "BIGINT"), ("returning_users", "BIGINT"), ("resurrecting_users", "BIGINT"), ("dormant_users", "BIGINT")]),
    "stickiness_weekly": ("week", [("week", "DATE"), ("source", "VARCHAR"), ("active_days", "INTEGER"), ("users", "BIGINT"), ("share", "DOUBLE PRECISION")]),
    "stickiness_monthly": ("month", [("month", "DATE"), ("source", "VARCHAR"), ("active_days", "INTEGER"), ("users", "BIGINT"), ("share", "DOUBLE PRECISION")]),
    "page_views": ("activity_date", [("activity_date", "DATE"), ("source", "VARCHAR"), ("path", "VARCHAR"), ("page_views", "BIGINT"), ("unique_visitors", "BIGINT")]),
    "sessions": ("activity_date", [("activity_date", "DATE"), ("source", "VARCHAR"), ("sessions", "BIGINT"), ("avg_session_seconds", "DOUBLE PRECISION"), ("bounce_rate", "DOUBLE PRECISION")]),
    "event_counts": ("activity_date", [("activity_date", "DATE"), ("source", "VARCHAR"), ("type", "VARCHAR"), ("event", "VARCHAR"), ("events", "BIGINT"), ("users", "BIGINT")]),
    "tracking_plan_violations": ("activity_date", [("activity_date", "DATE"), ("source", "VARCHAR"), ("event", "VARCHAR"), ("property", "VARCHAR"), ("kind", "VARCHAR"), ("events", "BIGINT")]),
}


# Virtual datasets: the metrics joined with `inlet.members` (user_id, profession, specialty), the
# view `inlet-batch tables run` keeps over the copied member table named in `[members]`
# (docs/tables.md). Plain SQL both PostgreSQL and Redshift run (date - date is a day count in both).
ACTIVITY_BY_MEMBER = (
    "SELECT a.activity_date, a.source, a.user_key, a.first_seen_date, "
    "COALESCE(m.profession, 'unknown') AS profession, COALESCE(m.specialty, 'unknown') AS specialty "
    "FROM inlet.daily_user_activity a LEFT JOIN inlet.members m ON m.user_id = a.user_key"
)
VIRTUAL = {
    "active_members_by_profession": (
        "activity_date",
        f"SELECT activity_date, source, profession, specialty, COUNT(*) AS active_users FROM ({ACTIVITY_BY_MEMBER}) AS activity "
        "GROUP BY activity_date, source, profession, specialty",
        [("activity_date", "DATE"), ("source", "VARCHAR"), ("profession", "VARCHAR"), ("specialty", "VARCHAR"), ("active_users", "BIGINT")],
    ),
    "retention_by_profession": (
        "cohort_date",
        "SELECT c.cohort_date, c.source, c.profession, r.day_number, c.cohort_size, r.retained_users FROM "
        f"(SELECT first_seen_date AS cohort_date, source, profession, COUNT(*) AS cohort_size FROM ({ACTIVITY_BY_MEMBER}) AS a "
        "WHERE activity_date = first_seen_date GROUP BY first_seen_date, source, profession) AS c JOIN "
        f"(SELECT first_seen_date AS cohort_date, source, profession, activity_date - first_seen_date AS day_number, COUNT(*) AS retained_users "
        f"FROM ({ACTIVITY_BY_MEMBER}) AS a GROUP BY first_seen_date, source, profession, activity_date - first_seen_date) AS r "
        "ON r.cohort_date = c.cohort_date AND r.source = c.source AND r.profession = c.profession",
        [("cohort_date", "DATE"), ("source", "VARCHAR"), ("profession", "VARCHAR"), ("day_number", "INTEGER"), ("cohort_size", "BIGINT"), ("retained_users", "BIGINT")],
    ),
}


def metric(sql: str, label: str) -> dict:
    return {"expressionType": "SQL", "sqlExpression": sql, "label": label, "optionName": f"metric_{label.lower().replace(' ', '_')}"}


# Each chart: table, title, Superset viz type, its form data, and the query the data API runs:
# (columns, metrics, orderby, row_limit, where).
CHARTS = [
    {
        "key": "active_users",
        "table": "active_users",
        "title": "Daily, weekly and monthly active users",
        "viz": "echarts_timeseries_line",
        "metrics": [metric("SUM(dau)", "DAU"), metric("SUM(wau)", "WAU"), metric("SUM(mau)", "MAU")],
        "x": "activity_date",
    },
    {
        "key": "stickiness",
        "table": "active_users",
        "title": "Stickiness (DAU / MAU)",
        "viz": "echarts_timeseries_line",
        "metrics": [metric("SUM(dau) * 1.0 / NULLIF(SUM(mau), 0)", "Stickiness")],
        "x": "activity_date",
        "format": ".1%",
    },
    {
        "key": "monthly_active_users",
        "table": "monthly_active_users",
        "title": "Monthly active users (calendar month)",
        "viz": "echarts_timeseries_bar",
        "metrics": [metric("SUM(mau)", "MAU")],
        "x": "month",
        "grain": "P1M",
    },
    {
        "key": "new_vs_returning",
        "table": "new_users",
        "title": "New vs returning users",
        "viz": "echarts_timeseries_bar",
        "metrics": [metric("SUM(new_users)", "New"), metric("SUM(returning_users)", "Returning")],
        "x": "activity_date",
        "stack": True,
    },
    {
        "key": "retention_heatmap",
        "table": "retention",
        "title": "Retention by daily cohort (day 0–30)",
        "viz": "heatmap_v2",
        "metrics": [metric("SUM(retained_users) * 1.0 / NULLIF(SUM(cohort_size), 0)", "Retention")],
        "heatmap": ("day_number", "cohort_date"),
        "where": "day_number <= 30",
        "format": ".0%",
    },
    {
        "key": "unbounded_retention_heatmap",
        "table": "retention",
        "title": "Unbounded retention (on or after day N) by daily cohort",
        "viz": "heatmap_v2",
        "metrics": [metric("SUM(retained_on_or_after) * 1.0 / NULLIF(SUM(cohort_size), 0)", "Unbounded retention")],
        "heatmap": ("day_number", "cohort_date"),
        "where": "day_number <= 30",
        "format": ".0%",
    },
    {
        "key": "lifecycle_daily",
        "table": "lifecycle_daily",
        "title": "Lifecycle by day (dormant shown below zero)",
        "viz": "echarts_timeseries_bar",
        "metrics": [metric("SUM(new_users)", "New"), metric("SUM(returning_users)", "Returning"),
                    metric("SUM(resurrecting_users)", "Resurrecting"), metric("-SUM(dormant_users)", "Dormant")],
        "x": "activity_date",
        "stack": True,
    },
    {
        "key": "lifecycle_weekly",
        "table": "lifecycle_weekly",
        "title": "Lifecycle by week (dormant shown below zero)",
        "viz": "echarts_timeseries_bar",
        "metrics": [metric("SUM(new_users)", "New"), metric("SUM(returning_users)", "Returning"),
                    metric("SUM(resurrecting_users)", "Resurrecting"), metric("-SUM(dormant_users)", "Dormant")],
        "x": "week",
        "grain": "P1W",
        "stack": True,
    },
    {
        "key": "stickiness_weekly",
        "table": "stickiness_weekly",
        "title": "Weekly stickiness: users by active days in the week",
        "viz": "table",
        "metrics": [metric("SUM(users)", "Users"), metric("AVG(share)", "Share of the period's users (mean)")],
        "groupby": ["active_days"],
    },
    {
        "key": "stickiness_monthly",
        "table": "stickiness_monthly",
        "title": "Monthly stickiness: users by active days in the month",
        "viz": "table",
        "metrics": [metric("SUM(users)", "Users"), metric("AVG(share)", "Share of the period's users (mean)")],
        "groupby": ["active_days"],
    },
    {
        "key": "top_pages",
        "table": "page_views",
        "title": "Top pages",
        "viz": "table",
        "metrics": [metric("SUM(page_views)", "Page views"), metric("SUM(unique_visitors)", "Visitors (sum of days)")],
        "groupby": ["path"],
    },
    {
        "key": "sessions",
        "table": "sessions",
        "title": "Sessions per day",
        "viz": "echarts_timeseries_line",
        "metrics": [metric("SUM(sessions)", "Sessions")],
        "x": "activity_date",
    },
    {
        "key": "session_quality",
        "table": "sessions",
        "title": "Average session length (s) and bounce rate",
        "viz": "table",
        "metrics": [
            metric("SUM(avg_session_seconds * sessions) / NULLIF(SUM(sessions), 0)", "Average seconds"),
            metric("SUM(bounce_rate * sessions) / NULLIF(SUM(sessions), 0)", "Bounce rate"),
        ],
        "groupby": ["source"],
    },
    {
        "key": "top_events",
        "table": "event_counts",
        "title": "Top events",
        "viz": "table",
        "metrics": [metric("SUM(events)", "Events"), metric("SUM(users)", "Users (sum of days)")],
        "groupby": ["event"],
        "where": "type = 'track'",
    },
]


MEMBER_CHARTS = [
    {
        "key": "active_members_by_profession",
        "table": "active_members_by_profession",
        "title": "Daily active users by profession",
        "viz": "echarts_timeseries_line",
        "metrics": [metric("SUM(active_users)", "Active users")],
        "x": "activity_date",
        "series": ["profession"],
    },
    {
        "key": "active_members_by_specialty",
        "table": "active_members_by_profession",
        "title": "Active users by specialty (sum of days)",
        "viz": "table",
        "metrics": [metric("SUM(active_users)", "Active user-days")],
        "groupby": ["profession", "specialty"],
    },
    {
        "key": "retention_by_profession",
        "table": "retention_by_profession",
        "title": "Retention by profession (day 0–30)",
        "viz": "heatmap_v2",
        "metrics": [metric("SUM(retained_users) * 1.0 / NULLIF(SUM(cohort_size), 0)", "Retention")],
        "heatmap": ("day_number", "profession"),
        "where": "day_number <= 30",
        "format": ".0%",
    },
]


def form_data(chart: dict) -> dict:
    params = {
        "datasource": f"{uid('dataset:' + chart['table'])}__table",
        "viz_type": chart["viz"],
        "time_range": "No filter",
        "adhoc_filters": [],
        "row_limit": 10000,
    }
    if chart.get("where"):
        params["adhoc_filters"] = [{"expressionType": "SQL", "clause": "WHERE", "sqlExpression": chart["where"], "filterOptionName": f"filter_{chart['key']}"}]
    if chart["viz"].startswith("echarts_timeseries"):
        params.update({
            "x_axis": chart["x"],
            "time_grain_sqla": chart.get("grain", "P1D"),
            "metrics": chart["metrics"],
            "groupby": chart.get("series", []),
            "y_axis_format": chart.get("format", "SMART_NUMBER"),
            "show_legend": True,
            "rich_tooltip": True,
            "stack": "Stack" if chart.get("stack") else None,
        })
    elif chart["viz"] == "heatmap_v2":
        x, y = chart["heatmap"]
        params.update({
            "x_axis": x,
            "groupby": y,
            "metric": chart["metrics"][0],
            "normalize_across": "heatmap",
            "linear_color_scheme": "blue_white_yellow",
            "value_bounds": [None, None],
            "y_axis_format": chart.get("format", "SMART_NUMBER"),
            "sort_x_axis": "alpha_asc",
            "sort_y_axis": "alpha_asc",
            "show_legend": True,
            "show_values": False,
        })
    else:
        params.update({
            "query_mode": "aggregate",
            "groupby": chart["groupby"],
            "metrics": chart["metrics"],
            "timeseries_limit_metric": chart["metrics"][0],
            "order_desc": True,
            "row_limit": 20,
            "table_timestamp_format": "smart_date",
        })
    return params


def query_context(chart: dict, params: dict) -> str:
    """What the chart's saved query runs (`GET /api/v1/chart/{id}/data/`); the dashboard builds
    its own from the form data in the browser."""
    if chart["viz"].startswith("echarts_timeseries"):
        columns = [{"timeGrain": params["time_grain_sqla"], "columnType": "BASE_AXIS", "sqlExpression": chart["x"], "label": chart["x"], "expressionType": "SQL"}]
        columns += chart.get("series", [])
        orderby = []
        limit = 10000
    elif chart["viz"] == "heatmap_v2":
        columns = list(chart["heatmap"])
        orderby = []
        limit = 10000
    else:
        columns = chart["groupby"]
        orderby = [[chart["metrics"][0], False]]
        limit = 20
    query = {
        "filters": [],
        "extras": {"having": "", "where": f"({chart['where']})" if chart.get("where") else ""},
        "applied_time_extras": {},
        "columns": columns,
        "metrics": chart["metrics"],
        "orderby": orderby,
        "annotation_layers": [],
        "row_limit": limit,
        "series_limit": 0,
        "order_desc": True,
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
    }
    return json.dumps({
        "datasource": {"id": 0, "type": "table"},
        "force": False,
        "queries": [query],
        "form_data": params,
        "result_format": "json",
        "result_type": "full",
    }, sort_keys=True)


def dataset(table: str) -> dict:
    if table in VIRTUAL:
        temporal, sql, columns = VIRTUAL[table]
        description = "Metrics joined with the product database's members (docs/tables.md)"
    else:
        (temporal, columns), sql = TABLES[table], None
        description = f"inlet-batch's {table} table (docs/metrics.md)"
    return {
        "table_name": table,
        "main_dttm_col": temporal,
        "description": description,
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "schema": SCHEMA,
        "sql": sql,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": uid("dataset:" + table),
        "metrics": [{"metric_name": "count", "verbose_name": "COUNT(*)", "metric_type": "count", "expression": "COUNT(*)", "description": None, "d3format": None, "currency": None, "extra": {}, "warning_text": None}],
        "columns": [
            {
                "column_name": name,
                "verbose_name": None,
                "is_dttm": sql_type == "DATE",
                "is_active": True,
                "type": sql_type,
                "advanced_data_type": None,
                "groupby": True,
                "filterable": True,
                "expression": None,
                "description": None,
                "python_date_format": None,
                "extra": {},
            }
            for name, sql_type in columns
        ],
        "version": "1.0.0",
        "database_uuid": DATABASE["uuid"],
    }


def chart_file(chart: dict) -> dict:
    params = form_data(chart)
    return {
        "slice_name": chart["title"],
        "description": None,
        "certified_by": None,
        "certification_details": None,
        "viz_type": chart["viz"],
        "params": params,
        "query_context": query_context(chart, params),
        "cache_timeout": None,
        "uuid": uid("chart:" + chart["key"]),
        "version": "1.0.0",
        "dataset_uuid": uid("dataset:" + chart["table"]),
    }


def dashboard(title: str, slug: str, charts: list[dict], filter_dataset: str) -> dict:
    position: dict = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": title}},
    }
    for row_number in range(0, len(charts), 2):
        row_id = f"ROW-{row_number // 2 + 1}"
        position["GRID_ID"]["children"].append(row_id)
        row = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"], "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for chart in charts[row_number:row_number + 2]:
            chart_id = f"CHART-{chart['key']}"
            row["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {"width": 6, "height": 50, "chartId": 0, "uuid": uid("chart:" + chart["key"]), "sliceName": chart["title"]},
            }
        position[row_id] = row
    source_filter = {
        "id": "NATIVE_FILTER-source",
        "name": "Source",
        "filterType": "filter_select",
        "type": "NATIVE_FILTER",
        "description": "The app (Inlet source) the events came from",
        "targets": [{"datasetUuid": uid("dataset:" + filter_dataset), "column": {"name": "source"}}],
        "controlValues": {"multiSelect": True, "enableEmptyFilter": False, "defaultToFirstItem": False, "inverseSelection": False, "searchAllOptions": False},
        "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
    }
    return {
        "dashboard_title": title,
        "description": None,
        "css": "",
        "slug": slug,
        "certified_by": "",
        "certification_details": "",
        "published": True,
        "uuid": uid("dashboard") if slug == "inlet" else uid("dashboard:" + slug),
        "position": position,
        "metadata": {
            "native_filter_configuration": [source_filter],
            "color_scheme": "supersetColors",
            "refresh_frequency": 0,
            "expanded_slices": {},
            "label_colors": {},
            "timed_refresh_immune_slices": [],
            "cross_filters_enabled": False,
            "default_filters": "{}",
            "chart_configuration": {},
        },
        "version": "1.0.0",
    }


def files() -> dict[str, dict]:
    out = {
        "metadata.yaml": {"version": "1.0.0", "type": "Dashboard", "timestamp": "2026-11-24T00:00:00+00:00"},
        "databases/Inlet_metrics.yaml": DATABASE,
        "dashboards/Inlet.yaml": dashboard("Inlet", "inlet", CHARTS, "active_users"),
        "dashboards/Inlet_members.yaml": dashboard("Inlet members", "inlet-members", MEMBER_CHARTS, "active_members_by_profession"),
    }
    for table in [*TABLES, *VIRTUAL]:
        out[f"datasets/Inlet_metrics/{table}.yaml"] = dataset(table)
    for chart in CHARTS + MEMBER_CHARTS:
        out[f"charts/{chart['key']}.yaml"] = chart_file(chart)
    return out


def render(content: dict) -> str:
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=120)


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    stale = []
    wanted = files()
    for name, content in wanted.items():
        path = BUNDLE / name
        text = render(content)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    existing = {str(p.relative_to(BUNDLE)) for p in BUNDLE.rglob("*.yaml")} if BUNDLE.exists() else set()
    extra = existing - set(wanted)
    if check and (stale or extra):
        print(f"deploy/superset bundle out of date: {sorted(stale + list(extra))}; run build_bundle.py", file=sys.stderr)
        return 1
    for name in extra:
        (BUNDLE / name).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
