//! The SQL (DataFusion's dialect) of each step. Definitions in words, with the edge cases, are in
//! `docs/metrics.md`; keep the two in step.
//!
//! Shared building blocks:
//! - **event time**: the corrected `timestamp`, except where the lake itself partitioned the
//!   event by `received_at` (a timestamp before `min_event_date` or more than a day after
//!   receipt), so every event counts on the day of the partition that holds it;
//! - **activity date**: the event time's calendar date in the reporting time zone;
//! - **user key**: the stitched user: the user id (followed through an alias), else the user id
//!   the anonymous id maps to in `identity_map`, else the anonymous id;
//! - **activity**: `track`, `page` and `screen` calls (identify, group and alias are not things
//!   a user did);
//! - duplicates of a `messageId` within a source are counted once.

use chrono::NaiveDate;

use crate::calendar::{Dates, add_days, day};
use crate::config::BatchConfig;
use crate::tables::Table;

/// Return-on-day-N retention is computed for N = 0..=30.
pub const RETENTION_DAYS: i64 = 30;
/// Weekly retention, weeks 0..=12.
pub const RETENTION_WEEKS: i64 = 12;
/// MAU is a rolling window of 30 days ending on the date, WAU of 7.
pub const MAU_DAYS: i64 = 30;
pub const WAU_DAYS: i64 = 7;

const ACTIVITY: &str = "type IN ('track', 'page', 'screen')";

/// What one step computes: the dates it replaces (for dated tables) and the sources.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub config: &'a BatchConfig,
    /// Key dates: days, cohort days, Mondays of cohort weeks or first days of months.
    pub keys: &'a Dates,
    /// `None`: every source.
    pub sources: Option<&'a [String]>,
}

impl Scope<'_> {
    fn source_filter(&self, column: &str) -> String {
        match self.sources {
            None => "TRUE".into(),
            Some(sources) => {
                let quoted: Vec<String> = sources.iter().map(|s| format!("'{s}'")).collect();
                format!("{column} IN ({})", quoted.join(", "))
            }
        }
    }

    fn event_time(&self) -> String {
        format!(
            "CASE WHEN \"timestamp\" > received_at + INTERVAL '1 day' \
             OR \"timestamp\" < CAST('{}T00:00:00Z' AS TIMESTAMP) THEN received_at ELSE \"timestamp\" END",
            self.config.min_event_date
        )
    }

    fn local_date(&self, time: &str) -> String {
        format!("CAST(({time}) AT TIME ZONE '{}' AS DATE)", self.config.time_zone)
    }

    /// Events with their event time, activity date and user key. `days`: only events of these
    /// reporting days (and their partitions), deduplicated; `None`: all history, as stored.
    fn events(&self, days: Option<&Dates>) -> String {
        let time = self.event_time();
        let (partitions, dedupe, wanted) = match days {
            Some(days) => {
                (days.partition_dates().sql_text_predicate("dt"), true, days.sql_predicate(&self.local_date(&time)))
            }
            None => ("TRUE".into(), false, "TRUE".into()),
        };
        let scanned = format!(
            "SELECT source, type, event, name, message_id, user_id, anonymous_id, previous_id, \
             context_page_path, properties, traits, received_at, {time} AS event_time, {local} AS activity_date \
             FROM events WHERE {partitions} AND {sources} AND {wanted}",
            local = self.local_date(&time),
            sources = self.source_filter("source"),
        );
        let unique = if dedupe {
            format!(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY source, message_id ORDER BY received_at) \
                 AS copy_number FROM ({scanned})) WHERE copy_number = 1"
            )
        } else {
            scanned
        };
        format!(
            "SELECT e.*, COALESCE(via_user.user_id, e.user_id, via_anonymous.user_id, e.anonymous_id) AS user_key, \
             (e.user_id IS NOT NULL OR via_anonymous.user_id IS NOT NULL) AS identified \
             FROM ({unique}) e \
             LEFT JOIN identity_map via_user ON via_user.anonymous_id = e.user_id \
             LEFT JOIN identity_map via_anonymous ON via_anonymous.anonymous_id = e.anonymous_id"
        )
    }

    fn dua_between(&self, from: NaiveDate, to: NaiveDate) -> String {
        format!(
            "SELECT * FROM daily_user_activity WHERE activity_date BETWEEN DATE '{}' AND DATE '{}' AND {}",
            day(from),
            day(to),
            self.source_filter("source")
        )
    }

    fn first_key(&self) -> NaiveDate {
        self.keys.first().unwrap_or(NaiveDate::MIN)
    }

    fn last_key(&self) -> NaiveDate {
        self.keys.last().unwrap_or(NaiveDate::MIN)
    }
}

