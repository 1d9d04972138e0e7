//! Live delivery from a real WAL: a destination that is down keeps its backlog within
//! `max_backlog_bytes` by dead-lettering the oldest events, and no event is lost on the way;
//! a restart resumes from the saved cursor without re-sending what was delivered.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use inlet_destinations::{
    DeadLetterStore, Delivery, DeliveryParts, Destination, DestinationConfig, DestinationMetrics, DestinationStatus,
    consumer_name,
};
use inlet_lake::{LakeLocation, LakeStore, S3Settings};
use inlet_receivers::{Fault, Receivers};
use inlet_segment::format_timestamp;
use inlet_wal::{WalConfig, WalHandle};
use serde_json::json;

const EVENTS: usize = 3000;

fn destination(r: &Receivers) -> Destination {
    let config: DestinationConfig = serde_json::from_value(json!({
        "name": "amp", "kind": "amplitude", "api_key": "amp-key", "sources": ["web"],
        "endpoint": r.amplitude_endpoint(),
        "delivery": {"backoff_base_ms": 50, "backoff_max_secs": 1, "request_timeout_secs": 2}
    }))
    .unwrap();
    Destination::new(config)
}

async fn open_wal(dir: &std::path::Path) -> Arc<WalHandle> {
    let config = WalConfig {
        segment_bytes: 64 * 1024,
        consumers: vec![consumer_name("amp")],
        ..WalConfig::new(dir.join("wal"))
    };
    Arc::new(WalHandle::start(config, None).unwrap().0)
}

async fn append_events(wal: &WalHandle, prefix: &str) {
    let at = format_timestamp(chrono::Utc::now());
    let records: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| {
            serde_json::to_vec(&json!({"source": "web", "event": {
                "type": "track", "event": "Lesson Started", "messageId": format!("{prefix}-{i}"),
                "anonymousId": format!("anon-{}", i % 50), "timestamp": at, "receivedAt": at,
                "properties": {"lesson": "x".repeat(200)}
            }}))
            .unwrap()
        })
        .collect();
    wal.append(records).await.unwrap();
}

/// Runs delivery until `done` holds (or 30 s), then stops it.
async fn run_until(
    destination: &Destination,
    wal: &Arc<WalHandle>,
    dir: &std::path::Path,
    budget: u64,
    done: impl Fn(&WalHandle) -> bool,
) {
    let store = LakeStore::open(LakeLocation::Local(dir.join("lake")), &S3Settings::default()).expect("open");
    let metrics = DestinationMetrics::unregistered("amp");
    let status = Arc::new(DestinationStatus::default());
    let delivery = Delivery::open(DeliveryParts {
        name: "amp".into(),
        sources: vec!["web".into()],
        outbox: destination.outbox(metrics.clone(), Arc::clone(&status)),
        wal: Arc::clone(wal),
        dead_letters: DeadLetterStore::new(store, "amp", "test"),
        metrics,
        status,
        state_dir: dir.join("destinations"),
        max_in_flight: 500,
        max_backlog_bytes: budget,
        suppressions: Arc::default(),
    })
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(delivery.run(stopped));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(wal) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}

fn dead_lettered(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let root = dir.join("lake/dead-letters/destination=amp");
    let mut out = Vec::new();
    for day in std::fs::read_dir(root).into_iter().flatten() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            for line in std::fs::read_to_string(file.unwrap().path()).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_destination_sheds_its_oldest_events_to_dead_letters_within_its_budget() {
    let r = Receivers::start("amp-key", "G", "s").await.unwrap();
    r.amplitude.faults.push(std::iter::repeat_n(Fault::Status(503), 100_000));
    let dir = tempfile::tempdir().unwrap();
    let wal = open_wal(dir.path()).await;
    append_events(&wal, "a").await;
    let budget = 200_000;
    let disk_before = wal.disk_bytes();
    assert!(disk_before > 3 * budget, "the backlog starts well over the budget: {disk_before}");
    let consumer = consumer_name("amp");
    run_until(&destination(&r), &wal, dir.path(), budget, |wal| {
        let behind = wal.durable_lsn() - wal.cursor(&consumer).unwrap();
        behind * 100 < EVENTS as u64 * 30
    })
    .await;
    let cursor = wal.cursor(&consumer).unwrap();
    let letters = dead_lettered(dir.path());
    assert!(!letters.is_empty());
    assert!(letters.iter().all(|l| l["reason"] == "backlog_over_budget"), "{:?}", letters[0]);
    // Nothing lost: every event is either dead-lettered or still behind the cursor.
    assert_eq!(letters.len() as u64 + (wal.durable_lsn() - cursor), EVENTS as u64);
    // The oldest went first.
    let mut lsns: Vec<u64> = letters.iter().map(|l| l["lsn"].as_u64().unwrap()).collect();
    lsns.sort_unstable();
    assert_eq!(lsns, (0..cursor).collect::<Vec<_>>());
    assert!(wal.disk_bytes() < disk_before, "the WAL deleted segments once the cursor moved");
    assert!(r.amplitude.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_without_resending_what_was_delivered() {
    let r = Receivers::start("amp-key", "G", "s").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let consumer = consumer_name("amp");
    {
        let wal = open_wal(dir.path()).await;
        append_events(&wal, "a").await;
        run_until(&destination(&r), &wal, dir.path(), u64::MAX, |wal| wal.cursor(&consumer) == Some(EVENTS as u64))
            .await;
        wal.shutdown().unwrap();
    }
    assert_eq!(r.amplitude.events().len(), EVENTS);
    let requests = r.amplitude.requests();
    let wal = open_wal(dir.path()).await;
    assert_eq!(wal.cursor(&consumer), Some(EVENTS as u64), "the cursor survived the restart");
    append_events(&wal, "b").await;
    run_until(&destination(&r), &wal, dir.path(), u64::MAX, |wal| wal.cursor(&consumer) == Some(2 * EVENTS as u64))
        .await;
    assert_eq!(r.amplitude.events().len(), 2 * EVENTS);
    assert_eq!(r.amplitude.duplicates(), 0, "nothing delivered before the restart was sent again");
    assert!(r.amplitude.requests() > requests);
}
