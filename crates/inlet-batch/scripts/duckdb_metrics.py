#!/usr/bin/env python3
"""The anchor of the batch benchmark: inlet-batch's metrics tables computed by DuckDB from the same
lake with the same definitions (docs/metrics.md), the way a plain SQL job would: every run
recomputes the identity map, first-seen dates and users from all events up to TO, and the dated
tables of FROM..TO from them.

    duckdb_metrics.py LAKE FROM TO [--time-zone Asia/Seoul] [--threads 2] [--memory-limit 1GB]
                      [--min-event-date 2015-01-01] [--session-timeout-minutes 30] [--out DIR]

Prints the seconds per table and totals to compare with inlet-batch's (Σ DAU, Σ MAU, ...).
"""

import argparse
import datetime
import json
import os
import sys
import time

import duckdb


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("lake")
    parser.add_argument("first", type=datetime.date.fromisoformat)
    parser.add_argument("last", type=datetime.date.fromisoformat)
    parser.add_argument("--time-zone", default="UTC")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--memory-limit", default=None, help="e.g. 1GB; DuckDB's default otherwise")
    parser.add_argument("--min-event-date", default="2015-01-01")
    parser.add_argument("--session-timeout-minutes", type=int, default=30)
    parser.add_argument("--out", default=None, help="write each table as Parquet here")
    parser.add_argument("--compare", default=None, metavar="METRICS",
                        help="inlet-batch's metrics folder ({lake}/metrics) to compare row by row")
    args = parser.parse_args()

    db = duckdb.connect()
    db.execute(f"SET threads = {int(args.threads)}")
    if args.memory_limit:
        db.execute("SET memory_limit = ?", [args.memory_limit])
    db.execute("SET TimeZone = 'UTC'")
    params = {
        "zone": args.time_zone,
        "first": args.first,
        "last": args.last,
        # Partitions past the last day's end in UTC hold no event of it (offsets are within ±14 h).
        "last_partition": (args.last + datetime.timedelta(days=1)).isoformat(),
        "min_time": f"{args.min_event_date} 00:00:00+00",
        "timeout": args.session_timeout_minutes * 60,
    }
    files = os.path.join(args.lake, "events", "*", "*", "*", "*.parquet")
    steps = [
        # Every event up to LAST, each (source, messageId) once per day, with its local day and raw key.
        ("events", f"""
            CREATE TEMP TABLE ev AS
            WITH raw AS (
              SELECT source, type, event, name, message_id, user_id, anonymous_id, previous_id, received_at,
                CASE WHEN type = 'page' THEN coalesce(context_page_path, json_extract_string(properties, '$.path'), '(not set)') END AS path,
                CASE WHEN type = 'identify' THEN traits END AS traits,
                CASE WHEN "timestamp" > received_at + INTERVAL 1 DAY OR "timestamp" < CAST($min_time AS TIMESTAMPTZ)
                  THEN received_at ELSE "timestamp" END AS event_time
              FROM read_parquet('{files}', hive_partitioning = true)
              WHERE dt <= $last_partition
            ),
            dated AS (SELECT *, CAST(timezone($zone, event_time) AS DATE) AS day FROM raw)
            SELECT *, coalesce(user_id, anonymous_id) AS raw_key FROM dated
            WHERE day <= $last
            QUALIFY row_number() OVER (PARTITION BY source, message_id, day ORDER BY received_at) = 1"""),
        ("identity_map", """
            CREATE TEMP TABLE identity_map AS
            WITH pairs AS (
              SELECT anonymous_id, user_id, event_time FROM ev
              WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL AND anonymous_id <> user_id
              UNION ALL
              SELECT previous_id, user_id, event_time FROM ev
              WHERE type = 'alias' AND user_id IS NOT NULL AND previous_id IS NOT NULL AND previous_id <> user_id
            ),
            spans AS (SELECT anonymous_id, user_id, min(event_time) AS first_seen, max(event_time) AS last_seen
                      FROM pairs GROUP BY ALL)
            SELECT anonymous_id, user_id, first_seen FROM spans
            QUALIFY row_number() OVER (PARTITION BY anonymous_id ORDER BY last_seen DESC, user_id) = 1"""),
        ("stitched", """
            CREATE TEMP TABLE st AS
            SELECT e.*, coalesce(m.user_id, e.raw_key) AS user_key,
              (e.user_id IS NOT NULL OR m.user_id IS NOT NULL) AS identified,
              e.type IN ('track', 'page', 'screen') AS activity
            FROM ev e LEFT JOIN identity_map m ON m.anonymous_id = e.raw_key
            WHERE e.raw_key IS NOT NULL"""),
        ("daily_user_activity", """
            CREATE TEMP TABLE daily_user_activity AS
            WITH first_seen AS (SELECT source, user_key, min(day) AS first_seen_date FROM st WHERE activity GROUP BY ALL)
            SELECT s.day AS activity_date, s.source, s.user_key, count(*) AS events,
              count(*) FILTER (WHERE s.type = 'page') AS page_views, f.first_seen_date
            FROM st s JOIN first_seen f USING (source, user_key)
            WHERE s.activity
            GROUP BY ALL"""),
        ("active_users", """
            CREATE TEMP TABLE active_users AS
            WITH calendar AS (SELECT CAST(d AS DATE) AS report_date FROM range(CAST($first AS DATE), CAST($last AS DATE) + 1, INTERVAL 1 DAY) r(d)),
            counted AS (
              SELECT c.report_date AS activity_date, a.source,
                count(DISTINCT a.user_key) FILTER (WHERE a.activity_date = c.report_date) AS dau,
                count(DISTINCT a.user_key) FILTER (WHERE a.activity_date > c.report_date - 7) AS wau,
                count(DISTINCT a.user_key) AS mau
              FROM calendar c JOIN daily_user_activity a
                ON a.activity_date BETWEEN c.report_date - 29 AND c.report_date
              GROUP BY ALL)
            SELECT *, dau / mau AS stickiness FROM counted"""),
        ("monthly_active_users", """
            CREATE TEMP TABLE monthly_active_users AS
            SELECT CAST(date_trunc('month', activity_date) AS DATE) AS month, source, count(DISTINCT user_key) AS mau
            FROM daily_user_activity WHERE activity_date >= date_trunc('month', CAST($first AS DATE))
            GROUP BY ALL"""),
        ("new_users", """
            CREATE TEMP TABLE new_users AS
            SELECT activity_date, source, count(*) FILTER (WHERE first_seen_date = activity_date) AS new_users,
              count(*) FILTER (WHERE first_seen_date < activity_date) AS returning_users
            FROM daily_user_activity WHERE activity_date BETWEEN $first AND $last GROUP BY ALL"""),
        ("retention", """
            CREATE TEMP TABLE retention AS
            WITH horizon AS (SELECT max(activity_date) AS last_day FROM daily_user_activity),
            cohort AS (SELECT source, user_key, activity_date AS cohort_date FROM daily_user_activity
                       WHERE first_seen_date = activity_date AND activity_date <= $last),
            sizes AS (SELECT source, cohort_date, count(*) AS cohort_size FROM cohort GROUP BY ALL),
            cells AS (SELECT c.source, c.cohort_date, CAST(a.activity_date - c.cohort_date AS INT) AS day_number, count(*) AS retained
                      FROM cohort c JOIN daily_user_activity a USING (source, user_key)
                      WHERE a.activity_date BETWEEN c.cohort_date AND c.cohort_date + 30 GROUP BY ALL),
            last_seen AS (SELECT source, user_key, max(activity_date) AS last_day FROM daily_user_activity GROUP BY ALL),
            unbounded AS (SELECT c.source, c.cohort_date, o.n AS day_number, count(*) AS retained
                          FROM cohort c JOIN last_seen l USING (source, user_key) CROSS JOIN range(0, 31) o(n)
                          WHERE l.last_day >= c.cohort_date + CAST(o.n AS INT) GROUP BY ALL)
            SELECT s.cohort_date, s.source, o.n AS day_number, s.cohort_size, coalesce(cells.retained, 0) AS retained_users,
              coalesce(cells.retained, 0) / s.cohort_size AS retention_rate,
              coalesce(u.retained, 0) AS retained_on_or_after, coalesce(u.retained, 0) / s.cohort_size AS unbounded_retention_rate
            FROM sizes s CROSS JOIN range(0, 31) o(n) CROSS JOIN horizon h
            LEFT JOIN cells ON cells.source = s.source AND cells.cohort_date = s.cohort_date AND cells.day_number = o.n
            LEFT JOIN unbounded u ON u.source = s.source AND u.cohort_date = s.cohort_date AND u.day_number = o.n
            WHERE s.cohort_date + CAST(o.n AS INT) <= h.last_day"""),
        ("retention_weekly", """
            CREATE TEMP TABLE retention_weekly AS
            WITH horizon AS (SELECT max(activity_date) AS last_day FROM daily_user_activity),
            weeks AS (SELECT DISTINCT source, user_key, CAST(date_trunc('week', activity_date) AS DATE) AS week,
                        CAST(date_trunc('week', first_seen_date) AS DATE) AS cohort_week FROM daily_user_activity),
            cohort AS (SELECT source, user_key, cohort_week FROM weeks WHERE week = cohort_week AND cohort_week <= $last),
            sizes AS (SELECT source, cohort_week, count(*) AS cohort_size FROM cohort GROUP BY ALL),
            cells AS (SELECT c.source, c.cohort_week, CAST((w.week - c.cohort_week) / 7 AS INT) AS week_number, count(*) AS retained
                      FROM cohort c JOIN weeks w USING (source, user_key, cohort_week) GROUP BY ALL)
            SELECT s.cohort_week, s.source, o.n AS week_number, s.cohort_size, coalesce(cells.retained, 0) AS retained_users,
              coalesce(cells.retained, 0) / s.cohort_size AS retention_rate
            FROM sizes s CROSS JOIN range(0, 13) o(n) CROSS JOIN horizon h
            LEFT JOIN cells ON cells.source = s.source AND cells.cohort_week = s.cohort_week AND cells.week_number = o.n
            WHERE s.cohort_week + CAST(o.n * 7 + 6 AS INT) <= h.last_day"""),
        ("lifecycle_daily", """
            CREATE TEMP TABLE lifecycle_daily AS
            WITH calendar AS (SELECT CAST(d AS DATE) AS day FROM range(CAST($first AS DATE), CAST($last AS DATE) + 1, INTERVAL 1 DAY) r(d)),
            today AS (SELECT c.day, a.source, a.user_key, a.first_seen_date,
                        EXISTS (SELECT 1 FROM daily_user_activity b WHERE b.source = a.source AND b.user_key = a.user_key
                                AND b.activity_date = c.day - 1) AS before
                      FROM calendar c JOIN daily_user_activity a ON a.activity_date = c.day),
            gone AS (SELECT c.day, a.source, count(*) AS dormant FROM calendar c JOIN daily_user_activity a ON a.activity_date = c.day - 1
                     WHERE NOT EXISTS (SELECT 1 FROM daily_user_activity b WHERE b.source = a.source AND b.user_key = a.user_key
                                       AND b.activity_date = c.day) GROUP BY ALL),
            counted AS (SELECT day, source, count(*) FILTER (WHERE first_seen_date = day) AS new_users,
                          count(*) FILTER (WHERE first_seen_date < day AND before) AS returning_users,
                          count(*) FILTER (WHERE first_seen_date < day AND NOT before) AS resurrecting_users
                        FROM today GROUP BY ALL)
            SELECT coalesce(c.day, g.day) AS activity_date, coalesce(c.source, g.source) AS source,
              coalesce(new_users, 0) AS new_users, coalesce(returning_users, 0) AS returning_users,
              coalesce(resurrecting_users, 0) AS resurrecting_users, coalesce(dormant, 0) AS dormant_users
            FROM counted c FULL JOIN gone g ON g.day = c.day AND g.source = c.source"""),
        ("lifecycle_weekly", """
            CREATE TEMP TABLE lifecycle_weekly AS
            WITH weeks AS (SELECT DISTINCT source, user_key, CAST(date_trunc('week', activity_date) AS DATE) AS week,
                             CAST(date_trunc('week', first_seen_date) AS DATE) AS first_week FROM daily_user_activity),
            calendar AS (SELECT DISTINCT week FROM weeks UNION SELECT week + 7 FROM weeks),
            marked AS (SELECT c.week, w.source, w.first_week,
                         EXISTS (SELECT 1 FROM weeks p WHERE p.source = w.source AND p.user_key = w.user_key AND p.week = c.week - 7) AS before
                       FROM calendar c JOIN weeks w ON w.week = c.week),
            gone AS (SELECT c.week, p.source, count(*) AS dormant FROM calendar c JOIN weeks p ON p.week = c.week - 7
                     WHERE NOT EXISTS (SELECT 1 FROM weeks w WHERE w.source = p.source AND w.user_key = p.user_key AND w.week = c.week)
                     GROUP BY ALL),
            counted AS (SELECT week, source, count(*) FILTER (WHERE first_week = week) AS new_users,
                          count(*) FILTER (WHERE first_week < week AND before) AS returning_users,
                          count(*) FILTER (WHERE first_week < week AND NOT before) AS resurrecting_users
                        FROM marked GROUP BY ALL)
            SELECT coalesce(c.week, g.week) AS week, coalesce(c.source, g.source) AS source,
              coalesce(new_users, 0) AS new_users, coalesce(returning_users, 0) AS returning_users,
              coalesce(resurrecting_users, 0) AS resurrecting_users, coalesce(dormant, 0) AS dormant_users
            FROM counted c FULL JOIN gone g ON g.week = c.week AND g.source = c.source
            WHERE coalesce(c.week, g.week) <= $last"""),
        ("stickiness_weekly", """
            CREATE TEMP TABLE stickiness_weekly AS
            WITH per_user AS (SELECT CAST(date_trunc('week', activity_date) AS DATE) AS week, source, user_key, count(*) AS active_days
                              FROM daily_user_activity GROUP BY ALL),
            grouped AS (SELECT week, source, CAST(active_days AS INT) AS active_days, count(*) AS users FROM per_user GROUP BY ALL)
            SELECT *, users / sum(users) OVER (PARTITION BY week, source) AS share FROM grouped"""),
        ("stickiness_monthly", """
            CREATE TEMP TABLE stickiness_monthly AS
            WITH per_user AS (SELECT CAST(date_trunc('month', activity_date) AS DATE) AS month, source, user_key, count(*) AS active_days
                              FROM daily_user_activity GROUP BY ALL),
            grouped AS (SELECT month, source, CAST(active_days AS INT) AS active_days, count(*) AS users FROM per_user GROUP BY ALL)
            SELECT *, users / sum(users) OVER (PARTITION BY month, source) AS share FROM grouped"""),
        ("page_views", """
            CREATE TEMP TABLE page_views AS
            SELECT day AS activity_date, source, path, count(*) AS page_views, count(DISTINCT user_key) AS unique_visitors
            FROM st WHERE type = 'page' AND day BETWEEN $first AND $last GROUP BY ALL"""),
        ("sessions", """
            CREATE TEMP TABLE sessions AS
            WITH timed AS (
              SELECT source, user_key, day, event_time,
                lag(event_time) OVER (PARTITION BY source, user_key, day ORDER BY event_time) AS previous
              FROM st WHERE activity AND day BETWEEN $first AND $last),
            numbered AS (
              SELECT *, sum(CASE WHEN previous IS NULL OR epoch(event_time) - epoch(previous) > $timeout THEN 1 ELSE 0 END)
                OVER (PARTITION BY source, user_key, day ORDER BY event_time ROWS UNBOUNDED PRECEDING) AS session_number
              FROM timed),
            visits AS (
              SELECT day, source, min(event_time) AS started, max(event_time) AS ended, count(*) AS events
              FROM numbered GROUP BY day, source, user_key, session_number)
            SELECT day AS activity_date, source, count(*) AS sessions, avg(epoch(ended) - epoch(started)) AS avg_session_seconds,
              avg(CASE WHEN events = 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate
            FROM visits GROUP BY ALL"""),
        ("event_counts", """
            CREATE TEMP TABLE event_counts AS
            SELECT day AS activity_date, source, type,
              CASE WHEN type = 'track' THEN coalesce(event, '') WHEN type IN ('page', 'screen') THEN coalesce(name, '') ELSE '' END AS event,
              count(*) AS events, count(DISTINCT user_key) AS users
            FROM st WHERE day BETWEEN $first AND $last GROUP BY ALL"""),
        ("users", """
            CREATE TEMP TABLE users AS
            WITH settings AS (
              SELECT user_key, source, event_time, received_at, k, traits -> k AS v
              FROM st, unnest(json_keys(traits)) AS u(k)
              WHERE identified AND type = 'identify' AND traits IS NOT NULL AND json_type(traits) = 'OBJECT'),
            latest AS (SELECT user_key, source, k, arg_max(v, (event_time, received_at)) AS v FROM settings GROUP BY ALL),
            merged AS (SELECT user_key, source, json_group_object(k, v) AS traits
                       FROM latest WHERE CAST(v AS VARCHAR) <> 'null' GROUP BY ALL),
            spans AS (SELECT user_key, source, min(event_time) AS first_seen, max(event_time) AS last_seen
                      FROM st WHERE identified GROUP BY ALL)
            SELECT s.user_key AS user_id, s.source, s.first_seen, s.last_seen, m.traits
            FROM spans s LEFT JOIN merged m USING (user_key, source)"""),
    ]
    timings = {}
    started = time.monotonic()
    for name, sql in steps:
        step_started = time.monotonic()
        used = {k: v for k, v in params.items() if f"${k}" in sql}
        db.execute(sql, used)
        timings[name] = time.monotonic() - step_started
    total = time.monotonic() - started
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for name, _ in steps[3:]:
            db.execute(f"COPY {name} TO '{os.path.join(args.out, name + '.parquet')}' (FORMAT parquet)")
    totals = db.execute("""
        SELECT (SELECT sum(dau) FROM active_users WHERE activity_date BETWEEN $first AND $last),
               (SELECT sum(mau) FROM active_users WHERE activity_date BETWEEN $first AND $last),
               (SELECT count(*) FROM daily_user_activity WHERE activity_date BETWEEN $first AND $last),
               (SELECT sum(page_views) FROM page_views),
               (SELECT sum(sessions) FROM sessions),
               (SELECT sum(events) FROM event_counts),
               (SELECT sum(new_users) FROM new_users),
               (SELECT count(*) FROM users)""", {"first": args.first, "last": args.last}).fetchone()
    names = ["sum_dau", "sum_mau", "activity_rows", "page_views", "sessions", "events", "new_users", "users"]
    report = {"seconds": round(total, 2), "steps": {k: round(v, 2) for k, v in timings.items()},
              "totals": dict(zip(names, [int(v or 0) for v in totals]))}
    if args.compare:
        report["differences"] = compare(db, args.compare, args.first, args.last)
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 1 if any(report.get("differences", {}).values()) else 0