/// `(VALUES (0), (1), …)` as a table `offsets(n)`.
fn offsets(count: i64) -> String {
    let rows: Vec<String> = (0..count).map(|n| format!("({n})")).collect();
    format!("SELECT CAST(column1 AS INT) AS n FROM (VALUES {})", rows.join(", "))
}

/// The step's query; its columns are the table's, in order.
pub fn sql(table: Table, scope: &Scope<'_>) -> String {
    let keys = scope.keys;
    match table {
        Table::IdentityMap => format!(
            "WITH linked AS (SELECT type, user_id, anonymous_id, previous_id, {time} AS event_time FROM events \
               WHERE user_id IS NOT NULL AND (anonymous_id IS NOT NULL OR previous_id IS NOT NULL)), \
             pairs AS ( \
               SELECT anonymous_id, user_id, event_time FROM linked \
                 WHERE anonymous_id IS NOT NULL AND anonymous_id <> user_id \
               UNION ALL SELECT previous_id, user_id, event_time FROM linked \
                 WHERE type = 'alias' AND previous_id IS NOT NULL AND previous_id <> user_id), \
             spans AS (SELECT anonymous_id, user_id, MIN(event_time) AS first_seen, MAX(event_time) AS last_seen \
               FROM pairs GROUP BY anonymous_id, user_id), \
             latest AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY anonymous_id ORDER BY last_seen DESC, user_id) \
               AS rank FROM spans) \
             SELECT anonymous_id, user_id, first_seen FROM latest WHERE rank = 1 ORDER BY anonymous_id",
            time = scope.event_time()
        ),
        Table::DailyUserActivity => format!(
            "WITH day_events AS ({window}), history AS ({all}), \
             first_seen AS (SELECT source, user_key, MIN(activity_date) AS first_seen_date FROM history \
               WHERE {ACTIVITY} GROUP BY source, user_key) \
             SELECT e.activity_date, e.source, e.user_key, COUNT(*) AS events, \
               SUM(CASE WHEN e.type = 'page' THEN 1 ELSE 0 END) AS page_views, f.first_seen_date \
             FROM day_events e JOIN first_seen f ON f.source = e.source AND f.user_key = e.user_key \
             WHERE e.{ACTIVITY} \
             GROUP BY e.activity_date, e.source, e.user_key, f.first_seen_date",
            window = range_events(keys),
            all = scope.events(None),
        ),
        Table::ActiveUsers => format!(
            "WITH dua AS ({dua}), offsets AS ({offsets}), \
             spread AS (SELECT d.activity_date + o.n AS report_date, d.source, d.user_key, o.n \
               FROM dua d CROSS JOIN offsets o), \
             counted AS (SELECT report_date, source, \
               COUNT(DISTINCT CASE WHEN n = 0 THEN user_key END) AS dau, \
               COUNT(DISTINCT CASE WHEN n < {WAU_DAYS} THEN user_key END) AS wau, \
               COUNT(DISTINCT user_key) AS mau \
               FROM spread WHERE {wanted} GROUP BY report_date, source) \
             SELECT report_date AS activity_date, source, dau, wau, mau, \
               CAST(dau AS DOUBLE) / CAST(mau AS DOUBLE) AS stickiness FROM counted",
            dua = scope.dua_between(add_days(scope.first_key(), 1 - MAU_DAYS), scope.last_key()),
            offsets = offsets(MAU_DAYS),
            wanted = keys.sql_predicate("report_date"),
        ),
        Table::MonthlyActiveUsers => format!(
            "WITH dua AS ({dua}) \
             SELECT month, source, COUNT(DISTINCT user_key) AS mau FROM \
               (SELECT CAST(date_trunc('month', activity_date) AS DATE) AS month, source, user_key FROM dua) \
             WHERE {wanted} GROUP BY month, source",
            dua = scope.dua_between(scope.first_key(), add_days(next_month(scope.last_key()), -1)),
            wanted = keys.sql_predicate("month"),
        ),
        Table::NewUsers => format!(
            "SELECT activity_date, source, \
               SUM(CASE WHEN first_seen_date = activity_date THEN 1 ELSE 0 END) AS new_users, \
               SUM(CASE WHEN first_seen_date < activity_date THEN 1 ELSE 0 END) AS returning_users \
             FROM daily_user_activity WHERE {wanted} AND {sources} GROUP BY activity_date, source",
            wanted = keys.sql_predicate("activity_date"),
            sources = scope.source_filter("source"),
        ),
        Table::Retention => format!(
            "WITH dua AS ({dua}), offsets AS ({offsets}), \
             horizon AS (SELECT MAX(activity_date) AS last_day FROM daily_user_activity), \
             cohort AS (SELECT source, user_key, activity_date AS cohort_date FROM dua \
               WHERE first_seen_date = activity_date AND {wanted}), \
             sizes AS (SELECT source, cohort_date, COUNT(*) AS cohort_size FROM cohort GROUP BY source, cohort_date), \
             cells AS (SELECT c.source, c.cohort_date, CAST(a.activity_date - c.cohort_date AS INT) AS day_number, \
               COUNT(*) AS retained FROM cohort c JOIN dua a ON a.source = c.source AND a.user_key = c.user_key \
               WHERE a.activity_date >= c.cohort_date AND a.activity_date <= c.cohort_date + {RETENTION_DAYS} \
               GROUP BY c.source, c.cohort_date, a.activity_date) \
             SELECT s.cohort_date, s.source, o.n AS day_number, s.cohort_size, \
               COALESCE(cells.retained, 0) AS retained_users, \
               CAST(COALESCE(cells.retained, 0) AS DOUBLE) / CAST(s.cohort_size AS DOUBLE) AS retention_rate \
             FROM sizes s CROSS JOIN offsets o CROSS JOIN horizon h \
             LEFT JOIN cells ON cells.source = s.source AND cells.cohort_date = s.cohort_date AND cells.day_number = o.n \
             WHERE s.cohort_date + o.n <= h.last_day",
            dua = scope.dua_between(scope.first_key(), add_days(scope.last_key(), RETENTION_DAYS)),
            offsets = offsets(RETENTION_DAYS + 1),
            wanted = keys.sql_predicate("activity_date"),
        ),
        Table::RetentionWeekly => format!(
            "WITH dua AS ({dua}), offsets AS ({offsets}), \
             horizon AS (SELECT MAX(activity_date) AS last_day FROM daily_user_activity), \
             weeks AS (SELECT DISTINCT source, user_key, CAST(date_trunc('week', activity_date) AS DATE) AS week, \
               CAST(date_trunc('week', first_seen_date) AS DATE) AS cohort_week FROM dua), \
             cohort AS (SELECT source, user_key, cohort_week FROM weeks WHERE week = cohort_week AND {wanted}), \
             sizes AS (SELECT source, cohort_week, COUNT(*) AS cohort_size FROM cohort GROUP BY source, cohort_week), \
             cells AS (SELECT c.source, c.cohort_week, CAST((w.week - c.cohort_week) / 7 AS INT) AS week_number, \
               COUNT(*) AS retained FROM cohort c JOIN weeks w ON w.source = c.source AND w.user_key = c.user_key \
               AND w.cohort_week = c.cohort_week GROUP BY c.source, c.cohort_week, w.week) \
             SELECT s.cohort_week, s.source, o.n AS week_number, s.cohort_size, \
               COALESCE(cells.retained, 0) AS retained_users, \
               CAST(COALESCE(cells.retained, 0) AS DOUBLE) / CAST(s.cohort_size AS DOUBLE) AS retention_rate \
             FROM sizes s CROSS JOIN offsets o CROSS JOIN horizon h \
             LEFT JOIN cells ON cells.source = s.source AND cells.cohort_week = s.cohort_week AND cells.week_number = o.n \
             WHERE s.cohort_week + o.n * 7 + 6 <= h.last_day",
            dua = scope.dua_between(scope.first_key(), add_days(scope.last_key(), 7 * (RETENTION_WEEKS + 1) - 1)),
            offsets = offsets(RETENTION_WEEKS + 1),
            wanted = keys.sql_predicate("cohort_week"),
        ),
        Table::PageViews => format!(
            "SELECT activity_date, source, path, COUNT(*) AS page_views, COUNT(DISTINCT user_key) AS unique_visitors \
             FROM (SELECT activity_date, source, user_key, path FROM ({events}) WHERE type = 'page') \
             GROUP BY activity_date, source, path",
            events = range_events(keys),
        ),
        Table::Sessions => format!(
            "WITH timed AS (SELECT source, user_key, event_time, \
               LAG(event_time) OVER (PARTITION BY source, user_key ORDER BY event_time) AS previous \
               FROM ({events}) WHERE {ACTIVITY}), \
             numbered AS (SELECT source, user_key, event_time, \
               SUM(CASE WHEN previous IS NULL OR event_time > previous + INTERVAL '{timeout} minutes' THEN 1 ELSE 0 END) \
               OVER (PARTITION BY source, user_key ORDER BY event_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) \
               AS session_number FROM timed), \
             visits AS (SELECT source, user_key, session_number, MIN(event_time) AS started, \
               MAX(event_time) AS ended, COUNT(*) AS events FROM numbered GROUP BY source, user_key, session_number), \
             dated AS (SELECT {start_date} AS activity_date, source, \
               date_part('epoch', ended) - date_part('epoch', started) AS seconds, events FROM visits) \
             SELECT activity_date, source, COUNT(*) AS sessions, AVG(seconds) AS avg_session_seconds, \
               AVG(CASE WHEN events = 1 THEN 1.0 ELSE 0.0 END) AS bounce_rate \
             FROM dated WHERE {wanted} GROUP BY activity_date, source",
            // A session belongs to the day it starts on; the day before and after are read so
            // sessions crossing midnight are whole.
            events = range_events(&keys.partition_dates()),
            timeout = scope.config.session_timeout_minutes,
            start_date = scope.local_date("started"),
            wanted = keys.sql_predicate("activity_date"),
        ),
        Table::EventCounts => format!(
            "SELECT activity_date, source, type, event, COUNT(*) AS events, COUNT(DISTINCT user_key) AS users \
             FROM (SELECT activity_date, source, type, user_key, \
               CASE WHEN type = 'track' THEN COALESCE(event, '') \
                    WHEN type IN ('page', 'screen') THEN COALESCE(name, '') ELSE '' END AS event \
               FROM ({events})) \
             GROUP BY activity_date, source, type, event",
            events = range_events(keys),
        ),
        Table::Users => format!(
            "SELECT user_key AS user_id, source, MIN(event_time) AS first_seen, MAX(event_time) AS last_seen \
             FROM ({events}) WHERE identified GROUP BY user_key, source",
            events = scope.events(None),
        ),
    }
}

