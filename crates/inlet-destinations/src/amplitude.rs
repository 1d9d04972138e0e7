//! Amplitude HTTP V2 API (`/2/httpapi`, or `/batch` through the endpoint setting).
//!
//! Mapping (Segment's Amplitude (Actions) defaults, plus `insert_id`):
//! `event_type` ← `event`; page/screen → `Viewed {name}` (`Viewed Page` / `Viewed Screen`
//! without a name); identify → `$identify` with `user_properties.$set` ← traits;
//! `user_id` ← userId; `device_id` ← context.device.id, else anonymousId; `time` ← timestamp
//! in epoch ms; `insert_id` ← messageId, so a retry or a replay is never counted twice;
//! `event_properties` ← properties; `user_properties` ← traits / context.traits; platform, OS,
//! device, carrier, location, language, ip, app version, library and revenue fields from
//! context and properties; `session_id` from `integrations["Actions Amplitude"].session_id`
//! when analytics.js's Amplitude plugin set it.
//!
//! `group` and `alias` (Segment's Amplitude (Actions) "Group Identify User" and Amplitude's own
//! APIs): a `group` call associates the user with the group through the Identify API
//! (`identification` with `groups: {group_type: groupId}`, so Amplitude puts the user's later
//! events in the group) and sets the group's traits through the Group Identify API
//! (`group_properties.$set`); `group_type` is a destination setting. Any call with
//! `context.groupId` (Segment's common field for B2B attribution) carries `groups` on the event
//! itself. `alias` maps `previousId` to `userId` through the User Mapping API
//! (`{user_id: previousId, global_user_id: userId}`; it needs Amplitude's Portfolio add-on, so
//! `alias` is not among the default types). The three APIs are form-encoded, each with its own
//! limits ([`limits`]); repeats are harmless (they set the same values again).
//!
//! Ids: a blocked value (Amplitude's list: `null`, `undefined`, `0`, …) is dropped from its
//! field, so the event still counts under the other id; an id shorter than `min_id_length` is
//! dropped the same way. An event left with neither id cannot be valid and is dead-lettered
//! (`invalid_ids`) without being sent. `min_id_length` is sent as `options.min_id_length`.

use std::time::Duration;

use inlet_segment::{StoredEvent, parse_timestamp};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::retry::RetryPolicy;
use crate::vendor::{self, Api, Mapped, Outcome, Payload, Request, RequestLimits, at, text};

pub const DEFAULT_ENDPOINT: &str = "https://api2.amplitude.com/2/httpapi";
/// The User Mapping API lives on another host than event ingestion.
pub const DEFAULT_USER_MAPPING_ENDPOINT: &str = "https://api.amplitude.com/usermap";
/// The group type a `group` call's `groupId` is a value of, unless configured.
pub const DEFAULT_GROUP_TYPE: &str = "group";
/// Under 1 MB and at most 2,000 events per request (`/2/httpapi`; `/batch` allows more bytes).
pub const LIMITS: RequestLimits = RequestLimits { max_events: 2000, max_bytes: 1_000_000 };
/// Group Identify: at most 1,024 group identifies and 1 MB per request. The Identify API
/// documents no count; the same bound is kept.
const IDENTIFY_LIMITS: RequestLimits = RequestLimits { max_events: 1024, max_bytes: 1_000_000 };
/// User Mapping: at most 2,000 mappings and 1 MB per request.
const USER_MAPPING_LIMITS: RequestLimits = RequestLimits { max_events: 2000, max_bytes: 1_000_000 };
/// How long Amplitude asks throttled events to wait (30 s on `/2/httpapi`).
const THROTTLE_HOLD: Duration = Duration::from_secs(30);
/// The Identify, Group Identify and User Mapping APIs ask for 15 s.
const FORM_API_THROTTLE_HOLD: Duration = Duration::from_secs(15);

/// Most events and bytes one request to `api` may hold.
pub fn limits(api: Api) -> RequestLimits {
    match api {
        Api::Events => LIMITS,
        Api::Identify | Api::GroupIdentify => IDENTIFY_LIMITS,
        Api::UserMapping => USER_MAPPING_LIMITS,
    }
}
/// Id values Amplitude refuses (compared case-insensitively), as its HTTP V2 API documents them.
pub const BLOCKED_IDS: [&str; 14] = [
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "na",
    "undefined",
    "unknown",
    "",
    "00000000-0000-0000-0000-000000000000",
    "{}",
    "lmy47d",
    "0",
    "-1",
];

