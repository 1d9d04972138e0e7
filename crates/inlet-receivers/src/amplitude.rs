//! Amplitude HTTP V2 API (`POST /2/httpapi`, `POST /batch`), as documented: JSON body
//! `{api_key, events, options?}`; < 1 MB (20 MB on `/batch`) and ≤ 2,000 events, else 413;
//! each event needs `event_type` and a `user_id` or `device_id` of at least `min_id_length`
//! (default 5) characters that is not a blocked value; `time` must be an integer (epoch ms);
//! `insert_id` dedupes within 7 days; `groups` holds at most 5 group types and 10 group values.
//! Any invalid event refuses the whole request with 400, naming the offending events by index,
//! and nothing of it is ingested.
//!
//! The form-encoded APIs (`api_key` and a JSON field, body < 1 MB, else 413; anything
//! malformed refuses the whole request with 400 and a text body; `200 success`):
//! - Identify `POST /identify`, `identification` (an object or an array): each needs a usable
//!   `user_id` or `device_id`; `groups` and `user_properties` as on events.
//! - Group Identify `POST /groupidentify`, `identification`: at most 1,024 per request and
//!   1,024 group properties in all; each needs string `group_type` and `group_value`, and
//!   `group_properties`, if any, is an object.
//! - User Mapping `POST /usermap`, `mapping` (an array of at most 2,000): each needs a string
//!   `user_id` and a string `global_user_id` or `unmap: true`. At most 1,500 mappings in any
//!   30 seconds: beyond, every request is answered 429 until the window falls under it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::{Fault, FaultQueue, cut_response, lock};

/// Id values Amplitude documents as refused; kept equal to the destination's list by its test.
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

#[derive(Debug, Default)]
pub struct AmplitudeReceiver {
    api_key: String,
    pub faults: FaultQueue,
    /// Faults for the next User Privacy API requests.
    pub deletion_faults: FaultQueue,
    /// Every answer of the ingestion APIs waits this long first (a vendor's round trip).
    pub latency_ms: AtomicU64,
    /// Count ingested events without keeping them (benchmarks).
    pub count_only: AtomicBool,
    /// Event upload requests being answered now, and the most seen at once.
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    inner: Mutex<Inner>,
}

/// Mappings the User Mapping API takes in any 30 seconds.
pub const USER_MAPPINGS_PER_30S: usize = 1500;
const USER_MAPPING_WINDOW: Duration = Duration::from_secs(30);
/// Group identifies, and group properties in all, one Group Identify request may carry.
pub const MAX_GROUP_IDENTIFIES: usize = 1024;
pub const MAX_USER_MAPPINGS: usize = 2000;
/// Group types and group values (in all) one event or identification may carry.
const MAX_GROUP_TYPES: usize = 5;
const MAX_GROUP_VALUES: usize = 10;
const FORM_MAX_BYTES: usize = 1_000_000;

/// The project's secret key the User Privacy API expects (with the API key, in Basic auth).
pub const SECRET_KEY: &str = "amp-secret-key";
/// Ids one deletion request may carry (`user_ids` and `amplitude_ids` together).
pub const MAX_DELETION_IDS: usize = 100;

#[derive(Debug, Default)]
struct Inner {
    /// Ingested events, in order, unique by `insert_id`.
    events: Vec<Value>,
    by_insert_id: HashMap<String, usize>,
    /// Events dropped as repeats of an `insert_id` already ingested.
    duplicates: usize,
    requests: usize,
    refused_requests: usize,
    /// The largest number of events seen in one request.
    max_batch: usize,
    /// Events ingested, also in count-only mode.
    ingested: u64,
    identifications: Vec<Value>,
    group_identifies: Vec<Value>,
    user_mappings: Vec<Value>,
    /// When recent mappings were taken, for the User Mapping API's rate limit.
    user_mapping_window: VecDeque<(Instant, usize)>,
    /// User ids of each accepted deletion request, in order.
    deletions: Vec<Vec<String>>,
    refused_deletions: usize,
}

