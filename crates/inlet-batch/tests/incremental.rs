//! The state's promise: running day by day, as the daily schedule does, while events arrive
//! late, duplicated, across midnight and stitched after the fact, gives the same tables as one
//! rebuild of the whole lake. Random event streams (proptest) over three time zones, one of
//! them with a half-hour offset.

mod common;

use std::path::Path;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use common::{event, write_lake};
use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use inlet_batch::{Batch, BatchConfig, RunRequest, Table};
use proptest::prelude::*;
use serde_json::{Value, json};

const DAYS: i64 = 4;
const ZONES: [&str; 3] = ["Asia/Seoul", "UTC", "Asia/Kolkata"];

/// One call of the stream: when it happened, the day (index) it reaches the lake, and what it is.
#[derive(Debug, Clone)]
struct Call {
    minute: i64,
    arrives: i64,
    source: usize,
    person: usize,
    logged_in: bool,
    kind: u8,
    value: u8,
    copies: usize,
}

fn call() -> impl Strategy<Value = Call> {
    (0..DAYS * 24 * 60, 0..5i64, 0..2usize, 0..6usize, any::<bool>(), 0..10u8, 0..4u8, 1..3usize).prop_map(
        |(minute, delay, source, person, logged_in, kind, value, copies)| Call {
            minute,
            // Most calls arrive the day they happen; some one or two days late.
            arrives: match delay {
                3 => 1,
                4 => 2,
                _ => 0,
            },
            source,
            person,
            logged_in,
            kind,
            value,
            copies,
        },
    )
}

fn first_day() -> NaiveDate {
    "2026-10-01".parse().expect("date")
}

/// The stored events of a call (a duplicate keeps its message id), and the day index it arrives.
fn events(index: usize, call: &Call, zone: chrono_tz::Tz) -> (i64, Vec<inlet_segment::StoredEvent>) {
    let midnight = zone.from_local_datetime(&first_day().and_hms_opt(0, 0, 0).expect("time")).earliest().expect("zone");
    let time = midnight.with_timezone(&Utc) + Duration::minutes(call.minute);
    let happened = call.minute / (24 * 60);
    let arrives = (happened + call.arrives).min(DAYS - 1);
    let received = if arrives > happened { time + Duration::days(arrives - happened) } else { time };
    let source = ["web", "app"][call.source];
    // People 0..3 log in at some point; 4 and 5 stay anonymous. Person 3 has a second device
    // joined by an alias.
    let anonymous =
        if call.person == 3 && call.value % 2 == 1 { "device-3b".to_owned() } else { format!("anon-{}", call.person) };
    let user = (call.person < 4 && call.logged_in).then(|| format!("user-{}", call.person));
    let mut body = match call.kind {
        0..=3 => json!({"type": "page", "name": "Home", "context": {"page": {"path": format!("/p{}", call.value)}}}),
        4..=6 => json!({"type": "track", "event": format!("Event {}", call.value)}),
        7 => json!({"type": "screen", "name": "Feed"}),
        8 => {
            let plan = if call.value == 0 { Value::Null } else { json!(format!("plan-{}", call.value)) };
            let profession = ["doctor", "dentist"][usize::from(call.value % 2)];
            json!({"type": "identify", "traits": {"plan": plan, "profession": profession}})
        }
        _ => json!({"type": "alias", "previousId": "device-3b", "userId": "user-3"}),
    };
    let object = body.as_object_mut().expect("object");
    object.insert("messageId".into(), json!(format!("m{index}")));
    object.insert("anonymousId".into(), json!(anonymous));
    if let Some(user) = user {
        object.entry("userId").or_insert(json!(user));
    }
    object.insert("timestamp".into(), json!(time.to_rfc3339()));
    object.insert("receivedAt".into(), json!(received.to_rfc3339()));
    let stored = event(source, body);
    (arrives, vec![stored; call.copies])
}

fn config(lake: &Path, zone: &str) -> BatchConfig {
    BatchConfig {
        lake_url: lake.display().to_string(),
        time_zone: zone.into(),
        lookback_days: 0,
        trait_columns: vec!["plan".into(), "profession".into()],
        ..Default::default()
    }
}

async fn run(lake: &Path, zone: &str, from: NaiveDate, to: NaiveDate, full: bool) {
    let mut batch = Batch::open(config(lake, zone)).await.expect("open");
    let request = RunRequest { from, to, steps: Table::ALL.to_vec(), sources: None, full, update_state: true };
    let plan = batch.plan(&request).await.expect("plan");
    batch.run(&plan, None, false).await.expect("run");
}

