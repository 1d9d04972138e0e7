//! The request bodies of the ingestion benchmark and of `examples/normalise_repeatedly.rs`.

#![allow(dead_code, reason = "the benchmark and the example each use a part of it")]

use inlet_segment::{MessageType, Normaliser, RequestMeta, RouteKind, encode_stored_event, parse_body};
use serde_json::json;

/// Events in the batch body.
pub const EVENTS: usize = 100;

/// A batch shaped like what analytics.js and the mobile SDKs send (~700 bytes an event).
pub fn batch_body() -> Vec<u8> {
    let events: Vec<_> = (0..EVENTS).map(event).collect();
    serde_json::to_vec(&json!({"batch": events, "sentAt": "2024-05-01T09:59:58.130Z", "writeKey": "k"})).expect("json")
}

/// The body of one `/v1/t` request as analytics.js sends it: the event with its write key.
pub fn single_body() -> Vec<u8> {
    let mut message = event(1);
    message["writeKey"] = json!("k");
    message["sentAt"] = json!("2024-05-01T09:59:58.130Z");
    serde_json::to_vec(&message).expect("json")
}

fn event(i: usize) -> serde_json::Value {
    json!({
        "type": if i.is_multiple_of(3) { "page" } else { "track" },
        "event": "Article Viewed",
        "messageId": format!("ajs-next-1714557598120-{i:08}-0c7a-4d0e-9d5e-0d7b3b1a2f10"),
        "anonymousId": "8d9c1a34-5b6e-4f70-8a91-b2c3d4e5f607",
        "userId": format!("doc-{}", i % 17),
        "timestamp": "2024-05-01T09:59:58.120Z",
        "properties": {"article_id": format!("a-{i}"), "category": "implants", "position": i},
        "context": {
            "page": {"path": "/articles/implants", "referrer": "https://www.google.com/", "title": "Implant care",
                     "url": "https://dentists.example.com/articles/implants?utm_source=newsletter", "search": "?utm_source=newsletter"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            "locale": "ko-KR", "timezone": "Asia/Seoul",
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "campaign": {"source": "newsletter", "medium": "email"}
        },
        "integrations": {}
    })
}

/// A single-message body as `/v1/t` takes it: parsed, normalised and encoded as stored.
pub fn normalise_single(normaliser: &Normaliser, body: &[u8], meta: &RequestMeta) -> Vec<u8> {
    let parsed = parse_body(body, RouteKind::Single(MessageType::Track), &normaliser.limits).expect("valid event");
    let event = normaliser.normalise(parsed.items[0], parsed.forced_type, &parsed.defaults, meta).expect("valid event");
    encode_stored_event("web", &event)
}