# Per table: its columns (doubles rounded) and the rows both sides hold (the key dates DuckDB
# computed; inlet-batch keeps every key date of its state).
COMPARED = {
    "identity_map": ("anonymous_id, user_id, CAST(first_seen AS TIMESTAMP)", "TRUE"),
    "daily_user_activity": ("activity_date, source, user_key, events, page_views, first_seen_date",
                            "activity_date BETWEEN $first AND $last"),
    "active_users": ("activity_date, source, dau, wau, mau, round(stickiness, 9)", "activity_date BETWEEN $first AND $last"),
    "monthly_active_users": ("month, source, mau", "TRUE"),
    "new_users": ("activity_date, source, new_users, returning_users", "activity_date BETWEEN $first AND $last"),
    "retention": ("cohort_date, source, day_number, cohort_size, retained_users, round(retention_rate, 9), "
                  "retained_on_or_after, round(unbounded_retention_rate, 9)", "cohort_date BETWEEN $first AND $last"),
    "lifecycle_daily": ("activity_date, source, new_users, returning_users, resurrecting_users, dormant_users",
                        "activity_date BETWEEN $first AND $last"),
    "lifecycle_weekly": ("week, source, new_users, returning_users, resurrecting_users, dormant_users", "TRUE"),
    "stickiness_weekly": ("week, source, active_days, users, round(share, 9)", "TRUE"),
    "stickiness_monthly": ("month, source, active_days, users, round(share, 9)", "TRUE"),
    "retention_weekly": ("cohort_week, source, week_number, cohort_size, retained_users, round(retention_rate, 9)",
                         "TRUE"),
    "page_views": ("activity_date, source, path, page_views, unique_visitors", "activity_date BETWEEN $first AND $last"),
    "sessions": ("activity_date, source, sessions, round(avg_session_seconds, 6), round(bounce_rate, 9)",
                 "activity_date BETWEEN $first AND $last"),
    "event_counts": ("activity_date, source, type, event, events, users", "activity_date BETWEEN $first AND $last"),
    "users": ("user_id, source, CAST(first_seen AS TIMESTAMP), CAST(last_seen AS TIMESTAMP)", "TRUE"),
}


def compare(db, metrics, first, last):
    """Rows in one side and not the other, per table (0 everywhere: the same tables)."""
    differences = {}
    for table, (columns, wanted) in COMPARED.items():
        theirs = os.path.join(metrics, table, "*.parquet")
        count = db.execute(f"""
            WITH inlet AS (SELECT {columns} FROM read_parquet('{theirs}') WHERE {wanted}),
                 duck AS (SELECT {columns} FROM {table} WHERE {wanted})
            SELECT (SELECT count(*) FROM (FROM inlet EXCEPT ALL FROM duck))
                 + (SELECT count(*) FROM (FROM duck EXCEPT ALL FROM inlet))""",
                           {k: v for k, v in {"first": first, "last": last}.items() if f"${k}" in wanted}).fetchone()[0]
        differences[table] = int(count)
    return differences


if __name__ == "__main__":
    sys.exit(main())
