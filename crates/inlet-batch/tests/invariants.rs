//! A generated week (sessions from a skewed population, three sources, identify calls that
//! stitch anonymous visits) run through every step into PostgreSQL, then cross-checked: the
//! tables must agree with each other and with their definitions. Complements the hand-computed
//! crafted set with volume and variety. Run by `tests/run.sh` (needs PostgreSQL).

mod common;

#[allow(dead_code)]
#[path = "../examples/generate_lake.rs"]
mod generate;

use common::{fresh_schema, postgres_url, rows};
use inlet_batch::config::{BatchConfig, WarehouseKind};
use inlet_batch::{Batch, RunRequest, Table};

#[tokio::test]
#[ignore = "needs PostgreSQL: run by tests/run.sh"]
async fn generated_events_give_consistent_tables() {
    let lake = tempfile::tempdir().expect("tempdir");
    let first: chrono::NaiveDate = "2026-10-01".parse().expect("date");
    for day in 0..7 {
        generate::write_day(lake.path(), first + chrono::Duration::days(day), day as u64, 6_000, 3_000);
    }
    let mut config = BatchConfig {
        lake_url: lake.path().display().to_string(),
        time_zone: "Asia/Seoul".into(),
        ..Default::default()
    };
    config.warehouse.kind = WarehouseKind::Postgres;
    config.warehouse.postgres_url = Some(postgres_url());
    config.warehouse.schema = "generated".into();
    let client = fresh_schema("generated").await;

    let mut batch = Batch::open(config).await.expect("open");
    // Through the day after the last UTC day, so every event is inside the computed days.
    let request = RunRequest {
        from: first,
        to: first + chrono::Duration::days(7),
        steps: Table::ALL.to_vec(),
        sources: None,
        full: false,
        update_state: true,
    };
    let plan = batch.plan(&request).await.expect("plan");
    batch.run(&plan, None, false).await.expect("run");

    let count = |sql: &'static str| {
        let client = &client;
        async move { rows(client, sql).await.first().cloned().unwrap_or_default() }
    };
    let active_rows = count("SELECT count(*) FROM generated.daily_user_activity").await;
    assert!(active_rows.parse::<u64>().expect("count") > 1_000, "enough data to mean something: {active_rows}");
    let checks = [
        (
            "first_seen_date is the user's first active day",
            "SELECT count(*) FROM generated.daily_user_activity d JOIN (SELECT source, user_key, min(activity_date) m \
             FROM generated.daily_user_activity GROUP BY 1, 2) x USING (source, user_key) WHERE d.first_seen_date <> x.m",
        ),
        (
            "no anonymous id that identity_map maps is left as a user key",
            "SELECT count(*) FROM generated.daily_user_activity d JOIN generated.identity_map m ON m.anonymous_id = d.user_key",
        ),
        (
            "dau is the day's rows of daily_user_activity, and dau <= wau <= mau",
            "SELECT count(*) FROM generated.active_users a LEFT JOIN (SELECT activity_date, source, count(*) n \
             FROM generated.daily_user_activity GROUP BY 1, 2) d USING (activity_date, source) \
             WHERE a.dau <> coalesce(d.n, 0) OR a.dau > a.wau OR a.wau > a.mau OR a.stickiness <> a.dau::float / a.mau",
        ),
        (
            "new + returning = dau",
            "SELECT count(*) FROM generated.new_users n JOIN generated.active_users a USING (activity_date, source) \
             WHERE n.new_users + n.returning_users <> a.dau",
        ),
        (
            "a day's cohort is its new users, all retained on day 0, never more than the cohort later",
            "SELECT count(*) FROM generated.retention r LEFT JOIN generated.new_users n \
             ON n.activity_date = r.cohort_date AND n.source = r.source \
             WHERE r.cohort_size <> n.new_users OR (r.day_number = 0 AND r.retained_users <> r.cohort_size) \
             OR r.retained_users > r.cohort_size",
        ),
        (
            "page views add up to the page calls in daily_user_activity",
            "SELECT count(*) FROM (SELECT activity_date, source, sum(page_views) p FROM generated.page_views GROUP BY 1, 2) v \
             FULL JOIN (SELECT activity_date, source, sum(page_views) p FROM generated.daily_user_activity GROUP BY 1, 2) d \
             USING (activity_date, source) WHERE coalesce(v.p, 0) <> coalesce(d.p, 0)",
        ),
        (
            "track/page/screen counts add up to the events in daily_user_activity",
            "SELECT count(*) FROM (SELECT activity_date, source, sum(events) e FROM generated.event_counts \
             WHERE type IN ('track', 'page', 'screen') GROUP BY 1, 2) c FULL JOIN (SELECT activity_date, source, \
             sum(events) e FROM generated.daily_user_activity GROUP BY 1, 2) d USING (activity_date, source) \
             WHERE coalesce(c.e, 0) <> coalesce(d.e, 0)",
        ),
        (
            "every identified user key active in the week is in users",
            "SELECT count(*) FROM (SELECT DISTINCT source, user_key FROM generated.daily_user_activity \
             WHERE user_key LIKE 'user-%') d LEFT JOIN generated.users u ON u.user_id = d.user_key AND u.source = d.source \
             WHERE u.user_id IS NULL",
        ),
        (
            "sessions are at least one per session-starting user and bounce rates are shares",
            "SELECT count(*) FROM generated.sessions WHERE sessions < 1 OR bounce_rate < 0 OR bounce_rate > 1 \
             OR avg_session_seconds < 0",
        ),
    ];
    for (what, sql) in checks {
        assert_eq!(count(sql).await, "0", "{what}");
    }
}
