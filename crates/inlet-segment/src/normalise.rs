//! One message in, one normalised event (or a rejection) out.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::ip_policy::IpPolicy;
use crate::message_type::MessageType;
use crate::payload::Limits;
use crate::raw_json::{
    ObjectWriter, RawObject, Scalar, is_null, is_object, object_members, scalar, split_checked, write_json_string,
};
use crate::rejection::{RejectReason, Rejection};
use crate::time::parse_timestamp;

/// Longest accepted `messageId` (Segment's limit).
const MAX_MESSAGE_ID_CHARS: usize = 100;

/// What the normaliser may add to a message of its own: `type`, the ids, `messageId`, the four
/// timestamps and `context.ip` (about 400 bytes at most). The batch's `context` and
/// `integrations` are not part of it: merged into a message, they count against the message's
/// own `max_event_bytes`, so a batch-level context cannot multiply a request's size by its
/// message count.
pub const SERVER_FIELDS_ALLOWANCE: usize = 1024;

/// What a batch's top level contributes to each of its messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchDefaults {
    /// `sentAt` of the batch, used by messages that carry none of their own.
    pub sent_at: Option<String>,
    /// Merged into each message's `context`; the message's own values win.
    pub context: Option<Map<String, Value>>,
    /// Merged into each message's `integrations`; the message's own values win.
    pub integrations: Option<Map<String, Value>>,
}

/// What the server knows about the request a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestMeta {
    /// The server clock when the request arrived: becomes `receivedAt`.
    pub received_at: DateTime<Utc>,
    /// The client's address (after trusted-proxy resolution): fills `context.ip` when absent.
    pub client_ip: Option<IpAddr>,
    /// The source's IP policy, applied to `context.ip` whoever set it.
    pub ip_policy: IpPolicy,
}

/// A validated, normalised message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub message_id: String,
    pub message_type: MessageType,
    /// The message as stored, a JSON object: every field the client sent, except `writeKey`
    /// and `_metadata`, with ids as strings and the four timestamps in one format. What the
    /// normaliser does not rewrite is copied as the client wrote it.
    pub json: Vec<u8>,
    /// The ids as stored (suppression is decided on them).
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// Where in `json` the values of `event`, `properties` and `traits` are, when present: what a
    /// tracking plan checks, found without reading the stored JSON again.
    pub members: CheckedMembers,
}

/// Byte ranges of values in [`Event::json`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedMembers {
    pub event: Option<std::ops::Range<usize>>,
    pub properties: Option<std::ops::Range<usize>>,
    pub traits: Option<std::ops::Range<usize>>,
}

impl Event {
    /// The JSON text of a value [`CheckedMembers`] located.
    pub fn member_text(&self, range: &Option<std::ops::Range<usize>>) -> Option<&str> {
        range.as_ref().and_then(|r| self.json.get(r.clone())).and_then(|bytes| std::str::from_utf8(bytes).ok())
    }
}

impl Event {
    /// The stored fields as a map (for tests and tools: ingestion never builds it).
    pub fn fields(&self) -> Map<String, Value> {
        serde_json::from_slice(&self.json).expect("the normaliser writes readable JSON")
    }
}

/// Fields the normaliser writes itself; the client's values of them are not copied as they are.
const REWRITTEN_FIELDS: [&str; 14] = [
    "writeKey",
    "_metadata",
    "type",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "messageId",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
];

/// Validates and normalises messages.
#[derive(Debug, Clone, Default)]
pub struct Normaliser {
    pub limits: Limits,
}

impl Normaliser {
    pub fn new(limits: Limits) -> Normaliser {
        Normaliser { limits }
    }

