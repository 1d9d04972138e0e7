//! GA4 Measurement Protocol (`/mp/collect`).
//!
//! GA4 answers 2xx even to payloads it then discards, so every payload is made valid here or
//! dead-lettered with the reason; nothing invalid is sent. The rules (from the Measurement
//! Protocol reference and `/debug/mp/collect`): 1–25 events per request; event and parameter
//! names ≤ 40 characters matching `^[A-Za-z][A-Za-z0-9_]*$`, no reserved names or prefixes;
//! ≤ 25 parameters per event; parameter values ≤ 100 characters; ≤ 25 user properties with
//! names ≤ 24 and values ≤ 36 characters; body < 130,000 bytes; timestamps back-dated ≤ 72 h.
//!
//! Mapping (Segment's GA4 destination): page → `page_view` with `page_location`,
//! `page_referrer`, `page_title` from `context.page`; screen → `screen_view` with
//! `screen_name`; track → the GA4 e-commerce event for Segment's e-commerce spec names (Order
//! Completed → `purchase`, …, with `items` from `products`), else the event name made valid
//! (trimmed, lowercased, other characters → `_`, ≤ 40). `client_id` ← anonymousId (or userId,
//! configurable; the other is the fallback); `user_id` ← userId; `timestamp_micros` ←
//! timestamp; `engagement_time_msec` ← properties (default 1, as Segment); `session_id` when
//! the client sent one; user properties ← traits (or `context.traits`). group → GA4's
//! recommended `join_group` event with `group_id` ← groupId (the group's traits describe the
//! group, not the user, so they are not sent as user properties). alias is not sent: GA4 has
//! no identity merging; it joins a user's devices through `user_id` on their later events.
//!
//! What cannot be made valid: a name that is reserved or does not start with a letter, an
//! event older than 72 hours → dead letters. Parameters beyond 25 and nested values GA4
//! cannot hold are left out of the payload (they stay in the lake); values are truncated.

use std::time::Duration;

use chrono::{DateTime, Utc};
use inlet_segment::{StoredEvent, parse_timestamp};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

use crate::config::ClientIdFrom;
use crate::retry::RetryPolicy;
use crate::vendor::{Api, Mapped, Outcome, Payload, Request, RequestLimits, at, text};

pub const DEFAULT_ENDPOINT: &str = "https://www.google-analytics.com/mp/collect";
/// 25 events and 130,000 bytes per request.
pub const LIMITS: RequestLimits = RequestLimits { max_events: 25, max_bytes: 130_000 };
pub const MAX_PARAMS: usize = 25;
pub const MAX_NAME_CHARS: usize = 40;
pub const MAX_PARAM_VALUE_CHARS: usize = 100;
pub const MAX_USER_PROPERTIES: usize = 25;
pub const MAX_USER_PROPERTY_NAME_CHARS: usize = 24;
pub const MAX_USER_PROPERTY_VALUE_CHARS: usize = 36;
pub const MAX_BACKDATE: Duration = Duration::from_secs(72 * 3600);
pub const RESERVED_PREFIXES: [&str; 4] = ["_", "firebase_", "ga_", "google_"];
pub const RESERVED_EVENT_NAMES: [&str; 37] = [
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "firebase_campaign",
    "firebase_in_app_message_action",
    "firebase_in_app_message_dismiss",
    "firebase_in_app_message_impression",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "notification_send",
    "os_update",
    "session_start",
    "session_start_with_rollout",
    "user_engagement",
];
pub const RESERVED_USER_PROPERTIES: [&str; 5] =
    ["first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id", "first_open_after_install"];

/// Segment e-commerce spec names → GA4 recommended events.
const ECOMMERCE_EVENTS: [(&str, &str); 16] = [
    ("Order Completed", "purchase"),
    ("Product Added", "add_to_cart"),
    ("Product Removed", "remove_from_cart"),
    ("Product Viewed", "view_item"),
    ("Product Clicked", "select_item"),
    ("Product List Viewed", "view_item_list"),
    ("Cart Viewed", "view_cart"),
    ("Checkout Started", "begin_checkout"),
    ("Payment Info Entered", "add_payment_info"),
    ("Promotion Viewed", "view_promotion"),
    ("Promotion Clicked", "select_promotion"),
    ("Products Searched", "search"),
    ("Signed Up", "sign_up"),
    ("Signed In", "login"),
    ("Order Refunded", "refund"),
    ("Product Added to Wishlist", "add_to_wishlist"),
];

