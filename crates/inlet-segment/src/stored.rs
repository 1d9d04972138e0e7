//! The WAL record of one accepted event: the contract between the gateway, which writes it,
//! and every consumer (lake writer, destinations), which read it.
//!
//! A record is a JSON object, UTF-8: `{"source":"<source name>","event":{<normalised message>}}`.
//! The event is the normalised message exactly as [`crate::Normaliser`] produced it (Segment's
//! camelCase field names; `messageId`, `type`, `timestamp`, `receivedAt` always present).
//! New top-level keys may be added; readers ignore keys they do not know.
//!
//! An event checked against its source's tracking plan with violations has two more keys,
//! written before `event`: `"tracking_plan"`, the plan's mode (`observe`, `flag` or `block`), and
//! `"violations"`, the list found. They are the gateway's, outside the event, so a client cannot
//! forge them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::normalise::Event;
use crate::raw_json::{
    Nested, RawObject, Scalar, is_null, leading_string_len, object_members, object_members_nested, scalar, string_value,
};

/// Encodes an event for the WAL.
pub fn encode_stored_event(source: &str, event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.json.len() + source.len() + 24);
    encode_stored_event_into(&mut out, source, event);
    out
}

/// [`encode_stored_event`], appended to `out`.
pub fn encode_stored_event_into(out: &mut Vec<u8>, source: &str, event: &Event) {
    encode_checked_event_into(out, source, event, None);
}

/// What a tracking plan found in an event: the plan's mode and the violations, as JSON text.
#[derive(Debug, Clone, Copy)]
pub struct PlanVerdict<'a> {
    pub mode: &'a str,
    /// A JSON array.
    pub violations: &'a str,
}

/// [`encode_stored_event_into`], with the verdict of the source's tracking plan when it found
/// violations.
pub fn encode_checked_event_into(out: &mut Vec<u8>, source: &str, event: &Event, verdict: Option<PlanVerdict<'_>>) {
    out.extend_from_slice(b"{\"source\":");
    serde_json::to_writer(&mut *out, source).expect("writing to a Vec cannot fail");
    if let Some(verdict) = verdict {
        out.extend_from_slice(b",\"tracking_plan\":");
        serde_json::to_writer(&mut *out, verdict.mode).expect("writing to a Vec cannot fail");
        out.extend_from_slice(b",\"violations\":");
        out.extend_from_slice(verdict.violations.as_bytes());
    }
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(&event.json);
    out.push(b'}');
}

/// A WAL record decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub source: String,
    /// The tracking plan's mode, when its plan found violations (see the module's format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<Value>,
    pub event: Map<String, Value>,
}

impl StoredEvent {
    pub fn new(source: impl Into<String>, event: Map<String, Value>) -> StoredEvent {
        StoredEvent { source: source.into(), tracking_plan: None, violations: None, event }
    }

    /// Whether its source's plan blocked it: kept out of the events table and destinations.
    pub fn is_blocked(&self) -> bool {
        self.tracking_plan.as_deref() == Some(BLOCK_MODE)
    }

    pub fn decode(bytes: &[u8]) -> Result<StoredEvent, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn message_id(&self) -> Option<&str> {
        self.event.get("messageId").and_then(Value::as_str)
    }

    /// The record's bytes, as the gateway writes them.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("writing to a Vec cannot fail")
    }
}

/// A WAL record read without building its event: the event's top-level members stay raw
/// JSON, read on demand (the lake writer's hot path). Decoding trusts the record's syntax
/// (this program wrote it, after checking it, and the WAL's checksum vouches for the bytes),
/// so it only walks the text; see `raw_json`.
#[derive(Debug)]
pub struct StoredRecord<'a> {
    pub source: Cow<'a, str>,
    /// The tracking plan's mode, when its plan found violations.
    pub tracking_plan: Option<Cow<'a, str>>,
    /// The violations, a JSON array, when its plan found some.
    pub violations: Option<&'a str>,
    pub event: RawObject<'a>,
}

/// The mode whose events are kept out of the events table and destinations.
pub const BLOCK_MODE: &str = "block";

