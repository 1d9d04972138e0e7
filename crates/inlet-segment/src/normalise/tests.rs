use super::*;
use proptest::prelude::*;
use serde_json::json;

fn meta() -> RequestMeta {
    RequestMeta {
        received_at: parse_timestamp("2024-05-01T10:00:00Z").expect("valid"),
        client_ip: Some("203.0.113.7".parse().expect("ip")),
        ip_policy: IpPolicy::Full,
    }
}

fn run(message: Value, forced: Option<MessageType>, defaults: &BatchDefaults) -> Result<Event, Rejection> {
    let raw = serde_json::value::to_raw_value(&message).expect("raw");
    Normaliser::default().normalise(&raw, forced, defaults, &meta())
}

fn reason(message: Value) -> RejectReason {
    run(message, None, &BatchDefaults::default()).expect_err("should be rejected").reason
}

#[test]
fn corrects_the_client_clock() {
    // The client's clock is 5 minutes fast: it says it sent at 10:05 an event from 10:04.
    let event = run(
        json!({"type": "track", "event": "Opened", "userId": 42, "timestamp": "2024-05-01T10:04:00Z",
               "sentAt": "2024-05-01T10:05:00.000Z", "writeKey": "secret", "_metadata": {"x": 1}}),
        None,
        &BatchDefaults::default(),
    )
    .expect("valid");
    let f = &event.fields();
    assert_eq!(f["timestamp"], "2024-05-01T09:59:00.000000Z");
    assert_eq!(f["originalTimestamp"], "2024-05-01T10:04:00.000000Z");
    assert_eq!(f["sentAt"], "2024-05-01T10:05:00.000000Z");
    assert_eq!(f["receivedAt"], "2024-05-01T10:00:00.000000Z");
    assert_eq!(f["userId"], "42");
    assert_eq!(f["context"]["ip"], "203.0.113.7");
    assert!(f.get("writeKey").is_none() && f.get("_metadata").is_none());
    assert_eq!(f["messageId"], event.message_id.as_str());
    assert!(uuid::Uuid::parse_str(&event.message_id).is_ok(), "a missing messageId is generated");
}

#[test]
fn without_sent_at_the_timestamp_is_taken_as_is_and_without_timestamp_it_is_received_at() {
    let d = BatchDefaults::default();
    let e = run(json!({"type": "page", "anonymousId": "a", "timestamp": "2020-01-01T00:00:00+09:00"}), None, &d)
        .expect("valid");
    assert_eq!(e.fields()["timestamp"], "2019-12-31T15:00:00.000000Z");
    assert!(e.fields().get("sentAt").is_none());
    let e =
        run(json!({"type": "page", "anonymousId": "a", "sentAt": "2024-05-01T10:00:03Z"}), None, &d).expect("valid");
    assert_eq!(e.fields()["timestamp"], "2024-05-01T10:00:00.000000Z");
    assert!(e.fields().get("originalTimestamp").is_none());
}

#[test]
fn batch_defaults_fill_in_but_never_override() {
    let defaults = BatchDefaults {
        sent_at: Some("2024-05-01T10:00:10Z".into()),
        context: Some(
            json!({"library": {"name": "batch-lib", "version": "1"}, "locale": "ko-KR"})
                .as_object()
                .cloned()
                .expect("object"),
        ),
        integrations: Some(json!({"All": false}).as_object().cloned().expect("object")),
    };
    let e = run(
        json!({"type": "identify", "userId": "u", "timestamp": "2024-05-01T10:00:09Z",
               "context": {"library": {"name": "own"}, "ip": "198.51.100.1"}}),
        None,
        &defaults,
    )
    .expect("valid");
    assert_eq!(
        e.fields()["context"],
        json!({"library": {"name": "own", "version": "1"}, "locale": "ko-KR", "ip": "198.51.100.1"})
    );
    assert_eq!(e.fields()["integrations"], json!({"All": false}));
    assert_eq!(e.fields()["timestamp"], "2024-05-01T09:59:59.000000Z", "batch sentAt is used");
}