impl AmplitudeReceiver {
    pub fn new(api_key: &str) -> AmplitudeReceiver {
        AmplitudeReceiver { api_key: api_key.to_owned(), ..AmplitudeReceiver::default() }
    }

    /// Ingested events (one per `insert_id`).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.inner).events.clone()
    }

    pub fn duplicates(&self) -> usize {
        lock(&self.inner).duplicates
    }

    pub fn requests(&self) -> usize {
        lock(&self.inner).requests
    }

    pub fn refused_requests(&self) -> usize {
        lock(&self.inner).refused_requests
    }

    pub fn max_batch(&self) -> usize {
        lock(&self.inner).max_batch
    }

    /// The most event upload requests that were in flight at once.
    pub fn max_concurrent_requests(&self) -> usize {
        self.max_in_flight.load(Ordering::Relaxed)
    }

    /// Events ingested (one per `insert_id` unless in count-only mode).
    pub fn ingested(&self) -> u64 {
        lock(&self.inner).ingested
    }

    /// Identify API identifications taken, in order.
    pub fn identifications(&self) -> Vec<Value> {
        lock(&self.inner).identifications.clone()
    }

    /// Group Identify API identifications taken, in order.
    pub fn group_identifies(&self) -> Vec<Value> {
        lock(&self.inner).group_identifies.clone()
    }

    /// User Mapping API mappings taken, in order.
    pub fn user_mappings(&self) -> Vec<Value> {
        lock(&self.inner).user_mappings.clone()
    }

    /// The user ids of each accepted deletion request.
    pub fn deletions(&self) -> Vec<Vec<String>> {
        lock(&self.inner).deletions.clone()
    }

    pub fn refused_deletions(&self) -> usize {
        lock(&self.inner).refused_deletions
    }

    fn ingest(&self, events: &[Value]) {
        let mut inner = lock(&self.inner);
        if self.count_only.load(Ordering::Relaxed) {
            inner.ingested += events.len() as u64;
            return;
        }
        for event in events {
            let key = event.get("insert_id").and_then(Value::as_str).map(str::to_owned);
            if let Some(key) = &key
                && inner.by_insert_id.contains_key(key)
            {
                inner.duplicates += 1;
                continue;
            }
            let index = inner.events.len();
            inner.ingested += 1;
            inner.events.push(event.clone());
            if let Some(key) = key {
                inner.by_insert_id.insert(key, index);
            }
        }
    }
}

pub fn router(state: Arc<AmplitudeReceiver>) -> Router {
    Router::new()
        .route("/2/httpapi", post(|s, h, b| upload(s, h, b, 1_000_000)))
        .route("/batch", post(|s, h, b| upload(s, h, b, 20_000_000)))
        .route("/api/2/deletions/users", post(delete_users))
        .route("/identify", post(identify))
        .route("/groupidentify", post(group_identify))
        .route("/usermap", post(user_map))
        .with_state(state)
}

/// A form API's refusal: Amplitude answers these with a short text body.
fn refuse(status: StatusCode, text: &str) -> Response {
    (status, text.to_owned()).into_response()
}

/// After the latency: the form's `api_key` checked and its JSON `field` parsed into a list of
/// at most `max_items`.
async fn form_items(
    state: &AmplitudeReceiver,
    body: &[u8],
    field: &str,
    max_items: usize,
) -> Result<Vec<Value>, (StatusCode, String)> {
    state.answer_after_latency().await;
    if body.len() >= FORM_MAX_BYTES {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "request too large".into()));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if form.get("api_key") != Some(&state.api_key) {
        return Err((StatusCode::BAD_REQUEST, "invalid api_key".into()));
    }
    let items = match form.get(field).map(|text| serde_json::from_str::<Value>(text)) {
        Some(Ok(Value::Array(items))) if !items.is_empty() => items,
        Some(Ok(item @ Value::Object(_))) if field == "identification" => vec![item],
        _ => return Err((StatusCode::BAD_REQUEST, format!("missing or invalid {field}"))),
    };
    if items.len() > max_items {
        return Err((StatusCode::BAD_REQUEST, format!("more than {max_items} items in {field}")));
    }
    Ok(items)
}

