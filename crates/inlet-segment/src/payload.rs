//! Request bodies: one message (the single-message routes) or a batch envelope.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::message_type::MessageType;
use crate::normalise::BatchDefaults;
use crate::raw_json::{is_null, object_members, string_value};
use crate::rejection::RequestError;

/// The Segment limits on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, in bytes of its JSON as received (Segment: 32 KB).
    pub max_event_bytes: usize,
    /// Most messages in one batch (Segment: 2,500).
    pub max_batch_events: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_event_bytes: 32 * 1024, max_batch_events: 2500 }
    }
}

/// What a route expects its body to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `/v1/track`, `/v1/t`, …: the body is one message of this type (its `type` field, if
    /// any, is overridden by the route).
    Single(MessageType),
    /// `/v1/batch`, `/v1/b`, `/v1/import`: `{"batch": [...], ...}`.
    Batch,
}

/// A body split into its messages, still unparsed, plus what applies to all of them.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    /// The write key found in the body (`writeKey`), if any.
    pub write_key: Option<String>,
    pub items: Vec<&'a RawValue>,
    pub defaults: BatchDefaults,
    /// The type the route imposes, for single-message routes.
    pub forced_type: Option<MessageType>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<Batch<'a>>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<Value>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    integrations: Option<Value>,
}

/// `batch`, split into its messages in the same pass that reads the envelope (a second pass
/// over the whole body cost as much as normalising it).
enum Batch<'a> {
    Messages(Vec<&'a RawValue>),
    NotArray,
}

impl<'de: 'a, 'a> Deserialize<'de> for Batch<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BatchVisitor)
    }
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = Batch<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch<'de>, A::Error> {
        let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(message) = seq.next_element()? {
            messages.push(message);
        }
        Ok(Batch::Messages(messages))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Batch::NotArray)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Batch<'de>, E> {
        Ok(Batch::NotArray)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Batch<'de>, E> {
        Ok(Batch::NotArray)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Batch<'de>, E> {
        Ok(Batch::NotArray)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Batch<'de>, E> {
        Ok(Batch::NotArray)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Batch<'de>, E> {
        Ok(Batch::NotArray)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Batch<'de>, E> {
        Ok(Batch::NotArray)
    }
}

/// `writeKey` of a single message (text serde_json has just checked), found by the same walk
/// over its members that the normaliser reads every other field with, so that a repeated key
/// counts with its last value there too (serde_json's derived reader refused it as a
/// duplicate field). Not a speed-up: the walk costs about what serde_json's pass did.
fn body_write_key(message: &str) -> Result<Option<String>, RequestError> {
    let members = object_members(message).ok_or(RequestError::NotAnObject)?;
    match members.get("writeKey") {
        None => Ok(None),
        Some(value) if is_null(value) => Ok(None),
        Some(value) => string_value(value)
            .map(|key| Some(key.into_owned()))
            .ok_or(RequestError::InvalidField { field: "writeKey", expected: "a string" }),
    }
}

/// Splits a decompressed body into messages. Only the envelope is checked here; each message
/// is validated on its own by the normaliser.
pub fn parse_body<'a>(body: &'a [u8], kind: RouteKind, limits: &Limits) -> Result<ParsedBody<'a>, RequestError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        RequestError::InvalidJson(format!("body is not valid UTF-8 (first bad byte at offset {})", e.valid_up_to()))
    })?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(RequestError::EmptyBody);
    }
    // Checked up front: serde would happily read a struct from a JSON array.
    if !trimmed.starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(e) if e.classify() != serde_json::error::Category::Data => RequestError::InvalidJson(e.to_string()),
            _ => RequestError::NotAnObject,
        });
    }
    match kind {
        RouteKind::Single(message_type) => {
            let raw: &RawValue = serde_json::from_str(text).map_err(json_error)?;
            let write_key = body_write_key(raw.get())?;
            Ok(ParsedBody {
                write_key,
                items: vec![raw],
                defaults: BatchDefaults::default(),
                forced_type: Some(message_type),
            })
        }
        RouteKind::Batch => {
            // The body is known to be an object, so what fails here is its syntax, or a
            // repeated envelope field.
            let envelope: Envelope<'a> =
                serde_json::from_str(text).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
            let Some(Batch::Messages(items)) = envelope.batch else {
                return Err(RequestError::BatchNotArray);
            };
            if items.is_empty() {
                return Err(RequestError::EmptyBatch);
            }
            if items.len() > limits.max_batch_events {
                return Err(RequestError::TooManyEvents { count: items.len(), max: limits.max_batch_events });
            }
            let defaults = BatchDefaults {
                sent_at: string_field("sentAt", envelope.sent_at)?,
                context: object_field("context", envelope.context)?,
                integrations: object_field("integrations", envelope.integrations)?,
            };
            // Merged into every message, so one larger than a message's limit would make every
            // message too large: refused before 2,500 copies of it are built.
            let merged_bytes = [&defaults.context, &defaults.integrations]
                .into_iter()
                .flatten()
                .map(|object| serde_json::to_vec(object).map_or(0, |json| json.len()))
                .sum::<usize>();
            if merged_bytes > limits.max_event_bytes {
                return Err(RequestError::BatchContextTooLarge { bytes: merged_bytes, max: limits.max_event_bytes });
            }
            let write_key = string_field("writeKey", envelope.write_key)?;
            Ok(ParsedBody { write_key, items, defaults, forced_type: None })
        }
    }
}