#[test]
fn the_route_decides_the_type() {
    let e = run(
        json!({"type": "page", "anonymousId": "a", "event": "Clicked"}),
        Some(MessageType::Track),
        &BatchDefaults::default(),
    )
    .expect("valid");
    assert_eq!(e.message_type, MessageType::Track);
    assert_eq!(e.fields()["type"], "track");
}

#[test]
fn rejects_what_the_spec_forbids() {
    use RejectReason::*;
    let cases = [
        (json!({"event": "x", "userId": "u"}), MissingType),
        (json!({"type": "purchase", "userId": "u"}), InvalidType),
        (json!({"type": 3, "userId": "u"}), InvalidType),
        (json!({"type": "track", "event": "x"}), MissingId),
        (json!({"type": "track", "event": "x", "userId": null, "anonymousId": null}), MissingId),
        (json!({"type": "track", "event": "x", "userId": ""}), MissingId),
        (json!({"type": "track", "event": "x", "userId": {"id": 1}}), InvalidId),
        (json!({"type": "track", "event": "x", "anonymousId": true}), InvalidId),
        (json!({"type": "track", "userId": "u"}), MissingEvent),
        (json!({"type": "track", "userId": "u", "event": ""}), MissingEvent),
        (json!({"type": "track", "userId": "u", "event": 5}), InvalidField),
        (json!({"type": "alias", "anonymousId": "a", "previousId": "p"}), MissingUserId),
        (json!({"type": "alias", "userId": "u"}), MissingPreviousId),
        (json!({"type": "group", "userId": "u"}), MissingGroupId),
        (json!({"type": "page", "userId": "u", "name": ["x"]}), InvalidField),
        (json!({"type": "page", "userId": "u", "properties": [1]}), InvalidField),
        (json!({"type": "identify", "userId": "u", "traits": "x"}), InvalidField),
        (json!({"type": "identify", "userId": "u", "context": 1}), InvalidField),
        (json!({"type": "identify", "userId": "u", "messageId": "m".repeat(101)}), InvalidMessageId),
        (json!({"type": "identify", "userId": "u", "messageId": {}}), InvalidMessageId),
        (json!({"type": "identify", "userId": "u", "timestamp": "last tuesday"}), InvalidTimestamp),
        (json!({"type": "identify", "userId": "u", "timestamp": 1714557600}), InvalidTimestamp),
        (json!({"type": "identify", "userId": "u", "sentAt": "soon"}), InvalidTimestamp),
        (json!(["not", "an", "object"]), NotAnObject),
    ];
    for (message, expected) in cases {
        assert_eq!(reason(message.clone()), expected, "{message}");
    }
    let big = json!({"type": "track", "userId": "u", "event": "x", "properties": {"blob": "x".repeat(33 * 1024)}});
    assert_eq!(reason(big), EventTooLarge);
}