/// Why a WAL record is not a stored event (which only a bug can cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stored event: {0}")]
pub struct UndecodableRecord(&'static str);

impl<'a> StoredRecord<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<StoredRecord<'a>, UndecodableRecord> {
        StoredRecord::decode_nested(bytes, &Nested::NONE)
    }

    /// [`StoredRecord::decode`], also splitting the objects inside the event that `nested`
    /// names (see [`object_members_nested`]).
    pub fn decode_nested(bytes: &'a [u8], nested: &Nested) -> Result<StoredRecord<'a>, UndecodableRecord> {
        let text = std::str::from_utf8(bytes).map_err(|_| UndecodableRecord("not UTF-8"))?;
        if let Some(record) = StoredRecord::decode_as_written(text, nested) {
            return Ok(record);
        }
        let record = object_members(text).ok_or(UndecodableRecord("not a JSON object"))?;
        let Some(Scalar::String(source)) = record.get("source").map(scalar) else {
            return Err(UndecodableRecord("`source` is not a string"));
        };
        let event = record
            .get("event")
            .and_then(|event| object_members_nested(event, nested))
            .ok_or(UndecodableRecord("`event` is not an object"))?;
        let tracking_plan = record.get("tracking_plan").and_then(string_value);
        let violations = record.get("violations").filter(|v| !is_null(v));
        Ok(StoredRecord { source, tracking_plan, violations, event })
    }

    /// The layout [`encode_stored_event`] writes, `{"source":"…","event":{…}}`, read without
    /// walking the event twice (once to find its end, once to split it). `None`: another
    /// layout, read the general way.
    fn decode_as_written(text: &'a str, nested: &Nested) -> Option<StoredRecord<'a>> {
        let rest = text.strip_prefix(r#"{"source":"#)?;
        let (source, rest) = rest.split_at(leading_string_len(rest)?);
        let Scalar::String(source) = scalar(source) else { return None };
        // Splitting refuses anything after the object, so a key added after `event` is
        // never read as part of it.
        let event = object_members_nested(rest.strip_prefix(r#","event":"#)?.strip_suffix('}')?, nested)?;
        Some(StoredRecord { source, tracking_plan: None, violations: None, event })
    }

    /// Whether its source's plan blocked it.
    pub fn is_blocked(&self) -> bool {
        self.tracking_plan.as_deref() == Some(BLOCK_MODE)
    }

    /// A top-level field of the event, when it is a string.
    pub fn text(&self, field: &str) -> Option<Cow<'a, str>> {
        self.event.get(field).and_then(string_value)
    }
}

/// Just enough of a record to rebuild the deduplication index, without building the event.
#[derive(Debug, Deserialize)]
pub struct StoredEventKey<'a> {
    #[serde(borrow)]
    pub source: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub event: EventKey<'a>,
}

#[derive(Debug, Deserialize)]
pub struct EventKey<'a> {
    #[serde(rename = "messageId", borrow)]
    pub message_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "receivedAt", borrow)]
    pub received_at: std::borrow::Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchDefaults, MessageType, Normaliser, RequestMeta, parse_timestamp};

    #[test]
    fn round_trips() {
        let raw = serde_json::value::RawValue::from_string(r#"{"event":"E","userId":"u","messageId":"m-1"}"#.into())
            .expect("raw");
        let meta = RequestMeta {
            received_at: parse_timestamp("2024-01-01T00:00:00Z").expect("ts"),
            client_ip: None,
            ip_policy: crate::IpPolicy::Full,
        };
        let event = Normaliser::default()
            .normalise(&raw, Some(MessageType::Track), &BatchDefaults::default(), &meta)
            .expect("valid");
        let bytes = encode_stored_event("web \"quoted\"", &event);
        let stored = StoredEvent::decode(&bytes).expect("decodes");
        assert_eq!(stored.source, "web \"quoted\"");
        assert_eq!(stored.event, event.fields());
        assert_eq!(stored.message_id(), Some("m-1"));
        let key: StoredEventKey<'_> = serde_json::from_slice(&bytes).expect("key");
        let record = StoredRecord::decode(&bytes).expect("record");
        assert_eq!(record.source, "web \"quoted\"");
        assert_eq!(record.text("messageId").as_deref(), Some("m-1"));
        assert_eq!(record.text("missing"), None);
        assert_eq!(StoredRecord::decode(&stored.encode()).expect("re-encoded").event.members.len(), stored.event.len());
        assert_eq!(key.event.message_id, "m-1");
        assert_eq!(key.event.received_at, "2024-01-01T00:00:00.000000Z");
        for bad in [&b"\xff"[..], b"[]", br#"{"source":1,"event":{}}"#, br#"{"source":"s","event":[]}"#, b"{\"source\""]
        {
            assert!(StoredRecord::decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Other layouts are read too: keys in another order, or added after `event`.
        for other in [r#"{"event":{"a":1},"source":"s"}"#, r#"{"source":"s","event":{"a":1},"later":{"b":2}}"#] {
            let record = StoredRecord::decode(other.as_bytes()).expect("decodes");
            assert_eq!((record.source.as_ref(), record.event.members.len()), ("s", 1), "{other}");
            assert_eq!(record.event.get("a"), Some("1"));
        }
    }
}
