//! The two engines agree: one generated lake computed by DataFusion (published to PostgreSQL) and
//! by the warehouse engine (SQL inside PostgreSQL) gives the same tables, row for row, run day by
//! day with late events arriving between runs, and rebuilt with `--full`.
//!
//! The lake: three sources over eight days in Asia/Seoul; visitors who browse anonymously, then
//! log in (stitching) on one or two devices, aliases, identify traits set, changed and cleared,
//! client retries stored twice, calls around local midnight, sessions split by the timeout, and
//! events that arrive days late. Seeded, so a failure repeats.
//! Run by `tests/run.sh` (`--ignored`, it needs PostgreSQL).

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{event, fresh_schema, postgres_url, rows, write_lake};
use inlet_batch::config::{BatchConfig, Engine, WarehouseKind};
use inlet_batch::warehouse::engine::WarehouseEngine;
use inlet_batch::{Batch, RunRequest, Table};
use inlet_segment::StoredEvent;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const SOURCES: [&str; 3] = ["web", "ios", "android"];
const EVENTS: [&str; 4] = ["Case Viewed", "Post Liked", "Comment Added", "Search"];
const PATHS: [&str; 4] = ["/home", "/cases", "/cases/1", "/jobs"];

fn date(text: &str) -> chrono::NaiveDate {
    text.parse().expect("date")
}

/// Events of 2026-11-01 .. 11-08 (Seoul); `late`: those received after the first runs.
fn generated(seed: u64) -> (Vec<StoredEvent>, Vec<StoredEvent>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    let start: DateTime<Utc> = "2026-10-31T15:00:00Z".parse().expect("time");
    let mut id = 0;
    for member in 0..120 {
        let source = SOURCES[member % 3];
        let devices: Vec<String> = (0..rng.random_range(1..=2)).map(|d| format!("anon-{member}-{d}")).collect();
        let user = format!("user-{member}");
        // Members from 80 on never log in; the others log in on a day of the week.
        let login_day = if member < 80 { Some(rng.random_range(0..8)) } else { None };
        for day in 0..8 {
            if !rng.random_bool(0.55) {
                continue;
            }
            // Sessions start anywhere in the day, midnight included.
            let mut time = start + Duration::days(day) + Duration::seconds(rng.random_range(0..86_400));
            let device = &devices[rng.random_range(0..devices.len())];
            let logged_in = login_day.is_some_and(|d| day >= d);
            for call in 0..rng.random_range(1..8) {
                id += 1;
                // Mostly minutes apart; sometimes past the 30-minute timeout.
                time += Duration::seconds(if rng.random_bool(0.15) {
                    rng.random_range(1_900..4_000)
                } else {
                    rng.random_range(0..600)
                });
                let mut fields =
                    json!({"messageId": format!("m{id}"), "anonymousId": device, "timestamp": time.to_rfc3339()});
                if logged_in {
                    fields["userId"] = json!(user);
                }
                match rng.random_range(0..10) {
                    0..=3 => {
                        fields["type"] = json!("page");
                        fields["name"] = json!("Page");
                        let path = PATHS[rng.random_range(0..PATHS.len())];
                        if rng.random_bool(0.8) {
                            fields["context"] = json!({"page": {"path": path}});
                        } else {
                            fields["properties"] = json!({"path": path});
                        }
                    }
                    4..=7 => {
                        fields["type"] = json!(if source == "web" {
                            "track"
                        } else if rng.random_bool(0.5) {
                            "screen"
                        } else {
                            "track"
                        });
                        fields["event"] = json!(EVENTS[rng.random_range(0..EVENTS.len())]);
                        fields["name"] = json!("Feed");
                    }
                    8 if logged_in => {
                        fields["type"] = json!("identify");
                        let profession = ["doctor", "dentist", "dental hygienist"][rng.random_range(0..3)];
                        fields["traits"] = if rng.random_bool(0.2) {
                            json!({"profession": null, "name": format!("Member {member}")})
                        } else {
                            json!({"profession": profession, "plan": if call % 2 == 0 { "free" } else { "pro" }})
                        };
                    }
                    9 if logged_in && member % 7 == 0 => {
                        fields["type"] = json!("alias");
                        fields["previousId"] = json!(device);
                    }
                    _ => {
                        fields["type"] = json!("track");
                        fields["event"] = json!("Signed In");
                    }
                }
                let stored = checked(event(source, fields.clone()), id);
                if rng.random_bool(0.06) {
                    // Arrives two days later: a phone that was offline.
                    let mut delayed = fields.clone();
                    delayed["receivedAt"] = json!((time + Duration::days(2)).to_rfc3339());
                    late.push(checked(event(source, delayed), id));
                    continue;
                }
                on_time.push(stored);
                if rng.random_bool(0.05) {
                    // A client retry: stored again, received a little later.
                    let mut again = fields;
                    again["receivedAt"] = json!((time + Duration::seconds(90)).to_rfc3339());
                    on_time.push(checked(event(source, again), id));
                }
            }
        }
    }
    (on_time, late)
}

