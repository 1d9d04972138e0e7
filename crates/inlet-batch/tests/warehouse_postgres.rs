//! A crafted event set whose every metric is computed by hand, run through the batch job into a
//! real PostgreSQL (started by `tests/run.sh`, which runs these `--ignored` tests).
//!
//! Reporting time zone Asia/Seoul (UTC+9). Days: D1 = 2026-11-02 (a Monday), D2 = 11-03,
//! D3 = 11-04. Source `web` unless said:
//!
//! | id  | Seoul time  | call                                   | user key |
//! |-----|-------------|----------------------------------------|----------|
//! | m1  | D1 10:00    | page Home /home, anon a1               | u1 (stitched) |
//! | m2  | D1 10:10    | page Pricing /pricing, anon a1         | u1 |
//! | m3  | D2 09:05    | identify a1+u1 {name, profession}      | u1 — logs in mid-day |
//! | m4  | D2 09:05:10 | track Signed In, a1+u1                 | u1 |
//! | m5  | D2 15:00    | page Cases /cases, a1+u1               | u1 |
//! | m6  | D2 01:30    | track Post Viewed, u2 — 16:30 UTC on D1, so UTC partition 11-02; stored twice | u2 |
//! | m7  | D2 01:31    | identify u2 {profession, plan}         | u2 |
//! | m8  | D3 12:00    | page Cases, path only in properties, u2| u2 |
//! | m9  | D3 12:01    | identify u2 {name, plan: null}         | u2 |
//! | m10 | D1 20:00    | page Home /home, anon a3 — late: received D3, added after the first run | a3 |
//! | m11 | D3 09:00    | track Case Shared, anon a5             | u5 (alias) |
//! | m12 | D3 09:01    | alias a5 → u5                          | u5 |
//! | m14 | D3 08:00    | `app`: screen Feed, dev-1+u1           | u1 |
//! | m15 | D3 08:25    | `app`: screen Feed, dev-1+u1           | u1 |
//! | m16 | 11-09 10:00 | page /home, a1+u1 (second week)        | u1 |

mod common;

use common::{event, fresh_schema, postgres_url, rows, write_lake};
use inlet_batch::config::{BatchConfig, WarehouseKind};
use inlet_batch::{Batch, RunRequest, Table};
use serde_json::json;

fn date(text: &str) -> chrono::NaiveDate {
    text.parse().expect("date")
}

fn config(lake: &std::path::Path, schema: &str) -> BatchConfig {
    let mut config =
        BatchConfig { lake_url: lake.display().to_string(), time_zone: "Asia/Seoul".into(), ..Default::default() };
    config.trait_columns = vec!["name".into(), "profession".into()];
    config.warehouse.kind = WarehouseKind::Postgres;
    config.warehouse.postgres_url = Some(postgres_url());
    config.warehouse.schema = schema.into();
    config
}

fn first_events() -> Vec<inlet_segment::StoredEvent> {
    let page = |path: &str, title: &str| json!({"page": {"path": path, "title": title}});
    vec![
        event(
            "web",
            json!({"messageId": "m1", "type": "page", "name": "Home", "anonymousId": "a1",
            "timestamp": "2026-11-02T01:00:00Z", "context": page("/home", "Home")}),
        ),
        event(
            "web",
            json!({"messageId": "m2", "type": "page", "name": "Pricing", "anonymousId": "a1",
            "timestamp": "2026-11-02T01:10:00Z", "context": page("/pricing", "Pricing")}),
        ),
        event(
            "web",
            json!({"messageId": "m3", "type": "identify", "anonymousId": "a1", "userId": "u1",
            "traits": {"name": "Dr. Kim", "profession": "dentist"}, "timestamp": "2026-11-03T00:05:00Z"}),
        ),
        with_violations(
            event(
                "web",
                json!({"messageId": "m4", "type": "track", "event": "Signed In", "anonymousId": "a1",
                "userId": "u1", "timestamp": "2026-11-03T00:05:10Z"}),
            ),
            json!([{"kind": "unplanned_event", "property": "", "message": "not planned"}]),
        ),
        event(
            "web",
            json!({"messageId": "m5", "type": "page", "name": "Cases", "anonymousId": "a1", "userId": "u1",
            "timestamp": "2026-11-03T06:00:00Z", "context": page("/cases", "Cases")}),
        ),
        with_violations(
            event(
                "web",
                json!({"messageId": "m6", "type": "track", "event": "Post Viewed", "userId": "u2",
                "timestamp": "2026-11-02T16:30:00Z"}),
            ),
            post_viewed_violations(),
        ),
        event(
            "web",
            json!({"messageId": "m7", "type": "identify", "userId": "u2",
            "traits": {"profession": "dental hygienist", "plan": "free"}, "timestamp": "2026-11-02T16:31:00Z"}),
        ),
        event(
            "web",
            json!({"messageId": "m8", "type": "page", "name": "Cases", "userId": "u2",
            "properties": {"path": "/cases"}, "timestamp": "2026-11-04T03:00:00Z"}),
        ),
        event(
            "web",
            json!({"messageId": "m9", "type": "identify", "userId": "u2",
            "traits": {"name": "Lee", "plan": null}, "timestamp": "2026-11-04T03:01:00Z"}),
        ),
        event(
            "web",
            json!({"messageId": "m11", "type": "track", "event": "Case Shared", "anonymousId": "a5",
            "timestamp": "2026-11-04T00:00:00Z"}),
        ),
        event(
            "web",
            json!({"messageId": "m12", "type": "alias", "previousId": "a5", "anonymousId": "a5",
            "userId": "u5", "timestamp": "2026-11-04T00:01:00Z"}),
        ),
        event(
            "app",
            json!({"messageId": "m14", "type": "screen", "name": "Feed", "anonymousId": "dev-1",
            "userId": "u1", "timestamp": "2026-11-03T23:00:00Z"}),
        ),
        event(
            "app",
            json!({"messageId": "m15", "type": "screen", "name": "Feed", "anonymousId": "dev-1",
            "userId": "u1", "timestamp": "2026-11-03T23:25:00Z"}),
        ),
    ]
}