/// Segment property → GA4 parameter for e-commerce events.
const ECOMMERCE_PARAMS: [(&str, &str); 9] = [
    ("currency", "currency"),
    ("order_id", "transaction_id"),
    ("coupon", "coupon"),
    ("shipping", "shipping"),
    ("tax", "tax"),
    ("query", "search_term"),
    ("method", "method"),
    ("list_id", "item_list_id"),
    ("promotion_id", "promotion_id"),
];

/// Segment product field → GA4 item field.
const ITEM_FIELDS: [(&str, &str); 9] = [
    ("product_id", "item_id"),
    ("sku", "item_id"),
    ("name", "item_name"),
    ("brand", "item_brand"),
    ("category", "item_category"),
    ("variant", "item_variant"),
    ("price", "price"),
    ("quantity", "quantity"),
    ("coupon", "coupon"),
];

#[derive(Debug, Clone)]
pub struct Ga4 {
    pub measurement_id: String,
    pub api_secret: String,
    pub endpoint: String,
    pub client_id_from: ClientIdFrom,
    pub types: Vec<String>,
}

impl Ga4 {
    pub fn map(&self, stored: &StoredEvent, now: DateTime<Utc>) -> Mapped {
        let e = &stored.event;
        let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
        if !self.types.iter().any(|t| t == kind) {
            return Mapped::Skip;
        }
        let user_id = text(e.get("userId"));
        let anonymous_id = text(e.get("anonymousId"));
        let client_id = match self.client_id_from {
            ClientIdFrom::AnonymousId => anonymous_id.or_else(|| user_id.clone()),
            ClientIdFrom::UserId => user_id.clone().or(anonymous_id),
        };
        let Some(client_id) = client_id else {
            return Mapped::Invalid { reason: "missing_client_id", detail: "neither anonymousId nor userId".into() };
        };
        let Some(time) = e.get("timestamp").and_then(Value::as_str).and_then(parse_timestamp) else {
            return Mapped::Invalid { reason: "invalid_timestamp", detail: "the stored event has no timestamp".into() };
        };
        if (now - time).to_std().is_ok_and(|age| age > MAX_BACKDATE) {
            return Mapped::Invalid {
                reason: "timestamp_too_old",
                detail: format!("{time} is more than 72 hours ago; GA4 refuses older events"),
            };
        }
        let (name, mut params) = match event_and_params(kind, e) {
            Ok(mapped) => mapped,
            Err((reason, detail)) => return Mapped::Invalid { reason, detail },
        };
        let properties = e.get("properties").and_then(Value::as_object);
        let engagement = properties.and_then(|p| p.get("engagement_time_msec")).filter(|v| v.is_number());
        params.insert("engagement_time_msec".into(), engagement.cloned().unwrap_or_else(|| json!(1)));
        let session = properties
            .and_then(|p| p.get("session_id"))
            .or_else(|| at(e, &["integrations", "Google Analytics 4", "sessionId"]))
            .or_else(|| at(e, &["integrations", "Google Analytics 4", "session_id"]));
        if let Some(session) = session.and_then(|v| text(Some(v))) {
            params.insert("session_id".into(), json!(session));
        }
        if let Some(properties) = properties {
            let mut keys: Vec<&String> = properties.keys().collect();
            keys.sort();
            for key in keys {
                if params.len() >= MAX_PARAMS {
                    break;
                }
                let Some(name) = valid_name(key, MAX_NAME_CHARS) else { continue };
                if params.contains_key(&name) || is_consumed_property(key) {
                    continue;
                }
                if let Some(value) = scalar(&properties[key], MAX_PARAM_VALUE_CHARS) {
                    params.insert(name, value);
                }
            }
        }
        let mut event = json!({"name": name, "params": params, "timestamp_micros": time.timestamp_micros()});
        if params_too_many(&event) {
            // Cannot happen with the loop above; kept as the last line of defence.
            return Mapped::Invalid { reason: "too_many_params", detail: "more than 25 parameters".into() };
        }
        let user_id = user_id.filter(|id| id.chars().count() <= 256);
        let user_properties = user_properties(e, kind);
        let group = serde_json::to_string(&(&client_id, &user_id, &user_properties)).expect("serialises");
        let mut body = Map::new();
        body.insert("client_id".into(), json!(client_id));
        if let Some(id) = user_id {
            body.insert("user_id".into(), json!(id));
        }
        if !user_properties.is_empty() {
            body.insert("user_properties".into(), Value::Object(user_properties));
        }
        body.insert("event".into(), event.take());
        Mapped::Ready(vec![Payload::new(Api::Events, Value::Object(body), group, &client_id)])
    }

