//! The delivery engine against the local receivers, which enforce the vendors' contracts:
//! batching limits, every fault the issue names, the deadline and the dead letters.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use inlet_destinations::outbox::{Fate, Resolved};
use inlet_destinations::{Destination, DestinationConfig, DestinationMetrics, Outbox};
use inlet_receivers::{Fault, Receivers};
use inlet_segment::{StoredEvent, format_timestamp};
use serde_json::json;

async fn receivers() -> Receivers {
    Receivers::start("amp-key", "G-TEST", "secret").await.unwrap()
}

fn amplitude(r: &Receivers, timeout_secs: u64, deadline_secs: u64) -> Destination {
    destination(json!({
        "name": "amp", "kind": "amplitude", "api_key": "amp-key", "sources": ["web"],
        "endpoint": r.amplitude_endpoint(),
        "delivery": {"backoff_base_ms": 20, "backoff_max_secs": 1, "request_timeout_secs": timeout_secs, "deadline_secs": deadline_secs}
    }))
}

fn ga4(r: &Receivers) -> Destination {
    destination(json!({
        "name": "ga", "kind": "ga4", "measurement_id": "G-TEST", "api_secret": "secret", "sources": ["web"],
        "endpoint": r.ga4_endpoint(),
        "delivery": {"backoff_base_ms": 20, "backoff_max_secs": 1, "request_timeout_secs": 2}
    }))
}

fn destination(config: serde_json::Value) -> Destination {
    let config: DestinationConfig = serde_json::from_value(config).unwrap();
    Destination::new(config)
}

/// `n` track events from `users` users, timestamped a minute ago.
fn events(n: usize, users: usize, name: &str) -> Vec<StoredEvent> {
    let at = format_timestamp(chrono::Utc::now() - chrono::Duration::minutes(1));
    (0..n)
        .map(|i| {
            let event = json!({
                "type": "track", "event": name, "messageId": format!("m-{name}-{i}"),
                "anonymousId": format!("anon-{}", i % users), "timestamp": at, "receivedAt": at,
                "properties": {"i": i}
            });
            StoredEvent::new("web", event.as_object().unwrap().clone())
        })
        .collect()
}

/// Pushes everything and drives the outbox until every event is resolved.
async fn deliver_all(destination: &Destination, events: Vec<StoredEvent>) -> Vec<Resolved> {
    let mut outbox: Outbox = destination.outbox(DestinationMetrics::unregistered(&destination.config.name));
    let mut resolved = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        resolved.extend(outbox.push(i as u64, Arc::new(event)));
    }
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(due) = outbox.next_due() {
        assert!(tokio::time::Instant::now() < give_up, "delivery did not finish");
        tokio::time::sleep_until(due).await;
        resolved.extend(outbox.send_due().await);
    }
    resolved.sort_by_key(|r| r.key);
    resolved
}

fn delivered(resolved: &[Resolved]) -> usize {
    resolved.iter().filter(|r| r.fate == Fate::Delivered).count()
}