/// The table the steps that read a range of raw events share (daily activity, page views,
/// sessions, event counts): the run's events of `days`, stitched and deduplicated once, with
/// only the columns those steps use. Materialised by the run as [`RANGE_EVENTS`].
pub fn range_events_sql(scope: &Scope<'_>, days: &Dates) -> String {
    format!(
        "SELECT source, type, event, name, user_key, event_time, activity_date, \
         CASE WHEN type = 'page' THEN COALESCE(context_page_path, json_text(properties, 'path'), '(not set)') END \
         AS path FROM ({events})",
        events = scope.events(Some(days)),
    )
}

pub const RANGE_EVENTS: &str = "range_events";

/// The days a step reads from [`RANGE_EVENTS`], if it reads it.
pub fn range_event_days(table: Table, keys: &Dates) -> Option<Dates> {
    match table {
        Table::DailyUserActivity | Table::PageViews | Table::EventCounts => Some(keys.clone()),
        Table::Sessions => Some(keys.partition_dates()),
        _ => None,
    }
}

fn range_events(days: &Dates) -> String {
    format!("SELECT * FROM {RANGE_EVENTS} WHERE {}", days.sql_predicate("activity_date"))
}

/// Identify traits of identified users in the order they were sent, for the merge into
/// `users.traits` (done in Rust: SQL has no JSON object merge that Redshift and DataFusion share).
pub fn identify_traits_sql(scope: &Scope<'_>) -> String {
    format!(
        "SELECT user_key, source, traits FROM ({events}) \
         WHERE identified AND type = 'identify' AND traits IS NOT NULL \
         ORDER BY source, user_key, event_time, received_at",
        events = scope.events(None),
    )
}

fn next_month(date: NaiveDate) -> NaiveDate {
    let (year, month) = if date.month0() == 11 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MAX)
}

use chrono::Datelike;