/// `groups`: an object of at most 5 group types whose values (strings, or arrays of them)
/// number at most 10 in all.
fn valid_groups(groups: &Value) -> bool {
    let Some(groups) = groups.as_object() else { return false };
    let mut values = 0;
    for value in groups.values() {
        match value {
            Value::String(_) => values += 1,
            Value::Array(items) if items.iter().all(Value::is_string) => values += items.len(),
            _ => return false,
        }
    }
    groups.len() <= MAX_GROUP_TYPES && values <= MAX_GROUP_VALUES
}

fn usable_id(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_str)
        .is_some_and(|id| id.chars().count() >= 5 && !BLOCKED_IDS.contains(&id.to_lowercase().as_str()))
}

async fn identify(State(state): State<Arc<AmplitudeReceiver>>, body: Bytes) -> Response {
    let items = match form_items(&state, &body, "identification", usize::MAX).await {
        Ok(items) => items,
        Err((status, text)) => return refuse(status, &text),
    };
    for item in &items {
        let ok = item.is_object()
            && (usable_id(item.get("user_id")) || usable_id(item.get("device_id")))
            && item.get("groups").is_none_or(valid_groups)
            && item.get("user_properties").is_none_or(Value::is_object);
        if !ok {
            return refuse(StatusCode::BAD_REQUEST, "invalid identification");
        }
    }
    lock(&state.inner).identifications.extend(items);
    refuse(StatusCode::OK, "success")
}

async fn group_identify(State(state): State<Arc<AmplitudeReceiver>>, body: Bytes) -> Response {
    let items = match form_items(&state, &body, "identification", MAX_GROUP_IDENTIFIES).await {
        Ok(items) => items,
        Err((status, text)) => return refuse(status, &text),
    };
    let mut properties = 0;
    for item in &items {
        let ok = item.get("group_type").is_some_and(Value::is_string)
            && item.get("group_value").is_some_and(Value::is_string)
            && item.get("group_properties").is_none_or(Value::is_object);
        if !ok {
            return refuse(StatusCode::BAD_REQUEST, "invalid group identification");
        }
        // Operations (`$set`) count the properties they hold.
        for (key, value) in item.get("group_properties").and_then(Value::as_object).into_iter().flatten() {
            properties += match value.as_object() {
                Some(inner) if key.starts_with('$') => inner.len(),
                _ => 1,
            };
        }
    }
    if properties > MAX_GROUP_IDENTIFIES {
        return refuse(StatusCode::BAD_REQUEST, "too many group properties");
    }
    lock(&state.inner).group_identifies.extend(items);
    refuse(StatusCode::OK, "success")
}

async fn user_map(State(state): State<Arc<AmplitudeReceiver>>, body: Bytes) -> Response {
    let items = match form_items(&state, &body, "mapping", MAX_USER_MAPPINGS).await {
        Ok(items) => items,
        Err((status, text)) => return refuse(status, &text),
    };
    for item in &items {
        let target =
            item.get("global_user_id").is_some_and(Value::is_string) || item.get("unmap") == Some(&Value::Bool(true));
        if !(item.get("user_id").is_some_and(Value::is_string) && target) {
            return refuse(StatusCode::BAD_REQUEST, "invalid mapping");
        }
    }
    let mut inner = lock(&state.inner);
    let now = Instant::now();
    while inner.user_mapping_window.front().is_some_and(|(at, _)| now.duration_since(*at) >= USER_MAPPING_WINDOW) {
        inner.user_mapping_window.pop_front();
    }
    let recent: usize = inner.user_mapping_window.iter().map(|(_, n)| n).sum();
    if recent + items.len() > USER_MAPPINGS_PER_30S {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "too many mappings in the last 30 seconds");
    }
    inner.user_mapping_window.push_back((now, items.len()));
    inner.user_mappings.extend(items);
    refuse(StatusCode::OK, "success")
}

