//! Golden mapping tests: Segment events in (`golden/mapping.json`), exact vendor payloads out.

#![allow(clippy::unwrap_used)]

use inlet_destinations::vendor::{Api, Mapped, Payload};
use inlet_destinations::{Destination, DestinationConfig};
use inlet_segment::{StoredEvent, parse_timestamp};
use serde_json::Value;

#[test]
fn segment_events_map_to_the_exact_vendor_payloads() {
    let corpus: Value = serde_json::from_str(include_str!("golden/mapping.json")).unwrap();
    let now = parse_timestamp(corpus["now"].as_str().unwrap()).unwrap();
    let mut failures = Vec::new();
    for case in corpus["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let kind = case["destination"].as_str().unwrap();
        let config: DestinationConfig = serde_json::from_value(corpus["destinations"][kind].clone()).unwrap();
        let destination = Destination::new(config);
        let stored = StoredEvent::new("web", case["event"].as_object().unwrap().clone());
        let mapped = destination.map(&stored, now);
        let ok = match (&mapped, case.get("invalid"), case.get("skip")) {
            (Mapped::Ready(payloads), None, None) => shown(payloads) == case["expect"],
            (Mapped::Invalid { reason, .. }, Some(want), None) => want == reason,
            (Mapped::Skip, None, Some(_)) => true,
            _ => false,
        };
        if !ok {
            let got = match &mapped {
                Mapped::Ready(payloads) => serde_json::to_string_pretty(&shown(payloads)).unwrap(),
                other => format!("{other:?}"),
            };
            failures.push(format!("{name}:\n  got {got}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
}

/// One events-API payload as its body; several (or another API) as `[{api, body}]`.
fn shown(payloads: &[Payload]) -> Value {
    match payloads {
        [one] if one.api == Api::Events => one.body.clone(),
        _ => payloads.iter().map(|p| serde_json::json!({"api": p.api.name(), "body": p.body})).collect(),
    }
}
