//! What every vendor provides to the delivery engine: a mapping from a stored Segment event to
//! the vendor's payloads (one call may need several of the vendor's APIs: Amplitude's `group`
//! is an event and a Group Identify), a way to pack payloads into requests within each API's
//! limits, and an interpretation of the vendor's answer per event.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
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
    Invalid { reason: &'static str, detail: String },
    /// One payload per vendor API call the message needs (at least one); the message is
    /// delivered once every one of them is.
    Ready(Vec<Payload>),
}

/// Which of a vendor's APIs a payload goes to. Payloads share a request only with the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// Amplitude's HTTP V2 API, GA4's Measurement Protocol.
    Events,
    /// Amplitude's Identify API (`/identify`).
    Identify,
    /// Amplitude's Group Identify API (`/groupidentify`).
    GroupIdentify,
    /// Amplitude's User Mapping API (`/usermap`).
    UserMapping,
}

impl Api {
    /// The name in status reports.
    pub fn name(self) -> &'static str {
        match self {
            Api::Events => "events",
            Api::Identify => "identify",
            Api::GroupIdentify => "group_identify",
            Api::UserMapping => "user_mapping",
        }
    }
}

/// One vendor API call's share of an event, in the vendor's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub api: Api,
    /// The event as the vendor wants it.
    pub body: Value,
    /// `body` serialised once: its size decides the packing, and requests are assembled from it.
    pub json: Vec<u8>,
    /// Events may share a request only with the same key (GA4: the same client and user).
    pub group: String,
    /// The identity (device, client) whose payloads must reach the vendor in the order they
    /// were received: payloads of one identity never travel in concurrent requests.
    pub order_key: u64,
}

impl Payload {
    pub fn new(api: Api, body: Value, group: String, identity: &str) -> Payload {
        use std::hash::{Hash, Hasher};
        let json = serde_json::to_vec(&body).expect("a JSON value serialises");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        identity.hash(&mut hasher);
        Payload { api, body, json, group, order_key: hasher.finish() }
    }
}

/// The payloads' serialised bodies as a JSON array, appended to `out`.
pub(crate) fn json_array(payloads: &[&Payload], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, payload) in payloads.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&payload.json);
    }
    out.push(b']');
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

    /// Most events and bytes one request to `api` may hold.
    pub fn limits(&self, api: Api) -> RequestLimits {
        match self {
            Vendor::Amplitude(_) => crate::amplitude::limits(api),
            Vendor::Ga4(_) => crate::ga4::LIMITS,
        }
    }

    pub fn request(&self, payloads: &[&Payload]) -> Request {
        match self {
            Vendor::Amplitude(v) => v.request(payloads),
            Vendor::Ga4(v) => v.request(payloads),
        }
    }

    /// One outcome per event of a request to `api`, in order.
    pub fn interpret(
        &self,
        api: Api,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        events: usize,
    ) -> Vec<Outcome> {
        match self {
            Vendor::Amplitude(_) => crate::amplitude::interpret(api, status, headers, body, events),
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

/// Packs payloads (in order) into requests: same API and group only, within that API's limits.
/// Returns index lists into `payloads`. A payload alone over the byte limit still gets a
/// request of its own (the vendor's 413 then dead-letters it).
pub fn pack(payloads: &[&Payload], limits: impl Fn(Api) -> RequestLimits) -> Vec<Vec<usize>> {
    /// Room for the request envelope (API key, client id, commas).
    const ENVELOPE_BYTES: usize = 1024;
    // The open request of each API and group: its members and their bytes.
    let mut open: HashMap<(Api, &str), (Vec<usize>, usize)> = HashMap::new();
    let mut done = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        let limits = limits(payload.api);
        match open.entry((payload.api, payload.group.as_str())) {
            Entry::Occupied(mut request) => {
                let (members, bytes) = request.get_mut();
                if members.len() >= limits.max_events
                    || *bytes + payload.json.len() + 1 + ENVELOPE_BYTES > limits.max_bytes
                {
                    done.push(std::mem::replace(members, vec![index]));
                    *bytes = payload.json.len();
                } else {
                    members.push(index);
                    *bytes += payload.json.len() + 1;
                }
            }
            Entry::Vacant(slot) => {
                slot.insert((vec![index], payload.json.len()));
            }
        }
    }
    done.extend(open.into_values().map(|(members, _)| members));
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
        Payload { api: Api::Events, body: Value::Null, json: vec![b' '; bytes], group: group.into(), order_key: 0 }
    }

    #[test]
    fn packs_by_group_within_limits() {
        let limits = RequestLimits { max_events: 2, max_bytes: 10_000 };
        let items = [payload("a", 10), payload("b", 10), payload("a", 10), payload("a", 10), payload("b", 10)];
        let refs: Vec<&Payload> = items.iter().collect();
        assert_eq!(pack(&refs, |_| limits), vec![vec![0, 2], vec![1, 4], vec![3]]);
        let limits = RequestLimits { max_events: 100, max_bytes: 1024 + 25 };
        let refs: Vec<&Payload> = items.iter().filter(|p| p.group == "a").collect();
        assert_eq!(pack(&refs, |_| limits), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn packs_each_api_apart() {
        let limits = RequestLimits { max_events: 10, max_bytes: 10_000 };
        let mut items = [payload("", 10), payload("", 10), payload("", 10)];
        items[1].api = Api::GroupIdentify;
        let refs: Vec<&Payload> = items.iter().collect();
        assert_eq!(pack(&refs, |_| limits), vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn an_oversized_payload_gets_its_own_request() {
        let limits = RequestLimits { max_events: 10, max_bytes: 2000 };
        let items = [payload("a", 10), payload("a", 5000), payload("a", 10)];
        let refs: Vec<&Payload> = items.iter().collect();
        assert_eq!(pack(&refs, |_| limits), vec![vec![0], vec![1], vec![2]]);
    }
}