fn json_error(e: serde_json::Error) -> RequestError {
    match e.classify() {
        serde_json::error::Category::Data => RequestError::NotAnObject,
        _ => RequestError::InvalidJson(e.to_string()),
    }
}

fn string_field(field: &'static str, value: Option<Value>) -> Result<Option<String>, RequestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RequestError::InvalidField { field, expected: "a string" }),
    }
}

fn object_field(field: &'static str, value: Option<Value>) -> Result<Option<Map<String, Value>>, RequestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(RequestError::InvalidField { field, expected: "an object" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, kind: RouteKind) -> Result<ParsedBody<'_>, RequestError> {
        parse_body(body.as_bytes(), kind, &Limits::default())
    }

    #[test]
    fn a_batch_context_larger_than_a_message_is_refused_whole() {
        let context = format!(r#"{{"blob":"{}"}}"#, "x".repeat(32 * 1024));
        let body = format!(r#"{{"batch":[{{"type":"track"}}],"context":{context}}}"#);
        let refused = parse(&body, RouteKind::Batch).expect_err("too large to merge");
        assert!(matches!(refused, RequestError::BatchContextTooLarge { max: 32768, .. }), "{refused:?}");
        let small = r#"{"batch":[{"type":"track"}],"context":{"a":1},"integrations":{"All":true}}"#;
        parse(small, RouteKind::Batch).expect("a small context is fine");
    }

    #[test]
    fn splits_batches_and_reads_envelope_fields() {
        let body = r#"{"batch":[{"type":"track"},{"type":"page"}],"writeKey":"k","sentAt":"2024-01-01T00:00:00Z","context":{"a":1}}"#;
        let parsed = parse(body, RouteKind::Batch).expect("parses");
        assert_eq!(parsed.items.len(), 2);
        assert_eq!(parsed.items[1].get(), r#"{"type":"page"}"#);
        assert_eq!(parsed.write_key.as_deref(), Some("k"));
        assert_eq!(parsed.defaults.sent_at.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert!(parsed.defaults.context.is_some());
        assert!(parsed.forced_type.is_none());
    }

    #[test]
    fn single_routes_keep_the_whole_body_as_one_message() {
        let parsed = parse(r#"{"event":"x","writeKey":"k"}"#, RouteKind::Single(MessageType::Track)).expect("parses");
        assert_eq!(parsed.items.len(), 1);
        assert_eq!(parsed.write_key.as_deref(), Some("k"));
        assert_eq!(parsed.forced_type, Some(MessageType::Track));
        assert_eq!(parsed.items[0].get(), r#"{"event":"x","writeKey":"k"}"#);

        let track = RouteKind::Single(MessageType::Track);
        let key = |body| parse(body, track).map(|parsed| parsed.write_key);
        assert_eq!(key(r#" {"writeKey":"k\u00e9\"", "event":"x"} "#), Ok(Some("k\u{e9}\"".into())));
        assert_eq!(key(r#"{"event":"x","writeKey":null}"#), Ok(None));
        assert_eq!(key(r#"{"properties":{"writeKey":"inner"}}"#), Ok(None));
        assert_eq!(key(r#"{"writeKey":"a","writeKey":"b"}"#), Ok(Some("b".into())), "the last of a repeated key");
        for wrong in [r#"{"writeKey":7}"#, r#"{"writeKey":["k"]}"#, r#"{"writeKey":{"k":1}}"#] {
            assert_eq!(key(wrong).expect_err(wrong).code(), "invalid_field", "{wrong}");
        }
        assert_eq!(key(r#"{"writeKey":"k",}"#).expect_err("trailing comma").code(), "invalid_json");
    }

    #[test]
    fn refuses_unusable_bodies() {
        let batch = RouteKind::Batch;
        assert_eq!(parse("", batch).expect_err("empty").code(), "empty_body");
        assert_eq!(parse("{", batch).expect_err("eof").code(), "invalid_json");
        assert_eq!(parse("[1]", batch).expect_err("array").code(), "invalid_body");
        for not_array in [r#"{}"#, r#"{"a":[1]}"#, "null", "1", "-1", "1.5", "true", r#""x""#, r#""\u00e9""#] {
            let body = format!(r#"{{"batch":{not_array}}}"#);
            assert_eq!(parse(&body, batch).expect_err("not an array").code(), "invalid_batch", "{body}");
        }
        assert_eq!(parse(r#"{"batch":[{}],"batch":{"a":1}}"#, batch).expect_err("repeated").code(), "invalid_json");
        assert_eq!(parse(r#"{"batch":[{},]}"#, batch).expect_err("trailing comma").code(), "invalid_json");
        assert_eq!(parse(r#"{"event":"x"}"#, batch).expect_err("missing").code(), "invalid_batch");
        assert_eq!(parse(r#"{"batch":[]}"#, batch).expect_err("empty").code(), "empty_batch");
        assert_eq!(parse(r#"{"batch":[],"writeKey":1}"#, batch).expect_err("key").code(), "empty_batch");
        assert_eq!(parse(r#"{"batch":[{}],"writeKey":1}"#, batch).expect_err("key").code(), "invalid_field");
        assert_eq!(parse(r#"{"batch":[{}],"context":"x"}"#, batch).expect_err("ctx").code(), "invalid_field");
        assert_eq!(
            parse_body(&[b'{', 0xff, b'}'], batch, &Limits::default()).expect_err("utf8").code(),
            "invalid_json"
        );
        let too_many = format!(r#"{{"batch":[{}]}}"#, vec!["{}"; 2501].join(","));
        assert_eq!(parse(&too_many, batch).expect_err("count"), RequestError::TooManyEvents { count: 2501, max: 2500 });
        assert_eq!(parse("42", RouteKind::Single(MessageType::Track)).expect_err("num").code(), "invalid_body");
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        /// Cases per property (a parse is a few microseconds).
        const CASES: u32 = 5_000;

        /// Bodies near the valid ones: real envelopes and messages, with bytes cut, repeated,
        /// replaced or inserted.
        fn near_valid_body() -> impl Strategy<Value = Vec<u8>> {
            let bodies = [
                r#"{"batch":[{"type":"track","event":"e","userId":"u"},{"type":"page"}],"writeKey":"k","sentAt":"2024-01-01T00:00:00Z","context":{"a":1},"integrations":{"All":true}}"#,
                r#"{"type":"identify","userId":7,"traits":{"n":[1,2,{"x":null}]},"writeKey":"k"}"#,
                r#"{"batch":[],"writeKey":"k"}"#,
                r#"{"batch":{"type":"track"}}"#,
            ];
            (
                prop::sample::select(bodies.to_vec()),
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..6),
            )
                .prop_map(|(body, edits)| {
                    let mut bytes = body.as_bytes().to_vec();
                    for (at, byte, kind) in edits {
                        let i = at.index(bytes.len().max(1)).min(bytes.len());
                        match kind {
                            0 if i < bytes.len() => bytes[i] = byte,
                            1 => bytes.insert(i, byte),
                            2 if i < bytes.len() => {
                                bytes.remove(i);
                            }
                            _ => bytes.truncate(i),
                        }
                    }
                    bytes
                })
        }

        fn check(body: &[u8]) -> Result<(), TestCaseError> {
            let limits = Limits { max_event_bytes: 64, max_batch_events: 3 };
            for kind in [RouteKind::Batch, RouteKind::Single(MessageType::Track)] {
                if let Ok(parsed) = parse_body(body, kind, &limits) {
                    prop_assert!(!parsed.items.is_empty() && parsed.items.len() <= limits.max_batch_events);
                    for item in &parsed.items {
                        prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(item.get()).is_ok());
                    }
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

            /// Whatever a client sends, the parser answers without panicking, and what it accepts
            /// is within the limits and made of valid JSON messages.
            #[test]
            fn any_bytes_parse_or_are_refused(body in prop::collection::vec(any::<u8>(), 0..256)) {
                check(&body)?;
            }

            #[test]
            fn near_valid_bodies_parse_or_are_refused(body in near_valid_body()) {
                check(&body)?;
            }
        }
    }
}