/// Every row of a metrics table as text, doubles to 9 places, sorted.
async fn table_rows(lake: &Path, table: Table) -> Vec<String> {
    let folder = lake.join("metrics").join(table.name());
    if !folder.exists() {
        return Vec::new();
    }
    let ctx = SessionContext::new();
    let frame = ctx
        .read_parquet(format!("{}/", folder.display()), ParquetReadOptions::default())
        .await
        .expect("read the table");
    let mut rows = Vec::new();
    for batch in frame.collect().await.expect("rows") {
        let options = FormatOptions::default().with_null("NULL");
        let formatters: Vec<_> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter")).collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| match column.data_type() {
                    DataType::Float64 => {
                        let values = column.as_any().downcast_ref::<Float64Array>().expect("f64");
                        if values.is_null(row) { "NULL".into() } else { format!("{:.9}", values.value(row)) }
                    }
                    _ => formatter.value(row).to_string(),
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

fn check(calls: &[Call], zone: &str) -> Result<(), TestCaseError> {
    let tz: chrono_tz::Tz = zone.parse().expect("zone");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (daily, whole) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let stored: Vec<(i64, Vec<inlet_segment::StoredEvent>)> =
        calls.iter().enumerate().map(|(i, c)| events(i, c, tz)).collect();
    let last = first_day() + Duration::days(DAYS - 1);
    runtime.block_on(async {
        for day in 0..DAYS {
            // What reached the lake by this day's run: one flush per arrival day, duplicates in
            // a flush of their own.
            let arrived: Vec<_> = stored.iter().filter(|(a, _)| *a == day).collect();
            let firsts: Vec<_> = arrived.iter().map(|(_, e)| e[0].clone()).collect();
            let copies: Vec<_> = arrived.iter().flat_map(|(_, e)| e.iter().skip(1).cloned()).collect();
            for lake in [daily.path(), whole.path()] {
                write_lake(lake, &format!("day{day}"), &firsts);
                write_lake(lake, &format!("dup{day}"), &copies);
            }
            let date = first_day() + Duration::days(day);
            run(daily.path(), zone, date, date, false).await;
        }
        run(whole.path(), zone, first_day(), last, true).await;
        for table in Table::ALL {
            let (by_day, rebuilt) = (table_rows(daily.path(), table).await, table_rows(whole.path(), table).await);
            prop_assert_eq!(by_day, rebuilt, "{} in {}", table.name(), zone);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn day_by_day_equals_one_rebuild(calls in prop::collection::vec(call(), 10..60), zone in 0..ZONES.len()) {
        check(&calls, ZONES[zone])?;
    }
}

/// Unbounded retention changes with activity long after a cohort's first 30 days are past:
/// a user first seen on day 0, back on day 4 and again on day 40 is retained "on or after" days
/// 5–30 only once day 40 is run. The daily runs must update that old cohort as a rebuild would.
#[test]
fn late_activity_updates_an_old_cohorts_unbounded_retention() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (daily, whole) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let visit = |day: i64, id: &str| {
        let time = Utc.from_utc_datetime(&first_day().and_hms_opt(10, 0, 0).expect("time")) + Duration::days(day);
        event("web", json!({"messageId": id, "type": "page", "anonymousId": "a1", "timestamp": time.to_rfc3339()}))
    };
    runtime.block_on(async {
        for (day, id) in [(0, "m0"), (4, "m4"), (40, "m40")] {
            for lake in [daily.path(), whole.path()] {
                write_lake(lake, id, &[visit(day, id)]);
            }
            let date = first_day() + Duration::days(day);
            run(daily.path(), "UTC", date, date, false).await;
        }
        run(whole.path(), "UTC", first_day(), first_day() + Duration::days(40), true).await;
        let (by_day, rebuilt) =
            (table_rows(daily.path(), Table::Retention).await, table_rows(whole.path(), Table::Retention).await);
        assert_eq!(by_day, rebuilt);
        let day_30 = rebuilt.iter().find(|r| r.starts_with("2026-10-01|web|30|")).expect("day 30 of the first cohort");
        assert!(day_30.ends_with("|0|0.000000000|1|1.000000000"), "retained on or after day 30: {day_30}");
    });
}