/// The User Privacy API: `POST /api/2/deletions/users`, Basic auth `api_key:secret_key`, a JSON
/// body with `user_ids` and/or `amplitude_ids` (at most 100 together), `requester`,
/// `ignore_invalid_id`, `delete_from_org`. Answers the deletion jobs scheduled, as Amplitude does.
async fn delete_users(State(state): State<Arc<AmplitudeReceiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let response = deletion(&state, &headers, &body);
    if response.status() != StatusCode::OK {
        lock(&state.inner).refused_deletions += 1;
    }
    response
}

fn deletion(state: &AmplitudeReceiver, headers: &HeaderMap, body: &[u8]) -> Response {
    use base64::Engine;
    if let Some(Fault::Status(code)) = state.deletion_faults.next() {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, json!({"error": "injected fault"}));
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{SECRET_KEY}", state.api_key))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return error(StatusCode::UNAUTHORIZED, json!({"error": "Invalid API key or secret key"}));
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, json!({"error": "Invalid JSON request body"}));
    };
    let ids = |field: &str| -> Option<Vec<String>> {
        match request.get(field) {
            None => Some(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
            Some(_) => None,
        }
    };
    let (Some(user_ids), Some(amplitude_ids)) = (ids("user_ids"), ids("amplitude_ids")) else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "user_ids and amplitude_ids must be arrays of strings"}),
        );
    };
    let total = user_ids.len() + amplitude_ids.len();
    if total == 0 || total > MAX_DELETION_IDS {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("between 1 and {MAX_DELETION_IDS} ids per request; got {total}")}),
        );
    }
    if request.get("requester").is_some_and(|r| !r.is_string()) {
        return error(StatusCode::BAD_REQUEST, json!({"error": "requester must be a string"}));
    }
    lock(&state.inner).deletions.push(user_ids.clone());
    let job = json!({"day": "2026-12-16", "status": "staging", "amplitude_ids": [], "user_ids": user_ids});
    (StatusCode::OK, axum::Json(json!([job]))).into_response()
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

impl AmplitudeReceiver {
    async fn answer_after_latency(&self) {
        let latency = self.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
    }
}

