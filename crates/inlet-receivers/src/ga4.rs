//! GA4 Measurement Protocol (`POST /mp/collect`, `POST /debug/mp/collect`), as documented:
//! `measurement_id` and `api_secret` in the query; body `{client_id, user_id?,
//! timestamp_micros?, user_properties?, events: [{name, params?, timestamp_micros?}]}`;
//! 1–25 events; names ≤ 40 characters matching `^[A-Za-z][A-Za-z0-9_]*$` without reserved
//! names or prefixes; ≤ 25 params with values ≤ 100 characters; ≤ 25 user properties, names
//! ≤ 24 and values ≤ 36 characters; body ≤ 130,000 bytes; timestamps ≤ 72 h old.
//!
//! `/debug/mp/collect` answers the `validationMessages`. `/mp/collect` answers 204 whatever
//! it got, like GA4: valid payloads are recorded as received events, invalid ones as invalid
//! payloads with their messages (what GA4 would silently drop), so a test can assert none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use crate::{Fault, FaultQueue, cut_response, lock};

// GA4's reserved names, copied here rather than taken from inlet-destinations: the receiver
// stands for GA4 and must not take its rules from the code it checks. A test in
// inlet-destinations keeps the two copies equal.
pub const RESERVED_PREFIXES: [&str; 4] = ["_", "firebase_", "ga_", "google_"];
pub const RESERVED_USER_PROPERTIES: [&str; 5] =
    ["first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id", "first_open_after_install"];