    pub fn request(&self, payloads: &[&Payload]) -> Request {
        let first = &payloads[0].body;
        let mut body = Map::new();
        for key in ["client_id", "user_id", "user_properties"] {
            if let Some(value) = first.get(key) {
                body.insert(key.into(), value.clone());
            }
        }
        body.insert(
            "events".into(),
            Value::Array(payloads.iter().filter_map(|p| p.body.get("event").cloned()).collect()),
        );
        let mut url = reqwest::Url::parse(&self.endpoint).expect("validated at configuration");
        url.query_pairs_mut()
            .append_pair("measurement_id", &self.measurement_id)
            .append_pair("api_secret", &self.api_secret);
        Request {
            url: url.into(),
            content_type: "application/json",
            body: serde_json::to_vec(&Value::Object(body)).expect("a JSON value serialises"),
        }
    }
}

fn params_too_many(event: &Value) -> bool {
    event["params"].as_object().is_some_and(|p| p.len() > MAX_PARAMS)
}

/// Why an event cannot be sent: a reason code and a sentence.
type Refusal = (&'static str, String);

fn event_and_params(kind: &str, e: &Map<String, Value>) -> Result<(String, Map<String, Value>), Refusal> {
    let mut params = Map::new();
    let mut put = |key: &str, value: Option<&Value>| {
        if let Some(value) = value.and_then(|v| scalar(v, MAX_PARAM_VALUE_CHARS)) {
            params.insert(key.into(), value);
        }
    };
    let name = match kind {
        "page" => {
            put("page_location", at(e, &["context", "page", "url"]).or_else(|| at(e, &["properties", "url"])));
            put(
                "page_referrer",
                at(e, &["context", "page", "referrer"]).or_else(|| at(e, &["properties", "referrer"])),
            );
            put(
                "page_title",
                at(e, &["context", "page", "title"])
                    .or_else(|| at(e, &["properties", "title"]))
                    .or_else(|| e.get("name")),
            );
            "page_view".to_owned()
        }
        "screen" => {
            put("screen_name", e.get("name"));
            "screen_view".to_owned()
        }
        "group" => {
            if text(e.get("groupId")).is_none() {
                return Err(("missing_fields", "a group call without a groupId".into()));
            }
            put("group_id", e.get("groupId"));
            "join_group".to_owned()
        }
        _ => {
            let event = text(e.get("event")).unwrap_or_default();
            match ECOMMERCE_EVENTS.iter().find(|(segment, _)| segment.eq_ignore_ascii_case(event.trim())) {
                Some((_, ga4)) => {
                    for (from, to) in ECOMMERCE_PARAMS {
                        put(to, at(e, &["properties", from]));
                    }
                    let value = ["revenue", "total", "value", "price"].iter().find_map(|k| at(e, &["properties", k]));
                    put("value", value.filter(|v| v.is_number()));
                    let items = items(e);
                    if !items.is_empty() {
                        params.insert("items".into(), Value::Array(items));
                    }
                    (*ga4).to_owned()
                }
                None => {
                    let name = valid_name(&event, MAX_NAME_CHARS).ok_or_else(|| {
                        (
                            "invalid_name",
                            format!("event name {event:?} cannot be made a GA4 name (it must start with a letter)"),
                        )
                    })?;
                    if RESERVED_EVENT_NAMES.contains(&name.as_str()) {
                        return Err(("reserved_name", format!("{name:?} is reserved by GA4")));
                    }
                    name
                }
            }
        }
    };
    Ok((name, params))
}

/// Properties the e-commerce mapping already turned into parameters.
fn is_consumed_property(key: &str) -> bool {
    matches!(key, "products" | "revenue" | "total" | "value" | "engagement_time_msec" | "session_id")
        || ECOMMERCE_PARAMS.iter().any(|(from, _)| *from == key)
}

fn items(e: &Map<String, Value>) -> Vec<Value> {
    let products: Vec<&Value> = match at(e, &["properties", "products"]) {
        Some(Value::Array(products)) => products.iter().collect(),
        // Single-product events (Product Added, Product Viewed) carry the product inline.
        _ if at(e, &["properties", "product_id"]).is_some() || at(e, &["properties", "sku"]).is_some() => {
            e.get("properties").into_iter().collect()
        }
        _ => Vec::new(),
    };
    products
        .into_iter()
        .filter_map(Value::as_object)
        .map(|product| {
            let mut item = Map::new();
            for (from, to) in ITEM_FIELDS {
                if item.contains_key(to) {
                    continue;
                }
                if let Some(value) = product.get(from).and_then(|v| scalar(v, MAX_PARAM_VALUE_CHARS)) {
                    item.insert(to.into(), value);
                }
            }
            Value::Object(item)
        })
        .filter(|item| item.as_object().is_some_and(|i| i.contains_key("item_id") || i.contains_key("item_name")))
        .collect()
}

fn user_properties(e: &Map<String, Value>, kind: &str) -> Map<String, Value> {
    let own_traits = if kind == "group" { None } else { e.get("traits") };
    let traits = own_traits.or_else(|| at(e, &["context", "traits"])).and_then(Value::as_object);
    let mut out = Map::new();
    let Some(traits) = traits else { return out };
    let mut keys: Vec<&String> = traits.keys().collect();
    keys.sort();
    for key in keys {
        if out.len() >= MAX_USER_PROPERTIES {
            break;
        }
        let Some(name) = valid_name(key, MAX_USER_PROPERTY_NAME_CHARS) else { continue };
        if RESERVED_USER_PROPERTIES.contains(&name.as_str()) || out.contains_key(&name) {
            continue;
        }
        if let Some(value) = scalar(&traits[key], MAX_USER_PROPERTY_VALUE_CHARS) {
            out.insert(name, json!({"value": value}));
        }
    }
    out
}

/// A valid GA4 name from any text: trimmed, lowercased, runs of other characters → one `_`,
/// at most `max` characters; `None` when it does not start with a letter or has a reserved
/// prefix.
pub fn valid_name(raw: &str, max: usize) -> Option<String> {
    let mut name = String::with_capacity(raw.len());
    for c in raw.trim().chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let name: String = name.trim_end_matches('_').chars().take(max).collect();
    let name = name.trim_end_matches('_').to_owned();
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    (starts_with_letter && !RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))).then_some(name)
}

