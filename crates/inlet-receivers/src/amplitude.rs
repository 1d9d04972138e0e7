//! Amplitude HTTP V2 API (`POST /2/httpapi`, `POST /batch`), as documented: JSON body
//! `{api_key, events, options?}`; < 1 MB (20 MB on `/batch`) and ≤ 2,000 events, else 413;
//! each event needs `event_type` and a `user_id` or `device_id` of at least `min_id_length`
//! (default 5) characters that is not a blocked value; `time` must be an integer (epoch ms);
//! `insert_id` dedupes within 7 days. Any invalid event refuses the whole request with 400,
//! naming the offending events by index, and nothing of it is ingested.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

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
    inner: Mutex<Inner>,
}

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

    /// The user ids of each accepted deletion request.
    pub fn deletions(&self) -> Vec<Vec<String>> {
        lock(&self.inner).deletions.clone()
    }

    pub fn refused_deletions(&self) -> usize {
        lock(&self.inner).refused_deletions
    }

    fn ingest(&self, events: &[Value]) {
        let mut inner = lock(&self.inner);
        for event in events {
            let key = event.get("insert_id").and_then(Value::as_str).map(str::to_owned);
            if let Some(key) = &key
                && inner.by_insert_id.contains_key(key)
            {
                inner.duplicates += 1;
                continue;
            }
            let index = inner.events.len();
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
        .with_state(state)
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

async fn upload(
    State(state): State<Arc<AmplitudeReceiver>>,
    _headers: HeaderMap,
    body: Bytes,
    max_bytes: usize,
) -> Response {
    let fault = state.faults.next();
    {
        let mut inner = lock(&state.inner);
        inner.requests += 1;
    }
    if let Some(Fault::Hang(delay)) = &fault {
        tokio::time::sleep(*delay).await;
        return error(StatusCode::SERVICE_UNAVAILABLE, json!({"code": 503, "error": "injected hang"}));
    }
    let response = process(&state, &body, max_bytes, fault.as_ref());
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
}