    /// Normalises one message. `forced_type` is the type a single-message route imposes.
    pub fn normalise(
        &self,
        raw: &RawValue,
        forced_type: Option<MessageType>,
        defaults: &BatchDefaults,
        meta: &RequestMeta,
    ) -> Result<Event, Rejection> {
        let text = raw.get();
        if text.len() > self.limits.max_event_bytes {
            return Err(Rejection::new(
                RejectReason::EventTooLarge,
                format!("message is {} bytes; at most {} are accepted", text.len(), self.limits.max_event_bytes),
            ));
        }
        // The body's syntax was checked already; what can still fail is the shape, or what
        // the consumers' JSON reader would refuse (see `raw_json`).
        let message = split_checked(text)
            .map_err(|why| Rejection::new(RejectReason::InvalidJson, format!("message is not usable JSON: {why}")))?
            .ok_or_else(|| Rejection::new(RejectReason::NotAnObject, "message must be a JSON object"))?;

        let message_type = match forced_type {
            Some(t) => t,
            None => match message.get("type").map(scalar) {
                None | Some(Scalar::Null) => {
                    return Err(Rejection::new(RejectReason::MissingType, "`type` is required"));
                }
                Some(Scalar::String(s)) => MessageType::parse(&s).ok_or_else(|| {
                    Rejection::new(
                        RejectReason::InvalidType,
                        format!("`type` {s:?} is not one of track, page, screen, identify, group, alias"),
                    )
                })?,
                Some(_) => return Err(Rejection::new(RejectReason::InvalidType, "`type` must be a string")),
            },
        };

        let user_id = normalise_id(&message, "userId")?;
        let anonymous_id = normalise_id(&message, "anonymousId")?;
        if user_id.is_none() && anonymous_id.is_none() {
            return Err(Rejection::new(RejectReason::MissingId, "`userId` or `anonymousId` is required"));
        }
        let previous_id = normalise_id(&message, "previousId")?;
        let group_id = normalise_id(&message, "groupId")?;
        match message_type {
            MessageType::Track => match message.get("event").map(scalar) {
                Some(Scalar::String(s)) if !s.trim().is_empty() => {}
                Some(Scalar::String(_)) | None | Some(Scalar::Null) => {
                    return Err(Rejection::new(RejectReason::MissingEvent, "track needs a non-empty `event`"));
                }
                Some(_) => return Err(Rejection::new(RejectReason::InvalidField, "`event` must be a string")),
            },
            MessageType::Alias if user_id.is_none() => {
                return Err(Rejection::new(RejectReason::MissingUserId, "alias needs `userId`"));
            }
            MessageType::Alias if previous_id.is_none() => {
                return Err(Rejection::new(RejectReason::MissingPreviousId, "alias needs `previousId`"));
            }
            MessageType::Group if group_id.is_none() => {
                return Err(Rejection::new(RejectReason::MissingGroupId, "group needs `groupId`"));
            }
            _ => {}
        }
        for field in ["name", "category"] {
            if !matches!(message.get(field).map(scalar), None | Some(Scalar::String(_)) | Some(Scalar::Null)) {
                return Err(Rejection::new(RejectReason::InvalidField, format!("`{field}` must be a string")));
            }
        }

        let message_id = normalise_message_id(&message)?;
        let properties = object_or_absent(&message, "properties")?;
        let traits = object_or_absent(&message, "traits")?;
        let client_ip = meta.client_ip.and_then(|ip| meta.ip_policy.apply(ip)).map(|ip| ip.to_string());
        let ip = IpRule { fill: client_ip.as_deref(), policy: meta.ip_policy };
        let context = merged_object(&message, "context", defaults.context.as_ref(), Some(ip))?;
        let integrations = merged_object(&message, "integrations", defaults.integrations.as_ref(), None)?;
        let times = normalise_timestamps(&message, defaults.sent_at.as_deref(), meta.received_at)?;

        let mut json = Vec::with_capacity(text.len() + 256);
        let mut out = ObjectWriter::new(&mut json);
        let mut members = CheckedMembers::default();
        for member in &message.members {
            let key = member.key.as_ref();
            let skipped = REWRITTEN_FIELDS.contains(&key)
                || (key == "properties" && properties.is_none())
                || (key == "traits" && traits.is_none());
            if !skipped {
                let range = out.member(member);
                match key {
                    "event" => members.event = Some(range),
                    "properties" => members.properties = Some(range),
                    "traits" => members.traits = Some(range),
                    _ => {}
                }
            }
        }
        out.string("type", message_type.as_str());
        for (field, id) in
            [("userId", &user_id), ("anonymousId", &anonymous_id), ("previousId", &previous_id), ("groupId", &group_id)]
        {
            if let Some(id) = id {
                out.string(field, id);
            }
        }
        out.string("messageId", &message_id);
        for (field, object) in [("context", &context), ("integrations", &integrations)] {
            match object {
                Some(Merged::Raw(raw)) => out.raw(field, raw),
                Some(Merged::Built(text)) => out.raw(field, std::str::from_utf8(text).expect("written as UTF-8")),
                None => {}
            }
        }
        for (field, time) in [
            ("originalTimestamp", times.original),
            ("sentAt", times.sent_at),
            ("timestamp", Some(times.timestamp)),
            ("receivedAt", Some(meta.received_at)),
        ] {
            if let Some(time) = time {
                out.timestamp(field, time);
            }
        }
        out.finish();
        let limit = self.limits.max_event_bytes + SERVER_FIELDS_ALLOWANCE;
        if json.len() > limit {
            return Err(Rejection::new(
                RejectReason::EventTooLarge,
                format!(
                    "message is {} bytes once stored with the batch's context and integrations merged; at most {limit} \
                     are accepted ({} for the message and {SERVER_FIELDS_ALLOWANCE} for the fields the server adds)",
                    json.len(),
                    self.limits.max_event_bytes
                ),
            ));
        }
        Ok(Event { message_id, message_type, json, user_id, anonymous_id, members })
    }
}