/// A parameter value GA4 can hold: numbers as they are, strings truncated, booleans as text;
/// objects, arrays and null have none.
fn scalar(value: &Value, max_chars: usize) -> Option<Value> {
    match value {
        Value::Number(_) => Some(value.clone()),
        Value::String(s) => Some(Value::String(s.chars().take(max_chars).collect())),
        Value::Bool(b) => Some(Value::String(b.to_string())),
        _ => None,
    }
}

/// 2xx delivered; retriable statuses retried; anything else dead-lettered.
pub fn interpret(status: StatusCode, headers: &HeaderMap, events: usize) -> Vec<Outcome> {
    if status.is_success() {
        return vec![Outcome::Delivered; events];
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return vec![Outcome::Split; events];
    }
    if RetryPolicy::is_retriable_status(status) {
        let after = crate::retry::retry_after(headers, Utc::now());
        return vec![Outcome::Retry { after }; events];
    }
    vec![Outcome::DeadLetter { reason: "rejected" }; events]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_names_are_those_the_receiver_enforces() {
        use inlet_receivers::ga4 as receiver;
        assert_eq!(RESERVED_PREFIXES, receiver::RESERVED_PREFIXES);
        assert_eq!(RESERVED_EVENT_NAMES, receiver::RESERVED_EVENTS);
        assert_eq!(RESERVED_USER_PROPERTIES, receiver::RESERVED_USER_PROPERTIES);
    }

    #[test]
    fn names_are_made_valid_or_refused() {
        assert_eq!(valid_name("  Article Viewed ", 40).as_deref(), Some("article_viewed"));
        assert_eq!(valid_name("Sign-up: step #2", 40).as_deref(), Some("sign_up_step_2"));
        assert_eq!(valid_name(&"x".repeat(50), 40).map(|n| n.len()), Some(40));
        assert_eq!(valid_name("2FA Enabled", 40), None);
        assert_eq!(valid_name("_private", 40), None);
        assert_eq!(valid_name("Google Login", 40), None);
        assert_eq!(valid_name("", 40), None);
    }
}