#[derive(Debug, Clone)]
pub struct Amplitude {
    pub api_key: String,
    pub endpoint: String,
    pub min_id_length: usize,
    pub types: Vec<String>,
    pub group_type: String,
    pub user_mapping_endpoint: String,
}

impl Amplitude {
    pub fn map(&self, stored: &StoredEvent) -> Mapped {
        let e = &stored.event;
        let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
        if !self.types.iter().any(|t| t == kind) {
            return Mapped::Skip;
        }
        if kind == "alias" {
            return self.map_alias(e);
        }
        let user_id = self.usable_id(text(e.get("userId")));
        let device_id = self
            .usable_id(text(at(e, &["context", "device", "id"])).or_else(|| text(e.get("anonymousId"))))
            .or_else(|| self.usable_id(text(e.get("anonymousId"))));
        if user_id.is_none() && device_id.is_none() {
            return Mapped::Invalid {
                reason: "invalid_ids",
                detail: format!(
                    "neither userId nor a device id is a usable Amplitude id (at least {} characters, not a blocked value)",
                    self.min_id_length
                ),
            };
        }
        let order_key = device_id.clone().or_else(|| user_id.clone()).unwrap_or_default();
        if kind == "group" {
            return self.map_group(e, user_id, device_id, &order_key);
        }
        let name = text(e.get("name"));
        let event_type = match kind {
            "track" => text(e.get("event")).unwrap_or_default(),
            "page" => format!("Viewed {}", name.as_deref().unwrap_or("Page")),
            "screen" => format!("Viewed {}", name.as_deref().unwrap_or("Screen")),
            "identify" => "$identify".to_owned(),
            other => other.to_owned(),
        };
        if event_type.is_empty() {
            return Mapped::Invalid {
                reason: "missing_event_name",
                detail: "a track call without an event name".into(),
            };
        }
        let Some(time) = e.get("timestamp").and_then(Value::as_str).and_then(parse_timestamp) else {
            return Mapped::Invalid { reason: "invalid_timestamp", detail: "the stored event has no timestamp".into() };
        };
        let mut out = Map::new();
        out.insert("event_type".into(), json!(event_type));
        if let Some(id) = user_id {
            out.insert("user_id".into(), json!(id));
        }
        if let Some(id) = device_id {
            out.insert("device_id".into(), json!(id));
        }
        out.insert("time".into(), json!(time.timestamp_millis()));
        if let Some(id) = text(e.get("messageId")) {
            out.insert("insert_id".into(), json!(id));
        }
        let traits = e.get("traits").or_else(|| at(e, &["context", "traits"])).filter(|t| t.is_object());
        if kind == "identify" {
            out.insert("user_properties".into(), json!({"$set": traits.cloned().unwrap_or_else(|| json!({}))}));
        } else {
            let properties = e.get("properties").filter(|p| p.is_object()).cloned().unwrap_or_else(|| json!({}));
            out.insert("event_properties".into(), properties);
            if let Some(traits) = traits {
                out.insert("user_properties".into(), traits.clone());
            }
        }
        self.context_fields(e, &mut out);
        revenue_fields(e, &mut out);
        if let Some(session) = at(e, &["integrations", "Actions Amplitude", "session_id"]).and_then(Value::as_i64) {
            out.insert("session_id".into(), json!(session));
        }
        if let Some(group) = text(at(e, &["context", "groupId"])) {
            out.insert("groups".into(), json!({self.group_type.as_str(): group}));
        }
        Mapped::Ready(vec![Payload::new(Api::Events, Value::Object(out), String::new(), &order_key)])
    }

    /// The user joins the group (Identify API); the group gets its traits (Group Identify API).
    fn map_group(
        &self,
        e: &Map<String, Value>,
        user_id: Option<String>,
        device_id: Option<String>,
        order_key: &str,
    ) -> Mapped {
        let Some(group) = text(e.get("groupId")) else {
            return Mapped::Invalid { reason: "missing_fields", detail: "a group call without a groupId".into() };
        };
        let mut identification = Map::new();
        if let Some(id) = user_id {
            identification.insert("user_id".into(), json!(id));
        }
        if let Some(id) = device_id {
            identification.insert("device_id".into(), json!(id));
        }
        identification.insert("groups".into(), json!({self.group_type.as_str(): group}));
        let mut payloads = vec![Payload::new(Api::Identify, Value::Object(identification), String::new(), order_key)];
        if let Some(traits) = e.get("traits").and_then(Value::as_object).filter(|t| !t.is_empty()) {
            let group_identify = json!({
                "group_type": self.group_type,
                "group_value": group,
                "group_properties": {"$set": traits},
            });
            payloads.push(Payload::new(Api::GroupIdentify, group_identify, String::new(), order_key));
        }
        Mapped::Ready(payloads)
    }

