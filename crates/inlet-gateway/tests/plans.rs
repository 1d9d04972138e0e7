//! Tracking plans at start and at ingestion, in-process: a broken plan stops the start with the
//! file, event and reason; the WAL record of each event carries the verdict of its source's plan.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{WEB_KEY, test_config};
use inlet_gateway::config::TrackingPlanConfig;
use inlet_gateway::{AppState, SystemClock};
use serde_json::json;

fn with_plan(dir: &std::path::Path, plan: &str, mode: &str) -> inlet_gateway::Config {
    let mut config = test_config(dir);
    set_plan(&mut config, dir, plan, mode);
    config
}

fn set_plan(config: &mut inlet_gateway::Config, dir: &std::path::Path, plan: &str, mode: &str) {
    let file = dir.join("plan.yaml");
    std::fs::write(&file, plan).unwrap();
    config.sources[0].tracking_plan =
        Some(TrackingPlanConfig { file, mode: serde_json::from_value(json!(mode)).unwrap() });
}

#[test]
fn a_broken_plan_stops_the_start_naming_the_file_the_event_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = with_plan(dir.path(), "events:\n  Post Viewed:\n    type: strnig\n", "block");
    let error = AppState::open(config, Arc::new(SystemClock)).unwrap_err().to_string();
    assert!(error.contains("plan.yaml: event \"Post Viewed\""), "{error}");
    assert!(error.contains("strnig"), "{error}");
    assert!(!dir.path().join("wal").exists(), "nothing is opened before the plans compile");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_stored_record_carries_its_plans_verdict() {
    let plans = tempfile::tempdir().unwrap();
    let plan = "allow_unplanned_events: false\nevents:\n  Post Viewed:\n    type: object\n    required: [post_id]\n";
    let gateway = common::TestGateway::start_with(Arc::new(SystemClock), |config| {
        set_plan(config, plans.path(), plan, "block");
    })
    .await;
    let batch = json!({"batch": [
        {"type": "track", "userId": "u", "event": "Post Viewed", "properties": {"post_id": "p"}, "messageId": "ok"},
        {"type": "track", "userId": "u", "event": "Post Viewed", "properties": {}, "messageId": "missing"},
        {"type": "track", "userId": "u", "event": "Other", "messageId": "unplanned"},
        {"type": "alias", "userId": "u", "previousId": "a", "messageId": "alias"},
    ]});
    let response = gateway.post("/v1/batch").basic_auth(WEB_KEY, Some("")).json(&batch).send().await.unwrap();
    assert_eq!(response.status(), 200, "blocked events are still answered 200");
    let records = gateway.stored();
    let verdict = |id: &str| {
        let record = records.iter().find(|r| r.message_id() == Some(id)).unwrap();
        (record.tracking_plan.clone().map(serde_json::Value::String), record.violations.clone())
    };
    assert_eq!(verdict("ok"), (None, None));
    assert_eq!(verdict("alias"), (None, None), "alias is never checked");
    let (mode, violations) = verdict("missing");
    assert_eq!(mode, Some(json!("block")));
    assert_eq!(violations.unwrap()[0]["property"], "/post_id");
    assert_eq!(verdict("unplanned").1.unwrap()[0]["kind"], "unplanned_event");
    assert_eq!(gateway.metric("inlet_tracking_plan_events_total{outcome=\"blocked\",source=\"web\"}"), 2.0);
    assert_eq!(gateway.metric("inlet_tracking_plan_events_total{outcome=\"valid\",source=\"web\"}"), 2.0);
    gateway.stop().await;
}