async fn upload(
    State(state): State<Arc<AmplitudeReceiver>>,
    _headers: HeaderMap,
    body: Bytes,
    max_bytes: usize,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    state.answer_after_latency().await;
    let response = upload_now(&state, &body, max_bytes).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn upload_now(state: &AmplitudeReceiver, body: &[u8], max_bytes: usize) -> Response {
    let fault = state.faults.next();
    {
        let mut inner = lock(&state.inner);
        inner.requests += 1;
    }
    if let Some(Fault::Hang(delay)) = &fault {
        tokio::time::sleep(*delay).await;
        return error(StatusCode::SERVICE_UNAVAILABLE, json!({"code": 503, "error": "injected hang"}));
    }
    let response = process(state, body, max_bytes, fault.as_ref());
    if response.status() != StatusCode::OK {
        lock(&state.inner).refused_requests += 1;
    }
    response
}

fn process(state: &AmplitudeReceiver, body: &[u8], max_bytes: usize, fault: Option<&Fault>) -> Response {
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, json!({"code": code, "error": "injected fault"}));
        }
        Some(Fault::CutResponse) => return cut_response(),
        _ => {}
    }
    if body.len() >= max_bytes {
        return error(StatusCode::PAYLOAD_TOO_LARGE, json!({"code": 413, "error": "Payload too large"}));
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, json!({"code": 400, "error": "Invalid JSON request body"}));
    };
    if request.get("api_key").and_then(Value::as_str) != Some(state.api_key.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"code": 400, "error": "Invalid API key", "missing_field": "api_key"}),
        );
    }
    let Some(events) = request.get("events").and_then(Value::as_array).filter(|e| !e.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"code": 400, "error": "Request missing required field", "missing_field": "events"}),
        );
    };
    if events.len() > 2000 {
        return error(StatusCode::PAYLOAD_TOO_LARGE, json!({"code": 413, "error": "Too many events"}));
    }
    {
        let mut inner = lock(&state.inner);
        inner.max_batch = inner.max_batch.max(events.len());
    }
    let min_id_length =
        request.get("options").and_then(|o| o.get("min_id_length")).and_then(Value::as_u64).unwrap_or(5) as usize;
    let mut invalid: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut id_lengths: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        check_event(event, index, min_id_length, &mut invalid, &mut missing, &mut id_lengths);
    }
    if !(invalid.is_empty() && missing.is_empty() && id_lengths.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            json!({
                "code": 400,
                "error": "Request contains invalid events",
                "events_with_invalid_fields": invalid,
                "events_with_missing_fields": missing,
                "events_with_invalid_id_lengths": id_lengths,
            }),
        );
    }
    if let Some(Fault::InvalidEvents(indexes)) = fault {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"code": 400, "error": "Request contains invalid events", "events_with_invalid_fields": {"event_properties": indexes}}),
        );
    }
    if let Some(Fault::Throttle { count, retry_after_secs }) = fault {
        let throttled: Vec<usize> = (0..(*count).min(events.len())).collect();
        let body = json!({"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30, "throttled_events": throttled});
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, body);
        if let Some(secs) = retry_after_secs {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, (*secs).into());
        }
        return response;
    }
    state.ingest(events);
    if let Some(Fault::IngestThenStatus(code)) = fault {
        let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, json!({"code": code, "error": "injected fault after ingestion"}));
    }
    let size = body.len();
    (
        StatusCode::OK,
        axum::Json(
            json!({"code": 200, "events_ingested": events.len(), "payload_size_bytes": size, "server_upload_time": 1}),
        ),
    )
        .into_response()
}

fn check_event<'a>(
    event: &'a Value,
    index: usize,
    min_id_length: usize,
    invalid: &mut BTreeMap<&'a str, Vec<usize>>,
    missing: &mut BTreeMap<&'a str, Vec<usize>>,
    id_lengths: &mut BTreeMap<&'a str, Vec<usize>>,
) {
    let Some(event) = event.as_object() else {
        invalid.entry("event").or_default().push(index);
        return;
    };
    if event.get("event_type").and_then(Value::as_str).is_none_or(str::is_empty) {
        missing.entry("event_type").or_default().push(index);
    }
    let mut has_id = false;
    for field in ["user_id", "device_id"] {
        match event.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => {
                if BLOCKED_IDS.contains(&id.to_lowercase().as_str()) {
                    invalid.entry(field).or_default().push(index);
                } else if id.chars().count() < min_id_length {
                    id_lengths.entry(field).or_default().push(index);
                } else {
                    has_id = true;
                }
            }
            Some(_) => invalid.entry(field).or_default().push(index),
        }
    }
    if !has_id && !invalid.values().flatten().chain(id_lengths.values().flatten()).any(|i| *i == index) {
        missing.entry("user_id or device_id").or_default().push(index);
    }
    if let Some(time) = event.get("time")
        && !(time.is_i64() || time.is_u64())
    {
        invalid.entry("time").or_default().push(index);
    }
    if let Some(id) = event.get("insert_id")
        && !id.is_string()
    {
        invalid.entry("insert_id").or_default().push(index);
    }
    for field in ["event_properties", "user_properties"] {
        if let Some(value) = event.get(field)
            && !value.is_object()
        {
            invalid.entry(field).or_default().push(index);
        }
    }
    if let Some(session) = event.get("session_id")
        && !session.is_i64()
    {
        invalid.entry("session_id").or_default().push(index);
    }
    if let Some(groups) = event.get("groups")
        && !valid_groups(groups)
    {
        invalid.entry("groups").or_default().push(index);
    }
}