    /// `previousId` becomes one of `userId`'s ids (User Mapping API).
    fn map_alias(&self, e: &Map<String, Value>) -> Mapped {
        let (Some(previous), Some(user)) = (text(e.get("previousId")), text(e.get("userId"))) else {
            return Mapped::Invalid {
                reason: "missing_fields",
                detail: "an alias call needs previousId and userId".into(),
            };
        };
        let mapping = json!({"user_id": previous, "global_user_id": user});
        Mapped::Ready(vec![Payload::new(Api::UserMapping, mapping, String::new(), &previous)])
    }

    fn usable_id(&self, id: Option<String>) -> Option<String> {
        id.filter(|id| id.chars().count() >= self.min_id_length && !BLOCKED_IDS.contains(&id.to_lowercase().as_str()))
    }

    fn context_fields(&self, e: &Map<String, Value>, out: &mut Map<String, Value>) {
        let library = text(at(e, &["context", "library", "name"]));
        let platform = text(at(e, &["context", "device", "type"])).or_else(|| {
            library
                .as_deref()
                .filter(|l| l.starts_with("analytics.js") || l.starts_with("analytics-next"))
                .map(|_| "Web".into())
        });
        let fields: [(&str, Option<String>); 14] = [
            ("platform", platform),
            ("os_name", text(at(e, &["context", "os", "name"]))),
            ("os_version", text(at(e, &["context", "os", "version"]))),
            ("device_brand", text(at(e, &["context", "device", "brand"]))),
            ("device_manufacturer", text(at(e, &["context", "device", "manufacturer"]))),
            ("device_model", text(at(e, &["context", "device", "model"]))),
            ("carrier", text(at(e, &["context", "network", "carrier"]))),
            ("country", text(at(e, &["context", "location", "country"]))),
            ("region", text(at(e, &["context", "location", "region"]))),
            ("city", text(at(e, &["context", "location", "city"]))),
            ("language", text(at(e, &["context", "locale"]))),
            ("ip", text(at(e, &["context", "ip"]))),
            ("app_version", text(at(e, &["context", "app", "version"]))),
            (
                "library",
                library.map(|name| match text(at(e, &["context", "library", "version"])) {
                    Some(version) => format!("{name}/{version}"),
                    None => name,
                }),
            ),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                out.insert(key.into(), json!(value));
            }
        }
    }

    /// One request of payloads to the same API, assembled from their serialised bodies.
    pub fn request(&self, payloads: &[&Payload]) -> Request {
        let (url, field) = match payloads[0].api {
            Api::Events => {
                let total: usize = payloads.iter().map(|p| p.json.len() + 1).sum();
                let mut body = Vec::with_capacity(total + 128);
                body.extend_from_slice(b"{\"api_key\":");
                serde_json::to_writer(&mut body, &self.api_key).expect("a string serialises");
                body.extend_from_slice(b",\"events\":");
                vendor::json_array(payloads, &mut body);
                body.extend_from_slice(
                    format!(",\"options\":{{\"min_id_length\":{}}}}}", self.min_id_length).as_bytes(),
                );
                return Request { url: self.endpoint.clone(), content_type: "application/json", body };
            }
            Api::Identify => (self.sibling_endpoint("/identify"), "identification"),
            Api::GroupIdentify => (self.sibling_endpoint("/groupidentify"), "identification"),
            Api::UserMapping => (self.user_mapping_endpoint.clone(), "mapping"),
        };
        let mut items = Vec::new();
        vendor::json_array(payloads, &mut items);
        let items = String::from_utf8(items).expect("serialised JSON is UTF-8");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("api_key", &self.api_key)
            .append_pair(field, &items)
            .finish();
        Request { url, content_type: "application/x-www-form-urlencoded", body: body.into_bytes() }
    }

    /// `/identify` and `/groupidentify` on the host (and region) of the configured events
    /// endpoint.
    fn sibling_endpoint(&self, path: &str) -> String {
        let mut url = reqwest::Url::parse(&self.endpoint).expect("validated at configuration");
        url.set_path(path);
        url.set_query(None);
        url.into()
    }
}

