//! Gateway → lake on a local directory: files land in the partition of each event's hour, every
//! event exactly once, with its values; the watermark advances; the WAL is truncated behind.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestGateway, WEB_KEY, local_lake, read_lake};
use inlet_gateway::SystemClock;
use serde_json::{Value, json};

async fn wait_for_rows(store: &inlet_lake::LakeStore, rows: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_lake(store).await.len() < rows {
        assert!(Instant::now() < deadline, "timed out waiting for {rows} rows in the lake");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_in_their_hour_exactly_once_and_the_wal_is_truncated_behind() {
    let gateway = TestGateway::start_with(Arc::new(SystemClock), |c| {
        c.lake.max_age_secs = 1;
        c.wal.segment_bytes = 1024 * 1024;
    })
    .await;
    let lake_root = gateway.dir.path().join("lake");
    let lake = local_lake(gateway.dir.path()).await;
    // History through /v1/import (no sentAt: timestamps kept as sent), across an hour and a day.
    let times =
        ["2024-05-01T22:59:59.999Z", "2024-05-01T23:00:00Z", "2024-05-02T00:30:00+09:00", "2099-01-01T00:00:00Z"];
    let batch: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"type": "track", "event": "E", "userId": format!("u{i}"), "messageId": format!("hist-{i}"), "timestamp": t}))
        .collect();
    let response =
        gateway.post("/v1/import").basic_auth(WEB_KEY, Some("")).json(&json!({"batch": batch})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // And a stream of current events, in several requests (several flush ranges).
    for round in 0..5 {
        let batch: Vec<Value> = (0..200)
            .map(|i| json!({"type": if i % 2 == 0 { "page" } else { "track" }, "event": "Now", "anonymousId": "a", "messageId": format!("now-{round}-{i}"), "properties": {"blob": "x".repeat(500)}}))
            .collect();
        let response = gateway
            .post("/v1/batch")
            .basic_auth(WEB_KEY, Some(""))
            .json(&json!({"batch": batch}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    wait_for_rows(&lake, 1004).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let rows = read_lake(&lake).await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        *counts.entry(row.message_id.as_str()).or_default() += 1;
    }
    assert_eq!(rows.len(), 1004);
    assert!(counts.values().all(|&n| n == 1), "every event exactly once");
    let folder_of = |id: &str| {
        let row = rows.iter().find(|r| r.message_id == id).unwrap();
        row.key.rsplit_once('/').unwrap().0.to_owned()
    };
    assert_eq!(folder_of("hist-0"), "events/source=web/dt=2024-05-01/hour=22");
    assert_eq!(folder_of("hist-1"), "events/source=web/dt=2024-05-01/hour=23");
    assert_eq!(folder_of("hist-2"), "events/source=web/dt=2024-05-01/hour=15", "+09:00 is converted to UTC");
    assert!(!folder_of("hist-3").contains("2099"), "a far-future timestamp is partitioned by receivedAt");
    let hist0 = rows.iter().find(|r| r.message_id == "hist-0").unwrap();
    assert_eq!(hist0.timestamp_micros, 1_714_604_399_999_000);
    assert_eq!(hist0.message_type, "track");
    assert_eq!(hist0.user_id.as_deref(), Some("u0"));
    assert_eq!(hist0.source, "web");
    let file_names: Vec<&str> = rows.iter().map(|r| r.key.rsplit_once('/').unwrap().1).collect();
    assert!(file_names.iter().all(|n| n.ends_with(".parquet") && n.split('-').count() >= 3));

    // The watermark says everything acknowledged before it is in.
    let watermark_dir = lake_root.join("_inlet/watermarks");
    let watermark: Value = serde_json::from_slice(
        &std::fs::read(std::fs::read_dir(&watermark_dir).unwrap().next().unwrap().unwrap().path()).unwrap(),
    )
    .unwrap();
    assert_eq!(watermark["lsn"], 1004);
    // Everything is confirmed, so the WAL kept only its newest segment.
    assert_eq!(gateway.state.wal.cursor(inlet_lake_writer::LAKE_CONSUMER), Some(1004));
    assert_eq!(gateway.state.wal.segments(), 1);
    assert!(gateway.metric("inlet_lake_files_written_total") >= 5.0);
    assert_eq!(gateway.metric("inlet_lake_rows_written_total"), 1004.0);
    gateway.stop().await;
}

#[tokio::test]
async fn shutdown_flushes_what_is_left() {
    let mut gateway = TestGateway::start_with(Arc::new(SystemClock), |c| c.lake.max_age_secs = 3600).await;
    let lake = local_lake(gateway.dir.path()).await;
    let response = gateway
        .post("/v1/batch")
        .basic_auth(WEB_KEY, Some(""))
        .json(&json!({"batch": [{"type": "identify", "userId": "u", "messageId": "last-words"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(read_lake(&lake).await.is_empty(), "nothing flushes before max_age");
    gateway.begin_stop();
    gateway.finish_stop().await;
    let rows = read_lake(&lake).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message_id, "last-words");
}

#[tokio::test]
async fn a_lake_writer_that_stops_makes_the_gateway_unready() {
    let dir = tempfile::tempdir().unwrap();
    // The writer's state directory cannot be created: its first flush fails for good.
    std::fs::write(dir.path().join("lake-writer"), b"not a directory").unwrap();
    let mut config = common::test_config(dir.path());
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.lake.max_age_secs = 1;
    let gateway = TestGateway::start_in(dir, config, Arc::new(SystemClock), None).await;
    let body = json!({"batch": [{"type": "track", "event": "E", "userId": "u"}]});
    let response = gateway.post("/v1/batch").basic_auth(WEB_KEY, Some("")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "ingestion goes on into the WAL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The reason is on the admin listener; the public probe only says 503.
        let ready = gateway.client.get(format!("{}/readyz", gateway.admin_url)).send().await.unwrap();
        if ready.status() == 503 {
            let body: Value = ready.json().await.unwrap();
            assert!(body["message"].as_str().unwrap().contains("lake writer stopped"), "{body}");
            let public = gateway.client.get(format!("{}/readyz", gateway.url)).send().await.unwrap();
            assert_eq!(public.status(), 503);
            assert!(!public.text().await.unwrap().contains("lake"), "no internal detail on the public listener");
            break;
        }
        assert!(Instant::now() < deadline, "readiness should fail once the lake writer stops");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
