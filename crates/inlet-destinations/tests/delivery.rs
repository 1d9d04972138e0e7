//! The delivery engine against the local receivers, which enforce the vendors' contracts:
//! batching limits, every fault the issue names, the deadline and the dead letters.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use inlet_destinations::outbox::{Fate, Resolved};
use inlet_destinations::{Destination, DestinationConfig, DestinationMetrics, Outbox};
use inlet_receivers::{Fault, Receivers};
use inlet_segment::{StoredEvent, format_timestamp};
use serde_json::Value;
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
    let metrics = DestinationMetrics::unregistered(&destination.config.name);
    let mut outbox: Outbox = destination.outbox(metrics, Arc::default());
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
    // Three requests' worth, sent concurrently: the one that met the 500 had ingested a
    // whole request of events, sent again and dropped by insert_id.
    assert!(
        r.amplitude.duplicates() >= 1000,
        "the batch ingested before its 500 was sent again and dropped by insert_id: {}",
        r.amplitude.duplicates()
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

fn stored(event: Value) -> StoredEvent {
    StoredEvent::new("web", event.as_object().unwrap().clone())
}

fn minute_ago() -> String {
    format_timestamp(chrono::Utc::now() - chrono::Duration::minutes(1))
}

fn amplitude_with(r: &Receivers, extra: Value) -> Destination {
    let mut config = json!({
        "name": "amp", "kind": "amplitude", "api_key": "amp-key", "sources": ["web"],
        "endpoint": r.amplitude_endpoint(), "user_mapping_endpoint": r.amplitude_user_mapping_endpoint(),
        "delivery": {"backoff_base_ms": 20, "backoff_max_secs": 1, "request_timeout_secs": 5}
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    destination(config)
}

#[tokio::test]
async fn amplitude_group_and_alias_reach_their_apis() {
    let r = receivers().await;
    let destination = amplitude_with(&r, json!({"group_type": "clinic", "types": ["track", "group", "alias"]}));
    let at = minute_ago();
    let resolved = deliver_all(
        &destination,
        vec![
            stored(json!({"type": "group", "groupId": "clinic-7", "userId": "user-0001", "messageId": "g1", "timestamp": at,
                "traits": {"name": "Seoul Dental", "members": 12}})),
            stored(json!({"type": "track", "event": "Case Posted", "userId": "user-0001", "messageId": "t1", "timestamp": at,
                "context": {"groupId": "clinic-7"}})),
            stored(json!({"type": "alias", "previousId": "guest-0001", "userId": "user-0001", "messageId": "a1", "timestamp": at})),
            stored(json!({"type": "group", "userId": "user-0001", "messageId": "g2", "timestamp": at})),
        ],
    )
    .await;
    assert_eq!(delivered(&resolved), 3, "{:?}", dead_reasons(&resolved));
    assert_eq!(dead_reasons(&resolved), vec![(3, "missing_fields")]);
    assert_eq!(r.amplitude.identifications(), vec![json!({"user_id": "user-0001", "groups": {"clinic": "clinic-7"}})]);
    assert_eq!(
        r.amplitude.group_identifies(),
        vec![json!({"group_type": "clinic", "group_value": "clinic-7",
            "group_properties": {"$set": {"name": "Seoul Dental", "members": 12}}})]
    );
    assert_eq!(r.amplitude.user_mappings(), vec![json!({"user_id": "guest-0001", "global_user_id": "user-0001"})]);
    let events = r.amplitude.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["groups"], json!({"clinic": "clinic-7"}));
}

#[tokio::test]
async fn a_group_call_whose_group_identify_is_refused_is_dead_lettered_whole() {
    let r = receivers().await;
    let destination = amplitude_with(&r, json!({}));
    // Over the Group Identify API's 1,024 group properties per request: refused with 400.
    let traits: serde_json::Map<String, Value> = (0..1100).map(|i| (format!("p{i}"), json!(i))).collect();
    let group = json!({"type": "group", "groupId": "clinic-7", "userId": "user-0001", "messageId": "g1",
        "timestamp": minute_ago(), "traits": traits});
    let resolved = deliver_all(&destination, vec![stored(group)]).await;
    assert_eq!(dead_reasons(&resolved), vec![(0, "rejected")]);
    let Fate::DeadLettered(why) = &resolved[0].fate else { unreachable!() };
    assert_eq!(why.status, Some(400));
    assert_eq!(r.amplitude.identifications().len(), 1, "the Identify part went through; replaying it repeats a $set");
    assert!(r.amplitude.group_identifies().is_empty());
}

#[tokio::test]
async fn consent_decides_which_events_a_destination_receives() {
    let r = receivers().await;
    let destination =
        amplitude_with(&r, json!({"consent": {"categories": ["Analytics"], "without_consent": "withhold"}}));
    let at = minute_ago();
    let with = |id: &str, context: Value| {
        stored(
            json!({"type": "track", "event": "Opened", "userId": "user-0001", "messageId": id, "timestamp": at, "context": context}),
        )
    };
    let resolved = deliver_all(
        &destination,
        vec![
            with("granted", json!({"consent": {"categoryPreferences": {"Analytics": true, "Advertising": false}}})),
            with("refused", json!({"consent": {"categoryPreferences": {"Analytics": false}}})),
            with("allowed", json!({"consentManagement": {"allowedConsentIds": ["Analytics"], "provider": "custom", "resolutionStrategy": "and"}})),
            with("denied", json!({"consentManagement": {"deniedConsentIds": ["Analytics"], "provider": "oneTrust"}})),
            with("none", json!({})),
        ],
    )
    .await;
    let fates: Vec<&Fate> = resolved.iter().map(|r| &r.fate).collect();
    assert_eq!(
        fates,
        [&Fate::Delivered, &Fate::WithoutConsent, &Fate::Delivered, &Fate::WithoutConsent, &Fate::WithoutConsent]
    );
    let ids: Vec<String> = r.amplitude.events().iter().map(|e| e["insert_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["granted", "allowed"]);
}

#[tokio::test]
async fn concurrent_requests_keep_each_devices_order() {
    for concurrency in [1, 4] {
        let r = receivers().await;
        r.set_latency(Duration::from_millis(50));
        let destination = amplitude_with(
            &r,
            json!({"delivery": {"backoff_base_ms": 20, "request_timeout_secs": 5, "max_concurrent_requests": concurrency}}),
        );
        // 10,000 events need five requests of 2,000.
        let resolved = deliver_all(&destination, events(10_000, 40, "Lesson Started")).await;
        assert_eq!(delivered(&resolved), 10_000);
        let in_flight = r.amplitude.max_concurrent_requests();
        if concurrency == 1 {
            assert_eq!(in_flight, 1);
        } else {
            assert!((2..=concurrency).contains(&in_flight), "{in_flight} requests in flight at most");
        }
        let mut last: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for event in r.amplitude.events() {
            let device = event["device_id"].as_str().unwrap().to_owned();
            let i = event["event_properties"]["i"].as_i64().unwrap();
            let previous = last.insert(device.clone(), i);
            assert!(previous.is_none_or(|p| p < i), "{device}: event {i} arrived after {previous:?}");
        }
    }
}

#[tokio::test]
async fn the_user_mapping_receiver_enforces_its_batch_and_rate_limits() {
    let r = receivers().await;
    let http = reqwest::Client::new();
    let post = |count: usize| {
        let mapping: Vec<Value> =
            (0..count).map(|i| json!({"user_id": format!("old-{i}"), "global_user_id": "user-0001"})).collect();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("api_key", "amp-key")
            .append_pair("mapping", &serde_json::to_string(&mapping).unwrap())
            .finish();
        http.post(r.amplitude_user_mapping_endpoint())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_eq!(post(2001).await.unwrap().status(), 400, "at most 2,000 mappings per request");
    assert_eq!(post(1000).await.unwrap().status(), 200);
    assert_eq!(post(600).await.unwrap().status(), 429, "1,500 mappings per 30 seconds");
    assert_eq!(post(500).await.unwrap().status(), 200);
    assert_eq!(r.amplitude.user_mappings().len(), 1500);
}