/// Ids may be strings or numbers (stored as strings); `null` and `""` count as absent.
fn normalise_id(message: &RawObject<'_>, field: &'static str) -> Result<Option<String>, Rejection> {
    match message.get(field).map(scalar) {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Scalar::String(s)) => Ok(Some(s.into_owned())),
        Some(Scalar::Number(n)) => Ok(Some(n.to_string())),
        Some(Scalar::Bool(_) | Scalar::Other) => {
            Err(Rejection::new(RejectReason::InvalidId, format!("`{field}` must be a string or a number")))
        }
    }
}

fn normalise_message_id(message: &RawObject<'_>) -> Result<String, Rejection> {
    let id = match message.get("messageId").map(scalar) {
        None | Some(Scalar::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Scalar::String(s)) if s.trim().is_empty() => uuid::Uuid::new_v4().to_string(),
        Some(Scalar::String(s)) => s.into_owned(),
        Some(Scalar::Number(n)) => n.to_string(),
        Some(Scalar::Bool(_) | Scalar::Other) => {
            return Err(Rejection::new(RejectReason::InvalidMessageId, "`messageId` must be a string"));
        }
    };
    if id.chars().count() > MAX_MESSAGE_ID_CHARS {
        return Err(Rejection::new(
            RejectReason::InvalidMessageId,
            format!("`messageId` is longer than {MAX_MESSAGE_ID_CHARS} characters"),
        ));
    }
    Ok(id)
}

/// The field's object, if it has one (`null` counts as absent); anything else is refused.
fn object_or_absent<'a>(message: &RawObject<'a>, field: &'static str) -> Result<Option<&'a str>, Rejection> {
    match message.get(field) {
        None => Ok(None),
        Some(raw) if is_null(raw) => Ok(None),
        Some(raw) if is_object(raw) => Ok(Some(raw)),
        Some(_) => Err(Rejection::new(RejectReason::InvalidField, format!("`{field}` must be an object"))),
    }
}

/// An object field after the batch's defaults and the client IP went in.
enum Merged<'a> {
    /// Nothing to add: the client's text.
    Raw(&'a str),
    Built(Vec<u8>),
}

/// What `context.ip` becomes: `fill` (the client's address, the policy applied already) when
/// the message has none, and the policy applied to one it has.
#[derive(Debug, Clone, Copy)]
struct IpRule<'a> {
    fill: Option<&'a str>,
    policy: IpPolicy,
}

/// Deep-merges the batch's object into the message's (the message's own values win), then
/// applies the IP rule (for `context`).
fn merged_object<'a>(
    message: &RawObject<'a>,
    field: &'static str,
    defaults: Option<&Map<String, Value>>,
    ip: Option<IpRule<'_>>,
) -> Result<Option<Merged<'a>>, Rejection> {
    let own = object_or_absent(message, field)?;
    if let Some(defaults) = defaults {
        // Batch-level objects are rare (no official SDK sends them): merge through `Value`.
        let mut merged: Map<String, Value> = match own {
            Some(raw) => serde_json::from_str(raw).expect("checked readable"),
            None => Map::new(),
        };
        merge_missing(&mut merged, defaults);
        if let Some(rule) = ip {
            let value = match merged.remove("ip").filter(|value| !value.is_null()) {
                Some(value) if rule.policy == IpPolicy::Full => Some(value),
                Some(Value::String(text)) => rule.policy.apply_text(&text).map(Value::String),
                Some(_) => None,
                None => rule.fill.map(|fill| Value::String(fill.into())),
            };
            if let Some(value) = value {
                merged.insert("ip".into(), value);
            }
        }
        return Ok(Some(Merged::Built(serde_json::to_vec(&merged).expect("writing to a Vec cannot fail"))));
    }
    let Some(rule) = ip else { return Ok(own.map(Merged::Raw)) };
    if let Some(raw) = own.filter(|raw| !raw.contains(r#""ip""#) && !raw.contains("\\u")) {
        return Ok(Some(match rule.fill {
            Some(fill) => Merged::Built(with_ip_appended(raw, fill)),
            None => Merged::Raw(raw),
        }));
    }
    let members = own.and_then(object_members).unwrap_or_default();
    let existing = members.get("ip").filter(|value| !is_null(value));
    if let Some(raw) = own.filter(|_| existing.is_some() && rule.policy == IpPolicy::Full) {
        return Ok(Some(Merged::Raw(raw)));
    }
    let ip = match existing {
        Some(value) => match scalar(value) {
            Scalar::String(text) => rule.policy.apply_text(&text),
            _ => None,
        },
        None => rule.fill.map(str::to_owned),
    };
    if own.is_none() && ip.is_none() {
        return Ok(None);
    }
    let mut built = Vec::new();
    let mut out = ObjectWriter::new(&mut built);
    for member in members.members.iter().filter(|member| member.key != "ip") {
        out.member(member);
    }
    if let Some(ip) = &ip {
        out.string("ip", ip);
    }
    out.finish();
    Ok(Some(Merged::Built(built)))
}