/// The duplicate of m6 a client retry stored again (received later, another file).
fn duplicate() -> Vec<inlet_segment::StoredEvent> {
    let copy = event(
        "web",
        json!({"messageId": "m6", "type": "track", "event": "Post Viewed", "userId": "u2",
        "timestamp": "2026-11-02T16:30:02Z", "receivedAt": "2026-11-02T16:31:30Z"}),
    );
    vec![with_violations(copy, post_viewed_violations())]
}

/// What the source's tracking plan (in `observe` mode) found in an event.
fn with_violations(
    mut stored: inlet_segment::StoredEvent,
    violations: serde_json::Value,
) -> inlet_segment::StoredEvent {
    stored.tracking_plan = Some("observe".into());
    stored.violations = Some(violations);
    stored
}

fn post_viewed_violations() -> serde_json::Value {
    json!([
        {"kind": "enum", "property": "/board", "message": "not one of the boards"},
        {"kind": "required", "property": "/post_id", "message": "post_id is required"},
    ])
}

fn late_event() -> Vec<inlet_segment::StoredEvent> {
    vec![event(
        "web",
        json!({"messageId": "m10", "type": "page", "name": "Home", "anonymousId": "a3",
        "timestamp": "2026-11-02T11:00:00Z", "receivedAt": "2026-11-04T05:00:00Z",
        "context": {"page": {"path": "/home"}}}),
    )]
}

async fn run(config: &BatchConfig, from: &str, to: &str, steps: &[Table]) {
    run_sources(config, from, to, steps, None).await;
}

async fn run_sources(config: &BatchConfig, from: &str, to: &str, steps: &[Table], sources: Option<&[&str]>) {
    let mut batch = Batch::open(config.clone()).await.expect("open");
    let sources: Option<Vec<String>> = sources.map(|s| s.iter().map(|s| s.to_string()).collect());
    let request =
        RunRequest { from: date(from), to: date(to), steps: steps.to_vec(), sources, full: false, update_state: true };
    let plan = batch.plan(&request).await.expect("plan");
    batch.run(&plan, request.sources.as_deref(), false).await.expect("run");
}