fn revenue_fields(e: &Map<String, Value>, out: &mut Map<String, Value>) {
    let number = |key: &str| at(e, &["properties", key]).filter(|v| v.is_number()).cloned();
    for (from, to) in [("revenue", "revenue"), ("price", "price"), ("quantity", "quantity")] {
        if let Some(value) = number(from) {
            out.insert(to.into(), value);
        }
    }
    if let Some(id) = text(at(e, &["properties", "product_id"]).or_else(|| at(e, &["properties", "productId"]))) {
        out.insert("productId".into(), json!(id));
    }
    if let Some(kind) = text(at(e, &["properties", "revenueType"]).or_else(|| at(e, &["properties", "revenue_type"]))) {
        out.insert("revenueType".into(), json!(kind));
    }
}

/// Amplitude's error bodies; every field optional, unknown ones ignored.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    events_with_invalid_fields: std::collections::BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    events_with_missing_fields: std::collections::BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    events_with_invalid_id_lengths: std::collections::BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    silenced_events: Vec<usize>,
    #[serde(default)]
    throttled_events: Vec<usize>,
}

/// Per event: 200 delivered; 400 dead-letters exactly the events it names and resends the
/// rest (a 400 naming none refuses the whole request); 413 splits; 429 holds the throttled
/// events (30 s or `Retry-After`) and resends the rest at once; retriable statuses retry;
/// anything else is dead-lettered. The form APIs name no events: a 400 refuses the request
/// and a 429 holds all of it (15 s).
pub fn interpret(api: Api, status: StatusCode, headers: &HeaderMap, body: &str, events: usize) -> Vec<Outcome> {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let retry_after = crate::retry::retry_after(headers, chrono::Utc::now());
    if api != Api::Events && status == StatusCode::TOO_MANY_REQUESTS {
        return vec![Outcome::Hold(retry_after.unwrap_or(FORM_API_THROTTLE_HOLD)); events];
    }
    match status.as_u16() {
        200..=299 => vec![Outcome::Delivered; events],
        400 => {
            let mut outcomes = vec![Outcome::Resend; events];
            let named = [
                (&parsed.events_with_invalid_fields, "invalid_fields"),
                (&parsed.events_with_missing_fields, "missing_fields"),
                (&parsed.events_with_invalid_id_lengths, "invalid_id_lengths"),
            ];
            let mut any = false;
            for (fields, reason) in named {
                for index in fields.values().flatten().filter(|i| **i < events) {
                    outcomes[*index] = Outcome::DeadLetter { reason };
                    any = true;
                }
            }
            for index in parsed.silenced_events.iter().filter(|i| **i < events) {
                outcomes[*index] = Outcome::DeadLetter { reason: "silenced" };
                any = true;
            }
            if any { outcomes } else { vec![Outcome::DeadLetter { reason: "rejected" }; events] }
        }
        413 => vec![Outcome::Split; events],
        429 => {
            let hold = Outcome::Hold(retry_after.unwrap_or(THROTTLE_HOLD));
            if parsed.throttled_events.is_empty() {
                return vec![hold; events];
            }
            let mut outcomes = vec![Outcome::Resend; events];
            for index in parsed.throttled_events.iter().filter(|i| **i < events) {
                outcomes[*index] = hold.clone();
            }
            outcomes
        }
        _ if RetryPolicy::is_retriable_status(status) => vec![Outcome::Retry { after: retry_after }; events],
        _ => vec![Outcome::DeadLetter { reason: "rejected" }; events],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocked_ids_are_those_the_receiver_refuses() {
        assert_eq!(BLOCKED_IDS, inlet_receivers::amplitude::BLOCKED_IDS);
    }

    #[test]
    fn the_form_apis_hold_a_whole_throttled_request_for_15_seconds() {
        let headers = HeaderMap::new();
        for api in [Api::Identify, Api::GroupIdentify, Api::UserMapping] {
            let outcomes = interpret(api, StatusCode::TOO_MANY_REQUESTS, &headers, "too many", 3);
            assert_eq!(outcomes, vec![Outcome::Hold(FORM_API_THROTTLE_HOLD); 3]);
            let outcomes = interpret(api, StatusCode::BAD_REQUEST, &headers, "invalid mapping", 2);
            assert_eq!(outcomes, vec![Outcome::DeadLetter { reason: "rejected" }; 2]);
        }
        let outcomes = interpret(Api::Events, StatusCode::TOO_MANY_REQUESTS, &headers, "{}", 1);
        assert_eq!(outcomes, vec![Outcome::Hold(THROTTLE_HOLD)]);
    }
}
