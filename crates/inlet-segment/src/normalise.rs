//! One message in, one normalised event (or a rejection) out.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::message_type::MessageType;
use crate::payload::Limits;
use crate::rejection::{RejectReason, Rejection};
use crate::time::{format_timestamp, parse_timestamp};

/// Longest accepted `messageId` (Segment's limit).
const MAX_MESSAGE_ID_CHARS: usize = 100;

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
}

/// A validated, normalised message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub message_id: String,
    pub message_type: MessageType,
    /// The message as stored: every field the client sent, except `writeKey` and `_metadata`,
    /// with ids as strings and the four timestamps in one format.
    pub fields: Map<String, Value>,
}

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
        let size = raw.get().len();
        if size > self.limits.max_event_bytes {
            return Err(Rejection::new(
                RejectReason::EventTooLarge,
                format!("message is {size} bytes; at most {} are accepted", self.limits.max_event_bytes),
            ));
        }
        // The body's syntax was checked already; what can still fail is the shape, the depth
        // (serde_json's limit of 128 levels keeps a hostile message off the stack) or a number
        // beyond the range of a double.
        let mut fields: Map<String, Value> = serde_json::from_str(raw.get()).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                Rejection::new(RejectReason::NotAnObject, "message must be a JSON object")
            }
            _ => Rejection::new(RejectReason::InvalidJson, format!("message is not usable JSON: {e}")),
        })?;
        fields.remove("writeKey");
        fields.remove("_metadata");

        let message_type = match forced_type {
            Some(t) => t,
            None => match fields.get("type") {
                None | Some(Value::Null) => {
                    return Err(Rejection::new(RejectReason::MissingType, "`type` is required"));
                }
                Some(Value::String(s)) => MessageType::parse(s).ok_or_else(|| {
                    Rejection::new(
                        RejectReason::InvalidType,
                        format!("`type` {s:?} is not one of track, page, screen, identify, group, alias"),
                    )
                })?,
                Some(_) => return Err(Rejection::new(RejectReason::InvalidType, "`type` must be a string")),
            },
        };
        fields.insert("type".into(), Value::String(message_type.as_str().into()));

        let user_id = normalise_id(&mut fields, "userId")?;
        let anonymous_id = normalise_id(&mut fields, "anonymousId")?;
        if user_id.is_none() && anonymous_id.is_none() {
            return Err(Rejection::new(RejectReason::MissingId, "`userId` or `anonymousId` is required"));
        }
        let previous_id = normalise_id(&mut fields, "previousId")?;
        let group_id = normalise_id(&mut fields, "groupId")?;
        match message_type {
            MessageType::Track => match fields.get("event") {
                Some(Value::String(s)) if !s.trim().is_empty() => {}
                Some(Value::String(_)) | None | Some(Value::Null) => {
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
            if !matches!(fields.get(field), None | Some(Value::String(_)) | Some(Value::Null)) {
                return Err(Rejection::new(RejectReason::InvalidField, format!("`{field}` must be a string")));
            }
        }

        let message_id = normalise_message_id(&mut fields)?;
        for field in ["properties", "traits"] {
            object_or_absent(&mut fields, field)?;
        }
        merge_object_field(&mut fields, "context", defaults.context.as_ref())?;
        merge_object_field(&mut fields, "integrations", defaults.integrations.as_ref())?;
        if let Some(ip) = meta.client_ip {
            let context = fields
                .entry("context")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("context was checked to be an object");
            if matches!(context.get("ip"), None | Some(Value::Null)) {
                context.insert("ip".into(), Value::String(ip.to_string()));
            }
        }
        normalise_timestamps(&mut fields, defaults.sent_at.as_deref(), meta.received_at)?;
        Ok(Event { message_id, message_type, fields })
    }
}

/// Ids may be strings or numbers (stored as strings); `null` and `""` count as absent.
fn normalise_id(fields: &mut Map<String, Value>, field: &'static str) -> Result<Option<String>, Rejection> {
    let id = match fields.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(Rejection::new(RejectReason::InvalidId, format!("`{field}` must be a string or a number")));
        }
    };
    if let Some(id) = &id {
        fields.insert(field.into(), Value::String(id.clone()));
    }
    Ok(id)
}

fn normalise_message_id(fields: &mut Map<String, Value>) -> Result<String, Rejection> {
    let id = match fields.get("messageId") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) if s.trim().is_empty() => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(Rejection::new(RejectReason::InvalidMessageId, "`messageId` must be a string")),
    };
    if id.chars().count() > MAX_MESSAGE_ID_CHARS {
        return Err(Rejection::new(
            RejectReason::InvalidMessageId,
            format!("`messageId` is longer than {MAX_MESSAGE_ID_CHARS} characters"),
        ));
    }
    fields.insert("messageId".into(), Value::String(id.clone()));
    Ok(id)
}

fn object_or_absent(fields: &mut Map<String, Value>, field: &'static str) -> Result<(), Rejection> {
    match fields.get(field) {
        None | Some(Value::Object(_)) => Ok(()),
        Some(Value::Null) => {
            fields.remove(field);
            Ok(())
        }
        Some(_) => Err(Rejection::new(RejectReason::InvalidField, format!("`{field}` must be an object"))),
    }
}

/// Deep-merges the batch's object into the message's; the message's own values win.
fn merge_object_field(
    fields: &mut Map<String, Value>,
    field: &'static str,
    defaults: Option<&Map<String, Value>>,
) -> Result<(), Rejection> {
    object_or_absent(fields, field)?;
    let Some(defaults) = defaults else { return Ok(()) };
    match fields.get_mut(field) {
        Some(Value::Object(target)) => merge_missing(target, defaults),
        _ => {
            fields.insert(field.into(), Value::Object(defaults.clone()));
        }
    }
    Ok(())
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
    fields: &mut Map<String, Value>,
    batch_sent_at: Option<&str>,
    received_at: DateTime<Utc>,
) -> Result<(), Rejection> {
    let original = match fields.get("timestamp").filter(|v| !v.is_null()) {
        Some(v) => Some(timestamp_value(v, "timestamp")?),
        None => match fields.get("originalTimestamp").filter(|v| !v.is_null()) {
            Some(v) => Some(timestamp_value(v, "originalTimestamp")?),
            None => None,
        },
    };
    let sent_at = match fields.get("sentAt").filter(|v| !v.is_null()) {
        Some(v) => Some(timestamp_value(v, "sentAt")?),
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
    fields.remove("originalTimestamp");
    fields.remove("sentAt");
    if let Some(original) = original {
        fields.insert("originalTimestamp".into(), Value::String(format_timestamp(original)));
    }
    if let Some(sent_at) = sent_at {
        fields.insert("sentAt".into(), Value::String(format_timestamp(sent_at)));
    }
    fields.insert("timestamp".into(), Value::String(format_timestamp(timestamp)));
    fields.insert("receivedAt".into(), Value::String(format_timestamp(received_at)));
    Ok(())
}

fn timestamp_value(value: &Value, field: &'static str) -> Result<DateTime<Utc>, Rejection> {
    match value {
        Value::String(s) => parse_timestamp(s).ok_or_else(|| invalid_timestamp(field, s)),
        _ => Err(Rejection::new(RejectReason::InvalidTimestamp, format!("`{field}` must be an ISO-8601 string"))),
    }
}

fn invalid_timestamp(field: &str, value: &str) -> Rejection {
    let shown: String = value.chars().take(40).collect();
    Rejection::new(RejectReason::InvalidTimestamp, format!("`{field}` {shown:?} is not an ISO-8601 timestamp"))
}

#[cfg(test)]
mod tests;