fn dead_reasons(resolved: &[Resolved]) -> Vec<(u64, &'static str)> {
    resolved
        .iter()
        .filter_map(|r| match &r.fate {
            Fate::DeadLettered(why) => Some((r.key, why.reason)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn amplitude_batches_within_limits_and_survives_every_fault() {
    let r = receivers().await;
    let destination = amplitude(&r, 1, 3600);
    // 500 after ingesting (retry must not duplicate: insert_id), a plain 503, a cut response, a
    // hang past the timeout, and a 413 (split) — then normal answers.
    r.amplitude.faults.push([
        Fault::IngestThenStatus(500),
        Fault::Status(503),
        Fault::CutResponse,
        Fault::Hang(Duration::from_secs(2)),
        Fault::Status(413),
    ]);
    let resolved = deliver_all(&destination, events(4500, 300, "Lesson Started")).await;
    assert_eq!(delivered(&resolved), 4500, "{:?}", dead_reasons(&resolved));
    let got = r.amplitude.events();
    assert_eq!(got.len(), 4500, "each insert_id ingested once");
    assert!(
        r.amplitude.duplicates() >= 2000,
        "the batch ingested before its 500 was sent again and dropped by insert_id"
    );
    assert!(r.amplitude.max_batch() <= 2000, "at most 2,000 events per request");
    assert_eq!(r.amplitude.faults.pending(), 0, "every fault was met");
}

#[tokio::test]
async fn amplitude_400_dead_letters_exactly_the_named_events_and_resends_the_rest() {
    let r = receivers().await;
    let destination = amplitude(&r, 5, 3600);
    r.amplitude.faults.push([Fault::InvalidEvents(vec![1, 3])]);
    let resolved = deliver_all(&destination, events(5, 5, "Quiz Answered")).await;
    assert_eq!(dead_reasons(&resolved), vec![(1, "invalid_fields"), (3, "invalid_fields")]);
    let Fate::DeadLettered(why) = &resolved[1].fate else { unreachable!() };
    assert_eq!(why.status, Some(400));
    assert!(why.response.contains("events_with_invalid_fields"), "{}", why.response);
    let ids: Vec<String> = r.amplitude.events().iter().map(|e| e["insert_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["m-Quiz Answered-0", "m-Quiz Answered-2", "m-Quiz Answered-4"]);
}

#[tokio::test]
async fn amplitude_429_holds_only_the_throttled_events() {
    let r = receivers().await;
    let destination = amplitude(&r, 5, 3600);
    r.amplitude.faults.push([Fault::Throttle { count: 2, retry_after_secs: Some(1) }]);
    let started = std::time::Instant::now();
    let resolved = deliver_all(&destination, events(6, 6, "Video Played")).await;
    assert_eq!(delivered(&resolved), 6);
    let order: Vec<String> = r.amplitude.events().iter().map(|e| e["insert_id"].as_str().unwrap().to_owned()).collect();
    // The four not throttled went through at once; the two throttled came after the hold.
    assert_eq!(&order[..4], ["m-Video Played-2", "m-Video Played-3", "m-Video Played-4", "m-Video Played-5"]);
    assert_eq!(&order[4..], ["m-Video Played-0", "m-Video Played-1"]);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
}

#[tokio::test]
async fn events_past_the_deadline_are_dead_lettered_with_the_last_answer() {
    let r = receivers().await;
    let destination = amplitude(&r, 5, 1);
    r.amplitude.faults.push(std::iter::repeat_n(Fault::Status(503), 1000));
    let resolved = deliver_all(&destination, events(3, 3, "Opened")).await;
    assert_eq!(resolved.len(), 3);
    for r in &resolved {
        let Fate::DeadLettered(why) = &r.fate else { panic!("{r:?}") };
        assert_eq!(why.reason, "deadline_exceeded");
        assert_eq!(why.status, Some(503));
        assert!(why.attempts >= 2, "retried before giving up: {}", why.attempts);
    }
    assert!(r.amplitude.events().is_empty());
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_lettered_at_once() {
    let r = receivers().await;
    let destination = amplitude(&r, 5, 3600);
    r.amplitude.faults.push([Fault::Status(401)]);
    let resolved = deliver_all(&destination, events(2, 2, "Opened")).await;
    assert_eq!(dead_reasons(&resolved), vec![(0, "rejected"), (1, "rejected")]);
}

#[tokio::test]
async fn ga4_sends_valid_payloads_grouped_by_client_within_25_events() {
    let r = receivers().await;
    let destination = ga4(&r);
    r.ga4.faults.push([Fault::Status(500), Fault::CutResponse, Fault::Status(429)]);
    let mut all = events(120, 3, "Lesson Completed");
    all.extend(events(2, 1, "error"));
    let resolved = deliver_all(&destination, all).await;
    assert_eq!(delivered(&resolved), 120);
    assert_eq!(dead_reasons(&resolved), vec![(120, "reserved_name"), (121, "reserved_name")]);
    assert!(r.ga4.invalid().is_empty(), "GA4 would have dropped: {:?}", r.ga4.invalid());
    let got = r.ga4.events();
    assert_eq!(got.len(), 120);
    assert!(r.ga4.max_batch() <= 25);
    for event in &got {
        let i = event.params["i"].as_i64().unwrap();
        assert_eq!(event.client_id, format!("anon-{}", i % 3), "each event under its own client");
        assert_eq!(event.name, "lesson_completed");
    }
}