/// `object` (an object's text, nothing around it) with an `ip` member added last. Only for
/// objects without an `ip` key: most contexts have none anywhere, and appending spares
/// splitting them (a key can spell `ip` only with a `\u` escape, so those are split).
fn with_ip_appended(object: &str, ip: &str) -> Vec<u8> {
    let open = &object[..object.len() - 1];
    let mut built = Vec::with_capacity(object.len() + ip.len() + 8);
    built.extend_from_slice(open.as_bytes());
    if !open[1..].trim().is_empty() {
        built.push(b',');
    }
    built.extend_from_slice(br#""ip":"#);
    write_json_string(&mut built, ip);
    built.push(b'}');
    built
}

fn merge_missing(target: &mut Map<String, Value>, defaults: &Map<String, Value>) {
    for (key, value) in defaults {
        match (target.get_mut(key), value) {
            (None, _) | (Some(Value::Null), _) => {
                target.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(inner)), Value::Object(inner_defaults)) => merge_missing(inner, inner_defaults),
            _ => {}
        }
    }
}

/// `originalTimestamp` = the client's `timestamp`; `receivedAt` = the server clock;
/// `timestamp` = `receivedAt − (sentAt − originalTimestamp)`, correcting the client's clock.
/// Without `sentAt` the client's timestamp is taken as is; without a client timestamp the
/// event happened when it was received.
fn normalise_timestamps(
    message: &RawObject<'_>,
    batch_sent_at: Option<&str>,
    received_at: DateTime<Utc>,
) -> Result<Times, Rejection> {
    let present = |field| message.get(field).filter(|raw| !is_null(raw));
    let original = match present("timestamp") {
        Some(raw) => Some(timestamp_value(raw, "timestamp")?),
        None => match present("originalTimestamp") {
            Some(raw) => Some(timestamp_value(raw, "originalTimestamp")?),
            None => None,
        },
    };
    let sent_at = match present("sentAt") {
        Some(raw) => Some(timestamp_value(raw, "sentAt")?),
        None => match batch_sent_at {
            Some(s) => Some(parse_timestamp(s).ok_or_else(|| invalid_timestamp("sentAt", s))?),
            None => None,
        },
    };
    let timestamp = match (original, sent_at) {
        (Some(original), Some(sent_at)) => {
            let skew = sent_at.signed_duration_since(original);
            received_at.checked_sub_signed(skew).ok_or_else(|| {
                Rejection::new(RejectReason::InvalidTimestamp, "`sentAt` and `timestamp` are too far apart")
            })?
        }
        (Some(original), None) => original,
        (None, _) => received_at,
    };
    Ok(Times { original, sent_at, timestamp })
}

/// A message's times after clock correction (`receivedAt` is the request's).
struct Times {
    original: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    timestamp: DateTime<Utc>,
}

fn timestamp_value(raw: &str, field: &'static str) -> Result<DateTime<Utc>, Rejection> {
    match scalar(raw) {
        Scalar::String(s) => parse_timestamp(&s).ok_or_else(|| invalid_timestamp(field, &s)),
        _ => Err(Rejection::new(RejectReason::InvalidTimestamp, format!("`{field}` must be an ISO-8601 string"))),
    }
}

fn invalid_timestamp(field: &str, value: &str) -> Rejection {
    let shown: String = value.chars().take(40).collect();
    Rejection::new(RejectReason::InvalidTimestamp, format!("`{field}` {shown:?} is not an ISO-8601 timestamp"))
}

#[cfg(test)]
mod tests;
