//! What every vendor provides to the delivery engine: a mapping from a stored Segment event to
//! the vendor's payload, a way to pack payloads into requests within the vendor's limits, and
//! an interpretation of the vendor's answer per event.

use std::time::Duration;

use chrono::{DateTime, Utc};
use inlet_segment::StoredEvent;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::amplitude::Amplitude;
use crate::ga4::Ga4;

/// The result of mapping one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Not for this destination (a message type it does not receive).
    Skip,
    /// Can never be made valid for the vendor: goes straight to the dead letters.
    Invalid {
        reason: &'static str,
        detail: String,
    },
    Ready(Payload),
}

/// One event in the vendor's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The event as the vendor wants it.
    pub body: Value,
    /// Events may share a request only with the same key (GA4: the same client and user).
    pub group: String,
    /// Serialised size, for request size limits.
    pub bytes: usize,
}

impl Payload {
    pub fn new(body: Value, group: String) -> Payload {
        let bytes = serde_json::to_vec(&body).map_or(0, |b| b.len());
        Payload { body, group, bytes }
    }
}

/// What became of one event of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again after the policy's backoff (at least `after`, when given).
    Retry {
        after: Option<Duration>,
    },
    /// Send again at once, without counting a failed attempt (the rest of a partly refused
    /// request).
    Resend,
    /// Hold for exactly this long (vendor throttling), then send again.
    Hold(Duration),
    /// The request was too large: send the events again in smaller requests.
    Split,
    DeadLetter {
        reason: &'static str,
    },
}

/// An HTTP request for a vendor.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The vendors Inlet delivers to.
#[derive(Debug, Clone)]
pub enum Vendor {
    Amplitude(Amplitude),
    Ga4(Ga4),
}

impl Vendor {
    /// Maps one event; `now` decides what is too old for the vendor.
    pub fn map(&self, stored: &StoredEvent, now: DateTime<Utc>) -> Mapped {
        match self {
            Vendor::Amplitude(v) => v.map(stored),
            Vendor::Ga4(v) => v.map(stored, now),
        }
    }

    /// Most events and bytes one request may hold.
    pub fn limits(&self) -> RequestLimits {
        match self {
            Vendor::Amplitude(_) => crate::amplitude::LIMITS,
            Vendor::Ga4(_) => crate::ga4::LIMITS,
        }
    }

    pub fn request(&self, payloads: &[&Payload]) -> Request {
        match self {
            Vendor::Amplitude(v) => v.request(payloads),
            Vendor::Ga4(v) => v.request(payloads),
        }
    }

    /// One outcome per event of the request, in order.
    pub fn interpret(&self, status: StatusCode, headers: &HeaderMap, body: &str, events: usize) -> Vec<Outcome> {
        match self {
            Vendor::Amplitude(_) => crate::amplitude::interpret(status, headers, body, events),
            Vendor::Ga4(_) => crate::ga4::interpret(status, headers, events),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_events: usize,
    /// Serialised body size the request must stay under, envelope included.
    pub max_bytes: usize,
}

/// Packs payloads (in order) into requests: same group only, within the limits. Returns
/// index lists into `payloads`. A payload alone over the byte limit still gets a request of
/// its own (the vendor's 413 then dead-letters it).
pub fn pack(payloads: &[&Payload], limits: RequestLimits) -> Vec<Vec<usize>> {
    /// Room for the request envelope (API key, client id, commas).
    const ENVELOPE_BYTES: usize = 1024;
    let mut open: Vec<(String, Vec<usize>, usize)> = Vec::new();
    let mut done = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        let position = open.iter().position(|(group, _, _)| *group == payload.group);
        if let Some(at) = position {
            let (_, members, bytes) = &open[at];
            if members.len() >= limits.max_events || bytes + payload.bytes + 1 + ENVELOPE_BYTES > limits.max_bytes {
                done.push(open.swap_remove(at).1);
            }
        }
        match open.iter_mut().find(|(group, _, _)| *group == payload.group) {
            Some((_, members, bytes)) => {
                members.push(index);
                *bytes += payload.bytes + 1;
            }
            None => open.push((payload.group.clone(), vec![index], payload.bytes)),
        }
    }
    done.extend(open.into_iter().map(|(_, members, _)| members));
    done.sort_by_key(|members| members[0]);
    done
}

/// Text of a JSON value for fields that must be strings (ids sent as numbers).
pub(crate) fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `event[path…]`.
pub(crate) fn at<'a>(event: &'a serde_json::Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut current = event.get(*first)?;
    for key in rest {
        current = current.as_object()?.get(*key)?;
    }
    Some(current).filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(group: &str, bytes: usize) -> Payload {
        Payload { body: Value::Null, group: group.into(), bytes }
    }

    #[test]
    fn packs_by_group_within_limits() {
        let limits = RequestLimits { max_events: 2, max_bytes: 10_000 };
        let items = [payload("a", 10), payload("b", 10), payload("a", 10), payload("a", 10), payload("b", 10)];
        let refs: Vec<&Payload> = items.iter().collect();
        assert_eq!(pack(&refs, limits), vec![vec![0, 2], vec![1, 4], vec![3]]);
        let limits = RequestLimits { max_events: 100, max_bytes: 1024 + 25 };
        let refs: Vec<&Payload> = items.iter().filter(|p| p.group == "a").collect();
        assert_eq!(pack(&refs, limits), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn an_oversized_payload_gets_its_own_request() {
        let limits = RequestLimits { max_events: 10, max_bytes: 2000 };
        let items = [payload("a", 10), payload("a", 5000), payload("a", 10)];
        let refs: Vec<&Payload> = items.iter().collect();
        assert_eq!(pack(&refs, limits), vec![vec![0], vec![1], vec![2]]);
    }
}