/// Some events broke their source's tracking plan, as the gateway records it: one violation,
/// two, or an unplanned event.
fn checked(mut stored: inlet_segment::StoredEvent, id: u64) -> inlet_segment::StoredEvent {
    let violation = |kind: &str, property: &str| json!({"kind": kind, "property": property, "message": "m"});
    let violations = match id % 11 {
        0 => json!([violation("type", "/price")]),
        3 => json!([violation("required", "/board"), violation("enum", "/plan")]),
        7 if stored.event.get("type").is_some_and(|t| t == "track") => json!([violation("unplanned_event", "")]),
        _ => return stored,
    };
    stored.tracking_plan = Some("observe".into());
    stored.violations = Some(violations);
    stored
}

fn config(lake: &std::path::Path, schema: &str, engine: Engine) -> BatchConfig {
    let mut config = BatchConfig {
        lake_url: lake.display().to_string(),
        time_zone: "Asia/Seoul".into(),
        lookback_days: 1,
        engine,
        ..Default::default()
    };
    config.trait_columns = vec!["name".into(), "profession".into(), "plan".into()];
    config.warehouse.kind = WarehouseKind::Postgres;
    config.warehouse.postgres_url = Some(postgres_url());
    config.warehouse.schema = schema.into();
    config
}

async fn run(config: &BatchConfig, from: &str, to: &str, full: bool) {
    let request = RunRequest {
        from: date(from),
        to: date(to),
        steps: Table::ALL.to_vec(),
        sources: None,
        full,
        update_state: true,
    };
    match config.engine {
        Engine::DataFusion => {
            let mut batch = Batch::open(config.clone()).await.expect("open");
            let plan = batch.plan(&request).await.expect("plan");
            batch.run(&plan, None, false).await.expect("run");
        }
        Engine::Warehouse => {
            let mut engine = WarehouseEngine::open(config.clone()).await.expect("open");
            let plan = engine.plan(&request).await.expect("plan");
            engine.run(&plan, None).await.expect("run");
        }
    }
}

/// Rows of `table` in one schema and not the other (multiset difference, both ways). `traits`
/// is compared as JSON: the engines write the same object with different spacing.
async fn differences(client: &tokio_postgres::Client, table: Table, left: &str, right: &str) -> Vec<String> {
    let columns: Vec<String> = table
        .columns(&["name".into(), "profession".into(), "plan".into()])
        .into_iter()
        .map(|c| if c.name == "traits" { "CAST(traits AS JSONB) AS traits".to_owned() } else { c.name })
        .collect();
    let select = |schema: &str| format!("SELECT {} FROM {schema}.{}", columns.join(", "), table.name());
    let mut out = Vec::new();
    for (a, b) in [(left, right), (right, left)] {
        for row in rows(client, &format!("{} EXCEPT ALL {}", select(a), select(b))).await {
            out.push(format!("{}: only in {a}: {row}", table.name()));
        }
    }
    out
}

async fn compare(client: &tokio_postgres::Client, when: &str) -> u64 {
    let mut all = Vec::new();
    let mut compared = 0;
    for table in Table::ALL {
        all.extend(differences(client, table, "eq_datafusion", "eq_warehouse").await);
        let count = rows(client, &format!("SELECT COUNT(*) FROM eq_warehouse.{}", table.name())).await;
        let count: u64 = count[0].parse().expect("count");
        assert!(count > 0 || table == Table::StickinessMonthly, "{when}: {} is empty", table.name());
        compared += count;
    }
    assert!(all.is_empty(), "{when}: the engines differ:\n{}", all.join("\n"));
    compared
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by tests/run.sh"]
async fn both_engines_compute_the_same_tables() {
    let lake = tempfile::tempdir().expect("tempdir");
    let (on_time, late) = generated(34);
    write_lake(lake.path(), "gw1", &on_time);
    let client = fresh_schema("eq_datafusion").await;
    fresh_schema("eq_warehouse").await;
    client.batch_execute("DROP SCHEMA IF EXISTS eq_warehouse_state CASCADE").await.expect("drop");
    let datafusion = config(lake.path(), "eq_datafusion", Engine::DataFusion);
    // The warehouse engine keeps its state in the warehouse; the other in the lake.
    let warehouse = config(lake.path(), "eq_warehouse", Engine::Warehouse);

    for day in ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"] {
        run(&datafusion, day, day, false).await;
        run(&warehouse, day, day, false).await;
    }
    let rows_day_by_day = compare(&client, "day by day").await;

    // Late events land in old days' partitions; the next runs find them by the lake's files.
    write_lake(lake.path(), "gw2-late", &late);
    for day in ["2026-11-07", "2026-11-08"] {
        run(&datafusion, day, day, false).await;
        run(&warehouse, day, day, false).await;
    }
    compare(&client, "after late events").await;

    run(&datafusion, "2026-11-01", "2026-11-08", true).await;
    run(&warehouse, "2026-11-01", "2026-11-08", true).await;
    let rebuilt = compare(&client, "rebuilt").await;

    // The comparison saw stitching and sessions, not only empty tables.
    let stitched = rows(&client, "SELECT COUNT(*) FROM eq_warehouse.identity_map").await;
    assert!(stitched[0].parse::<u64>().expect("count") >= 20, "{stitched:?}");
    let traits = rows(&client, "SELECT COUNT(*) FROM eq_warehouse.users WHERE traits IS NOT NULL").await;
    assert!(traits[0].parse::<u64>().expect("count") >= 10, "{traits:?}");
    eprintln!("{rows_day_by_day} rows equal day by day, {rebuilt} after the rebuild");
}