/// Every table, sorted, as text: what a dashboard could see.
async fn snapshot(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let mut all = Vec::new();
    for table in Table::ALL {
        let name = table.name();
        for row in rows(client, &format!("SELECT * FROM {schema}.{name} ORDER BY 1, 2, 3")).await {
            all.push(format!("{name}: {row}"));
        }
    }
    all.sort();
    all
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by tests/run.sh"]
async fn crafted_events_give_the_hand_computed_metrics() {
    let lake = tempfile::tempdir().expect("tempdir");
    let schema = "crafted";
    let config = config(lake.path(), schema);
    let client = fresh_schema(schema).await;
    write_lake(lake.path(), "gw1", &first_events());
    write_lake(lake.path(), "gw2", &duplicate());

    // First run: D1..D2, lookback 0 as configured below; the late event has not arrived yet.
    let mut first = config.clone();
    first.lookback_days = 0;
    run(&first, "2026-11-02", "2026-11-03", &Table::ALL).await;
    assert_eq!(
        rows(&client, &format!("SELECT activity_date, source, dau, wau, mau FROM {schema}.active_users ORDER BY 1, 2"))
            .await,
        ["2026-11-02|web|1|1|1", "2026-11-03|web|2|2|2"],
        "before the late event, D1 has only u1"
    );

    // The late event lands in D1's partition; the D3 run's lookback of 2 days recomputes D1.
    write_lake(lake.path(), "gw1-late", &late_event());
    run(&config, "2026-11-04", "2026-11-04", &Table::ALL).await;

    let q = |sql: &str| sql.replace("{s}", schema);
    assert_eq!(
        rows(&client, &q("SELECT anonymous_id, user_id, first_seen FROM {s}.identity_map ORDER BY 1")).await,
        ["a1|u1|2026-11-03 00:05:00", "a5|u5|2026-11-04 00:01:00", "dev-1|u1|2026-11-03 23:00:00"],
        "a5 is first linked to u5 by the alias call"
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT activity_date, source, user_key, events, page_views, first_seen_date \
            FROM {s}.daily_user_activity ORDER BY 1, 2, 3")
        )
        .await,
        [
            "2026-11-02|web|a3|1|1|2026-11-02",
            "2026-11-02|web|u1|2|2|2026-11-02",
            "2026-11-03|web|u1|2|1|2026-11-02",
            "2026-11-03|web|u2|1|0|2026-11-03",
            "2026-11-04|app|u1|2|0|2026-11-04",
            "2026-11-04|web|u2|1|1|2026-11-03",
            "2026-11-04|web|u5|1|0|2026-11-04",
        ]
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT activity_date, source, dau, wau, mau, round(stickiness::numeric, 4) \
            FROM {s}.active_users ORDER BY 1, 2")
        )
        .await,
        [
            "2026-11-02|web|2|2|2|1.0000",
            "2026-11-03|web|2|3|3|0.6667",
            "2026-11-04|app|1|1|1|1.0000",
            "2026-11-04|web|2|4|4|0.5000",
        ]
    );
    assert_eq!(
        rows(&client, &q("SELECT month, source, mau FROM {s}.monthly_active_users ORDER BY 1, 2")).await,
        ["2026-11-01|app|1", "2026-11-01|web|4"]
    );
    assert_eq!(
        rows(&client, &q("SELECT activity_date, source, new_users, returning_users FROM {s}.new_users ORDER BY 1, 2"))
            .await,
        ["2026-11-02|web|2|0", "2026-11-03|web|1|1", "2026-11-04|app|1|0", "2026-11-04|web|1|1"]
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT cohort_date, source, day_number, cohort_size, retained_users, \
            round(retention_rate::numeric, 2) FROM {s}.retention ORDER BY 1, 2, 3")
        )
        .await,
        [
            "2026-11-02|web|0|2|2|1.00",
            "2026-11-02|web|1|2|1|0.50",
            "2026-11-02|web|2|2|0|0.00",
            "2026-11-03|web|0|1|1|1.00",
            "2026-11-03|web|1|1|1|1.00",
            "2026-11-04|app|0|1|1|1.00",
            "2026-11-04|web|0|1|1|1.00",
        ],
        "cells after the last computed day (2026-11-04) are absent"
    );
    assert!(
        rows(&client, &q("SELECT * FROM {s}.retention_weekly")).await.is_empty(),
        "week 0 of the week of 11-02 ends 11-08: not observable yet"
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT activity_date, source, path, page_views, unique_visitors FROM {s}.page_views ORDER BY 1, 2, 3")
        )
        .await,
        [
            "2026-11-02|web|/home|2|2",
            "2026-11-02|web|/pricing|1|1",
            "2026-11-03|web|/cases|1|1",
            "2026-11-04|web|/cases|1|1",
        ]
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT activity_date, source, sessions, round(avg_session_seconds::numeric, 1), \
            round(bounce_rate::numeric, 2) FROM {s}.sessions ORDER BY 1, 2")
        )
        .await,
        [
            "2026-11-02|web|2|300.0|0.50",
            "2026-11-03|web|3|0.0|1.00",
            "2026-11-04|app|1|1500.0|0.00",
            "2026-11-04|web|2|0.0|1.00",
        ]
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT activity_date, source, type, event, events, users FROM {s}.event_counts ORDER BY 1, 2, 3, 4")
        )
        .await,
        [
            "2026-11-02|web|page|Home|2|2",
            "2026-11-02|web|page|Pricing|1|1",
            "2026-11-03|web|identify||2|2",
            "2026-11-03|web|page|Cases|1|1",
            "2026-11-03|web|track|Post Viewed|1|1",
            "2026-11-03|web|track|Signed In|1|1",
            "2026-11-04|app|screen|Feed|2|1",
            "2026-11-04|web|alias||1|1",
            "2026-11-04|web|identify||1|1",
            "2026-11-04|web|page|Cases|1|1",
            "2026-11-04|web|track|Case Shared|1|1",
        ],
        "m6 was stored twice and counts once"
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT activity_date, source, event, property, kind, events FROM {s}.tracking_plan_violations ORDER BY 1, 2, 3, 4")
        )
        .await,
        [
            "2026-11-03|web|Post Viewed|/board|enum|1",
            "2026-11-03|web|Post Viewed|/post_id|required|1",
            "2026-11-03|web|Signed In||unplanned_event|1",
        ],
        "each call's violations once, m6's duplicate included"
    );
    assert_eq!(
        rows(
            &client,
            &q("SELECT user_id, source, first_seen, last_seen, traits, name, profession FROM {s}.users ORDER BY 2, 1")
        )
        .await,
        [
            "u1|app|2026-11-03 23:00:00|2026-11-03 23:25:00|NULL|NULL|NULL",
            r#"u1|web|2026-11-02 01:00:00|2026-11-03 06:00:00|{"name":"Dr. Kim","profession":"dentist"}|Dr. Kim|dentist"#,
            r#"u2|web|2026-11-02 16:30:00|2026-11-04 03:01:00|{"name":"Lee","profession":"dental hygienist"}|Lee|dental hygienist"#,
            "u5|web|2026-11-04 00:00:00|2026-11-04 00:01:00|NULL|NULL|NULL",
        ],
        "u1's anonymous visits on D1 count from first_seen; u2's plan was cleared by null"
    );
    // Users can be sliced by a trait without a hand-written join on user ids.
    assert_eq!(
        rows(
            &client,
            &q("SELECT u.profession, count(*) FROM {s}.daily_user_activity a JOIN {s}.users u \
            ON u.user_id = a.user_key AND u.source = a.source WHERE u.profession IS NOT NULL GROUP BY 1 ORDER BY 1")
        )
        .await,
        ["dental hygienist|2", "dentist|2"]
    );

    // The metrics files are there for Spectrum and Athena.
    for table in Table::ALL {
        let folder = lake.path().join("metrics").join(table.name());
        let files = std::fs::read_dir(&folder).map(|d| d.count()).unwrap_or(0);
        assert!(files > 0 || table == Table::RetentionWeekly, "{} has no files", table.name());
    }

    // Re-running the same range changes nothing.
    let before = snapshot(&client, schema).await;
    run(&config, "2026-11-04", "2026-11-04", &Table::ALL).await;
    run(&config, "2026-11-02", "2026-11-04", &Table::ALL).await;
    assert_eq!(snapshot(&client, schema).await, before, "re-runs are idempotent");

    // One step alone reads the earlier steps' output: wipe active_users and rebuild it only.
    client.batch_execute(&q("DELETE FROM {s}.active_users")).await.expect("delete");
    std::fs::remove_dir_all(lake.path().join("metrics/active_users")).expect("remove files");
    run(&config, "2026-11-04", "2026-11-04", &[Table::ActiveUsers]).await;
    assert_eq!(snapshot(&client, schema).await, before, "active_users rebuilt from daily_user_activity files");

    // One source alone replaces only its own rows.
    client.batch_execute(&q("DELETE FROM {s}.sessions WHERE source = 'app'")).await.expect("delete");
    run_sources(&config, "2026-11-04", "2026-11-04", &Table::ALL, Some(&["app"])).await;
    assert_eq!(snapshot(&client, schema).await, before, "--source app rebuilt app's rows and kept web's");

    // A second week: u1 returns on 11-09. daily_user_activity and retention_weekly alone.
    write_lake(
        lake.path(),
        "gw1-week2",
        &[event(
            "web",
            json!({"messageId": "m16", "type": "page", "anonymousId": "a1",
        "userId": "u1", "timestamp": "2026-11-09T01:00:00Z", "context": {"page": {"path": "/home"}}}),
        )],
    );
    run(&config, "2026-11-09", "2026-11-09", &[Table::DailyUserActivity, Table::RetentionWeekly]).await;
    assert_eq!(
        rows(
            &client,
            &q("SELECT cohort_week, source, week_number, cohort_size, retained_users, \
            round(retention_rate::numeric, 2) FROM {s}.retention_weekly ORDER BY 1, 2, 3")
        )
        .await,
        ["2026-11-02|app|0|1|1|1.00", "2026-11-02|web|0|4|4|1.00"],
        "week 0 (11-02..11-08) is complete once 11-09 is computed; week 1 is not"
    );
}