#[test]
fn accepts_what_the_spec_allows() {
    let cases = [
        json!({"type": "alias", "userId": 7, "previousId": 6}),
        json!({"type": "group", "anonymousId": "a", "groupId": 99, "traits": null}),
        json!({"type": "screen", "userId": "u", "name": "Home", "properties": {}}),
        json!({"type": "identify", "anonymousId": "a", "userId": null, "messageId": 12345}),
        json!({"type": "track", "userId": "u", "event": "x", "properties": {"big": 1e300, "n": 123456789012345678u64}}),
    ];
    for message in cases {
        assert!(run(message.clone(), None, &BatchDefaults::default()).is_ok(), "{message}");
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9:.+-]{0,30}".prop_map(Value::String),
        Just(json!("2024-05-01T10:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("userId".to_string()),
                    Just("anonymousId".to_string()),
                    Just("event".to_string()),
                    Just("timestamp".to_string()),
                    Just("sentAt".to_string()),
                    Just("context".to_string()),
                    Just("groupId".to_string()),
                    Just("previousId".to_string()),
                    Just("messageId".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever JSON arrives, the normaliser answers (never panics), and an accepted event
    /// keeps its promises: an id, a type, all four timestamps parse, and no write key.
    #[test]
    fn any_message_is_normalised_or_rejected(message in arbitrary_json(), forced in prop::option::of(0..6usize)) {
        let forced = forced.map(|i| MessageType::ALL[i]);
        if let Ok(event) = run(message, forced, &BatchDefaults::default()) {
            let f = &event.fields();
            prop_assert!(f.get("userId").or(f.get("anonymousId")).is_some_and(Value::is_string));
            prop_assert_eq!(f["type"].as_str(), Some(event.message_type.as_str()));
            prop_assert_eq!(f["messageId"].as_str(), Some(event.message_id.as_str()));
            for field in ["timestamp", "receivedAt"] {
                prop_assert!(f[field].as_str().and_then(parse_timestamp).is_some());
            }
            prop_assert!(f.get("writeKey").is_none());
            // Normalising the output again changes nothing but the clock-derived fields.
            let again = run(Value::Object(f.clone()), Some(event.message_type), &BatchDefaults::default());
            prop_assert!(again.is_ok());
        }
    }
}

#[test]
fn the_ip_policy_applies_to_the_client_address_and_to_any_context_ip() {
    let context = |policy: IpPolicy, message: Value, defaults: &BatchDefaults| {
        let raw = serde_json::value::to_raw_value(&message).expect("raw");
        let meta = RequestMeta { ip_policy: policy, ..meta() };
        let event = Normaliser::default().normalise(&raw, Some(MessageType::Page), defaults, &meta).expect("valid");
        event.fields().get("context").cloned()
    };
    let none = BatchDefaults::default();
    let batch =
        BatchDefaults { context: Some(json!({"locale": "ko"}).as_object().expect("o").clone()), ..none.clone() };
    let t = IpPolicy::Truncate;
    assert_eq!(context(t, json!({"anonymousId": "a"}), &none), Some(json!({"ip": "203.0.113.0"})));
    assert_eq!(
        context(t, json!({"anonymousId": "a", "context": {"ip": "198.51.100.23"}}), &none),
        Some(json!({"ip": "198.51.100.0"}))
    );
    assert_eq!(context(t, json!({"anonymousId": "a", "context": {"ip": "not an address"}}), &none), Some(json!({})));
    assert_eq!(context(t, json!({"anonymousId": "a", "context": {"ip": 7}}), &batch), Some(json!({"locale": "ko"})));
    assert_eq!(
        context(t, json!({"anonymousId": "a", "context": {"ip": "2001:db8:1:2::9"}}), &batch),
        Some(json!({"ip": "2001:db8:1::", "locale": "ko"}))
    );
    let d = IpPolicy::Drop;
    assert_eq!(context(d, json!({"anonymousId": "a"}), &none), None);
    assert_eq!(
        context(d, json!({"anonymousId": "a", "context": {"ip": "198.51.100.23", "locale": "ko"}}), &none),
        Some(json!({"locale": "ko"}))
    );
    assert_eq!(
        context(d, json!({"anonymousId": "a", "context": {"locale": "ko"}}), &none),
        Some(json!({"locale": "ko"}))
    );
    assert_eq!(
        context(d, json!({"anonymousId": "a", "context": {"ip": "198.51.100.23"}}), &batch),
        Some(json!({"locale": "ko"}))
    );
}

#[test]
fn the_client_ip_fills_context_ip_only_when_absent_or_null() {
    let d = BatchDefaults::default();
    let context =
        |message: Value| run(message, Some(MessageType::Page), &d).expect("valid").fields()["context"].clone();
    assert_eq!(context(json!({"anonymousId": "a"})), json!({"ip": "203.0.113.7"}));
    assert_eq!(context(json!({"anonymousId": "a", "context": null})), json!({"ip": "203.0.113.7"}));
    assert_eq!(context(json!({"anonymousId": "a", "context": {}})), json!({"ip": "203.0.113.7"}));
    assert_eq!(
        context(json!({"anonymousId": "a", "context": {"ip": null, "locale": "ko"}})),
        json!({"ip": "203.0.113.7", "locale": "ko"})
    );
    assert_eq!(context(json!({"anonymousId": "a", "context": {"ip": "10.0.0.1"}})), json!({"ip": "10.0.0.1"}));
    assert_eq!(
        context(json!({"anonymousId": "a", "context": {"traits": {"ip": "10.0.0.1"}, "locale": "ip"}})),
        json!({"traits": {"ip": "10.0.0.1"}, "locale": "ip", "ip": "203.0.113.7"})
    );
    // A repeated key counts once, with its last value, as any JSON reader takes it.
    let raw =
        RawValue::from_string(r#"{"anonymousId":"a","context":{"ip":"10.0.0.1","ip":null}}"#.into()).expect("raw");
    let event = Normaliser::default().normalise(&raw, Some(MessageType::Page), &d, &meta()).expect("valid");
    assert_eq!(event.fields()["context"], json!({"ip": "203.0.113.7"}));
    // Appended to the client's own text, spacing and all; an escaped `ip` key is still found.
    for (context, stored) in [
        (r#"{ "locale" : "ko" }"#, r#"{ "locale" : "ko" ,"ip":"203.0.113.7"}"#),
        (r#"{ }"#, r#"{ "ip":"203.0.113.7"}"#),
        (r#"{"ip":"10.0.0.1"}"#, r#"{"ip":"10.0.0.1"}"#),
    ] {
        let text = format!(r#"{{"anonymousId":"a","context":{context}}}"#);
        let raw = RawValue::from_string(text).expect("raw");
        let event = Normaliser::default().normalise(&raw, Some(MessageType::Page), &d, &meta()).expect("valid");
        let json = String::from_utf8(event.json).expect("utf-8");
        assert!(json.contains(&format!(r#""context":{stored}"#)), "{json}");
    }
}

#[test]
fn what_is_not_rewritten_is_stored_as_the_client_wrote_it() {
    let text = r#"{"anonymousId":"a", "properties": {"price": 1.50, "big": 123456789012345678901234, "s": "\u00e9"}}"#;
    let raw = RawValue::from_string(text.into()).expect("raw");
    let event =
        Normaliser::default().normalise(&raw, Some(MessageType::Page), &BatchDefaults::default(), &meta()).expect("ok");
    let stored = String::from_utf8(event.json.clone()).expect("utf-8");
    assert!(
        stored.contains(r#""properties":{"price": 1.50, "big": 123456789012345678901234, "s": "\u00e9"}"#),
        "{stored}"
    );
    assert_eq!(event.fields()["properties"]["s"], "é");
}

#[test]
fn a_batch_context_counts_against_each_message_it_is_merged_into() {
    // A tiny message is fine alone and fine with a small batch context; a batch context of
    // nearly the whole per-message limit makes it too large once merged, however small it is.
    let message = json!({"type": "track", "userId": "u", "event": "x"});
    let context_of = |bytes: usize| BatchDefaults {
        context: Some(json!({"blob": "x".repeat(bytes)}).as_object().cloned().expect("object")),
        ..BatchDefaults::default()
    };
    let small = run(message.clone(), None, &context_of(1000)).expect("a small context fits");
    assert!(small.json.len() < 1000 + SERVER_FIELDS_ALLOWANCE + 100);
    let Err(rejection) = run(message, None, &context_of(33 * 1024)) else {
        panic!("the merged message should be too large");
    };
    assert_eq!(rejection.reason, RejectReason::EventTooLarge);
    assert!(rejection.message.contains("merged"), "{}", rejection.message);
}

#[test]
fn the_server_fields_fit_in_their_allowance() {
    // The largest the normaliser makes a message on its own: every id at its longest, every
    // timestamp, an IPv6 address and no context of the client's.
    let id = "i".repeat(MAX_MESSAGE_ID_CHARS);
    let bare = json!({"type": "alias", "userId": "u", "previousId": "p", "messageId": id,
                      "timestamp": "2024-05-01T10:00:00Z", "sentAt": "2024-05-01T10:00:00Z"});
    let text = serde_json::to_string(&bare).expect("json");
    let raw = serde_json::value::to_raw_value(&bare).expect("raw");
    let mut meta = meta();
    meta.client_ip = Some("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().expect("ip"));
    let event = Normaliser::default().normalise(&raw, None, &BatchDefaults::default(), &meta).expect("valid");
    assert!(event.json.len() - text.len() < SERVER_FIELDS_ALLOWANCE / 2, "added {}", event.json.len() - text.len());
}