pub const RESERVED_EVENTS: [&str; 37] = [
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
const MAX_BACKDATE: Duration = Duration::from_secs(72 * 3600);

/// One event as GA4 would record it, with the request's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent {
    pub client_id: String,
    pub user_id: Option<String>,
    pub user_properties: Map<String, Value>,
    pub name: String,
    pub params: Map<String, Value>,
    pub timestamp_micros: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Ga4Receiver {
    measurement_id: String,
    api_secret: String,
    pub faults: FaultQueue,
    /// Every answer of `/mp/collect` waits this long first (a vendor's round trip).
    pub latency_ms: std::sync::atomic::AtomicU64,
    /// Count valid events without keeping them (benchmarks).
    pub count_only: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<ReceivedEvent>,
    /// Valid events received, also in count-only mode.
    received: u64,
    /// Payloads GA4 would have dropped, with why.
    invalid: Vec<(Value, Vec<Value>)>,
    requests: usize,
    max_batch: usize,
}

impl Ga4Receiver {
    pub fn new(measurement_id: &str, api_secret: &str) -> Ga4Receiver {
        Ga4Receiver {
            measurement_id: measurement_id.to_owned(),
            api_secret: api_secret.to_owned(),
            ..Ga4Receiver::default()
        }
    }

    pub fn events(&self) -> Vec<ReceivedEvent> {
        lock(&self.inner).events.clone()
    }

    /// Payloads that broke a rule, with GA4's validation messages.
    pub fn invalid(&self) -> Vec<(Value, Vec<Value>)> {
        lock(&self.inner).invalid.clone()
    }

    pub fn requests(&self) -> usize {
        lock(&self.inner).requests
    }

    pub fn max_batch(&self) -> usize {
        lock(&self.inner).max_batch
    }

    /// Valid events received (also in count-only mode).
    pub fn received(&self) -> u64 {
        lock(&self.inner).received
    }
}

pub fn router(state: Arc<Ga4Receiver>) -> Router {
    Router::new().route("/mp/collect", post(collect)).route("/debug/mp/collect", post(debug)).with_state(state)
}

async fn debug(
    State(state): State<Arc<Ga4Receiver>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let (_, messages) = validate(&state, &query, &body);
    axum::Json(json!({"validationMessages": messages})).into_response()
}

async fn collect(
    State(state): State<Arc<Ga4Receiver>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let latency = state.latency_ms.load(std::sync::atomic::Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    lock(&state.inner).requests += 1;
    match state.faults.next() {
        Some(Fault::Status(code)) => {
            return StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response();
        }
        Some(Fault::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Some(Fault::CutResponse) => return cut_response(),
        Some(Fault::IngestThenStatus(code)) => {
            record(&state, &query, &body);
            return StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response();
        }
        Some(Fault::Throttle { .. } | Fault::InvalidEvents(_)) | None => {}
    }
    record(&state, &query, &body);
    StatusCode::NO_CONTENT.into_response()
}

fn record(state: &Ga4Receiver, query: &HashMap<String, String>, body: &[u8]) {
    let (payload, messages) = validate(state, query, body);
    let mut inner = lock(&state.inner);
    if !messages.is_empty() {
        inner.invalid.push((payload, messages));
        return;
    }
    let events = payload["events"].as_array().cloned().unwrap_or_default();
    inner.max_batch = inner.max_batch.max(events.len());
    inner.received += events.len() as u64;
    if state.count_only.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    for event in events {
        inner.events.push(ReceivedEvent {
            client_id: payload["client_id"].as_str().unwrap_or_default().to_owned(),
            user_id: payload.get("user_id").and_then(Value::as_str).map(str::to_owned),
            user_properties: payload.get("user_properties").and_then(Value::as_object).cloned().unwrap_or_default(),
            name: event["name"].as_str().unwrap_or_default().to_owned(),
            params: event.get("params").and_then(Value::as_object).cloned().unwrap_or_default(),
            timestamp_micros: event
                .get("timestamp_micros")
                .or_else(|| payload.get("timestamp_micros"))
                .and_then(Value::as_i64),
        });
    }
}

fn message(field: &str, description: &str, code: &str) -> Value {
    json!({"fieldPath": field, "description": description, "validationCode": code})
}

fn valid_name(name: &str, max: usize) -> Result<(), &'static str> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("NAME_INVALID");
    }
    if name.chars().count() > max {
        return Err("VALUE_OUT_OF_BOUNDS");
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err("NAME_RESERVED");
    }
    Ok(())
}

fn text_len(value: &Value) -> usize {
    match value {
        Value::String(s) => s.chars().count(),
        other => other.to_string().chars().count(),
    }
}

/// The payload (as parsed) and GA4's validation messages for it.
fn validate(state: &Ga4Receiver, query: &HashMap<String, String>, body: &[u8]) -> (Value, Vec<Value>) {
    let mut out = Vec::new();
    if query.get("measurement_id") != Some(&state.measurement_id) {
        out.push(message("measurement_id", "unknown measurement_id", "VALUE_INVALID"));
    }
    if query.get("api_secret") != Some(&state.api_secret) {
        out.push(message("api_secret", "wrong api_secret", "VALUE_INVALID"));
    }
    if body.len() > 130_000 {
        out.push(message("", "body over 130000 bytes", "VALUE_OUT_OF_BOUNDS"));
    }
    let payload: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            out.push(message("", "body is not a JSON object", "VALUE_INVALID"));
            return (Value::Null, out);
        }
    };
    if payload.get("client_id").and_then(Value::as_str).is_none_or(str::is_empty) {
        out.push(message("client_id", "client_id is required", "VALUE_REQUIRED"));
    }
    if let Some(user_id) = payload.get("user_id")
        && user_id.as_str().is_none_or(|u| u.chars().count() > 256)
    {
        out.push(message("user_id", "user_id must be a string of at most 256 characters", "VALUE_INVALID"));
    }
    let now_micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    let check_time = |field: &str, value: Option<&Value>, out: &mut Vec<Value>| {
        if let Some(value) = value {
            match value.as_i64() {
                Some(t) if t > 1_000_000_000_000_000 && now_micros - t <= MAX_BACKDATE.as_micros() as i64 => {}
                Some(_) => out.push(message(
                    field,
                    "timestamp_micros must be microseconds within the last 72 hours",
                    "VALUE_OUT_OF_BOUNDS",
                )),
                None => out.push(message(field, "timestamp_micros must be an integer", "VALUE_INVALID")),
            }
        }
    };
    check_time("timestamp_micros", payload.get("timestamp_micros"), &mut out);
    if let Some(props) = payload.get("user_properties") {
        match props.as_object() {
            None => out.push(message("user_properties", "must be an object", "VALUE_INVALID")),
            Some(props) => {
                if props.len() > 25 {
                    out.push(message("user_properties", "at most 25 user properties", "EXCEEDED_MAX_ENTITIES"));
                }
                for (name, prop) in props {
                    let field = format!("user_properties.{name}");
                    if let Err(code) = valid_name(name, 24) {
                        out.push(message(&field, "invalid user property name", code));
                    } else if RESERVED_USER_PROPERTIES.contains(&name.as_str()) {
                        out.push(message(&field, "reserved user property name", "NAME_RESERVED"));
                    }
                    match prop.get("value") {
                        Some(v) if (v.is_string() || v.is_number()) && text_len(v) <= 36 => {}
                        _ => out.push(message(
                            &field,
                            "value must be a string or number of at most 36 characters",
                            "VALUE_INVALID",
                        )),
                    }
                }
            }
        }
    }
    match payload.get("events").and_then(Value::as_array) {
        None => out.push(message("events", "events are required", "VALUE_REQUIRED")),
        Some(events) if events.is_empty() || events.len() > 25 => {
            out.push(message("events", "between 1 and 25 events", "EXCEEDED_MAX_ENTITIES"));
        }
        Some(events) => {
            for (i, event) in events.iter().enumerate() {
                let at = format!("events[{i}]");
                match event.get("name").and_then(Value::as_str) {
                    None => out.push(message(&format!("{at}.name"), "event name is required", "VALUE_REQUIRED")),
                    Some(name) => {
                        if let Err(code) = valid_name(name, 40) {
                            out.push(message(&format!("{at}.name"), "invalid event name", code));
                        } else if RESERVED_EVENTS.contains(&name) {
                            out.push(message(&format!("{at}.name"), "reserved event name", "NAME_RESERVED"));
                        }
                    }
                }
                check_time(&format!("{at}.timestamp_micros"), event.get("timestamp_micros"), &mut out);
                let Some(params) = event.get("params") else { continue };
                let Some(params) = params.as_object() else {
                    out.push(message(&format!("{at}.params"), "params must be an object", "VALUE_INVALID"));
                    continue;
                };
                if params.len() > 25 {
                    out.push(message(&format!("{at}.params"), "at most 25 params", "EXCEEDED_MAX_ENTITIES"));
                }
                for (name, value) in params {
                    let field = format!("{at}.params.{name}");
                    if let Err(code) = valid_name(name, 40) {
                        out.push(message(&field, "invalid param name", code));
                    }
                    match value {
                        Value::String(s) if s.chars().count() > 100 => {
                            out.push(message(&field, "param value over 100 characters", "VALUE_OUT_OF_BOUNDS"));
                        }
                        Value::String(_) | Value::Number(_) => {}
                        Value::Array(items) if name == "items" => {
                            if items.len() > 200 || !items.iter().all(Value::is_object) {
                                out.push(message(&field, "items must be at most 200 objects", "VALUE_INVALID"));
                            }
                        }
                        _ => out.push(message(&field, "param values must be strings or numbers", "VALUE_INVALID")),
                    }
                }
            }
        }
    }
    (payload, out)
}
