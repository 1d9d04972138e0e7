//! The Tracking API: authenticate, read and decode the body, validate and normalise each
//! message, drop duplicates, append to the WAL and answer only once it is durable.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use inlet_segment::{RequestMeta, RouteKind, encode_checked_event_into, parse_body};
use inlet_wal::FramedRecords;
use serde::Serialize;

use crate::auth::basic_write_key;
use crate::body::{BodyPace, Encoding, content_length, decode, discard_after_answer, read_capped};
use crate::client_ip::client_ip;
use crate::dedupe::KeySet;
use crate::error::{ApiError, ItemError};
use crate::inflight::Reservation;
use crate::plans::Verdict;
use crate::state::AppState;

/// Bodies at least this large (or compressed) are decoded on the blocking pool, so one big
/// batch does not hold up the small requests sharing its async worker.
const BLOCKING_DECODE_BYTES: usize = 64 * 1024;

/// The answer to an accepted request.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub success: bool,
    /// Messages newly stored (and messages of suppressed ids, acknowledged alike).
    pub accepted: usize,
    /// Messages whose `messageId` was already stored within the dedupe window (not stored again).
    pub duplicates: usize,
    /// Messages refused; listed in `errors`.
    pub rejected: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ItemError>,
}

struct PreparedRequest {
    source: Arc<str>,
    /// The messages ready for the WAL, framed where they were encoded (see [`FramedRecords`]).
    records: FramedRecords,
    /// The dedupe key of each record, in the same order.
    keys: Vec<u128>,
    /// Valid messages of suppressed ids: acknowledged, not stored.
    suppressed: usize,
    /// Whether the source has a tracking plan (every record was checked).
    planned: bool,
    /// The plan's verdict on each record that broke it, by record index.
    verdicts: Vec<(usize, Verdict)>,
    errors: Vec<ItemError>,
}

pub async fn ingest(
    State(state): State<Arc<AppState>>,
    kind: RouteKind,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client = client_ip(peer.ip(), &headers, &state.config.server.trusted_proxies);
    match ingest_inner(&state, kind, client, &headers, body).await {
        Ok(accepted) => Json(accepted).into_response(),
        Err(Refused { error, connection }) => {
            state.metrics.requests_rejected.with_label_values(&[error.code()]).inc();
            if matches!(error.status().as_u16(), 400 | 413) {
                state.source_limits.record_refusal(client);
            }
            if error.status().is_server_error() || error.status().as_u16() == 429 {
                // Under an outage every request fails the same way: log the first of each second.
                if state.refusal_log.allow() {
                    tracing::warn!(code = error.code(), %error, "ingestion refused (repeats within a second are not logged)");
                }
            } else {
                tracing::debug!(code = error.code(), %error, "ingestion refused");
            }
            let mut response = error.into_response();
            if connection == AfterRefusal::Close {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// A refusal, and whether the connection can carry the client's next request.
struct Refused {
    error: ApiError,
    connection: AfterRefusal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRefusal {
    KeepAlive,
    /// Part of the body is unread and will stay so: the server closes the connection, and says
    /// so in `Connection: close` rather than let the client find out on its next request.
    Close,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused { error, connection: AfterRefusal::KeepAlive }
    }
}

async fn ingest_inner(
    state: &Arc<AppState>,
    kind: RouteKind,
    client: IpAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, Refused> {
    let limits = &state.config.limits;
    let server = &state.config.server;
    let (mut reservation, encoding, header_source) = match admit(state, headers, client) {
        Ok(admitted) => admitted,
        Err(error) => return Err(refuse_unread(state, error, headers, body)),
    };
    let pace = BodyPace {
        timeout: Duration::from_secs(server.body_read_timeout_secs),
        min_bytes_per_sec: server.min_body_bytes_per_sec,
        grace: Duration::from_secs(server.body_rate_grace_secs),
    };
    let raw = read_capped(body, limits.max_request_bytes, content_length(headers), pace, &mut reservation)
        .await
        .map_err(|error| Refused { error, connection: AfterRefusal::Close })?;
    if encoding != Encoding::Identity {
        // Until decoded, the compressed and the decompressed body (at most the limit) coexist.
        reservation.grow_to(raw.len() + limits.max_request_bytes)?;
    }
    let request = Request { raw, encoding, kind, header_source, client, received_at: state.clock.now() };
    let prepared = if request.raw.len() >= BLOCKING_DECODE_BYTES || encoding != Encoding::Identity {
        let state = Arc::clone(state);
        let (prepared, returned) = tokio::task::spawn_blocking(move || {
            let prepared = prepare(&state, request, &mut reservation);
            (prepared, reservation)
        })
        .await
        .map_err(|_| ApiError::StorageUnavailable)?;
        reservation = returned;
        prepared?
    } else {
        prepare(state, request, &mut reservation)?
    };
    // What stays until the WAL answers: the encoded records.
    reservation.shrink_to(prepared.records.framed_bytes());
    Ok(store(state, prepared).await?)
}

/// Everything decided from the head alone, before any of the body is read: whether the client
/// may send (its failed authentications and refusals), a request slot, whether the WAL can take
/// more, the encoding, the header key's source and its share. Nothing is reserved for a
/// declared length: bytes are reserved as they arrive.
fn admit(
    state: &AppState,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<(Reservation, Encoding, Option<Arc<str>>), ApiError> {
    if state.source_limits.auth_throttled(client) {
        return Err(ApiError::AuthThrottled);
    }
    if state.source_limits.refusals_throttled(client) {
        return Err(ApiError::ClientThrottled);
    }
    // First, so that under overload the excess costs as little as possible.
    let mut reservation = state.inflight.reservation(client)?;
    if state.wal.poisoned().is_some() {
        return Err(ApiError::StorageUnavailable);
    }
    if state.wal.disk_bytes() >= state.config.wal.max_disk_bytes {
        return Err(ApiError::StorageFull);
    }
    let encoding = Encoding::from_headers(headers)?;
    let header_source = match basic_write_key(headers)? {
        Some(key) => {
            let source = authenticate(state, &key, client)?;
            admit_source(state, &source, &mut reservation)?;
            Some(source)
        }
        None => None,
    };
    let limit = state.config.limits.max_request_bytes;
    if content_length(headers).is_some_and(|declared| declared > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok((reservation, encoding, header_source))
}

/// The source of `key`; an unknown key counts against the client's failed authentications.
fn authenticate(state: &AppState, key: &str, client: IpAddr) -> Result<Arc<str>, ApiError> {
    state.sources.lookup(key).ok_or_else(|| {
        if state.source_limits.record_failed_auth(client) { ApiError::AuthThrottled } else { ApiError::InvalidWriteKey }
    })
}

/// Charges the request to its source, within the source's shares of the in-flight budgets and
/// of the WAL.
fn admit_source(state: &AppState, source: &Arc<str>, reservation: &mut Reservation) -> Result<(), ApiError> {
    let result = reservation
        .assign_source(source)
        .and_then(|()| state.source_limits.check_wal_share(source, state.wal.oldest_lsn()));
    if let Err(error) = &result {
        state.metrics.requests_limited.with_label_values(&[source, error.code()]).inc();
    }
    result
}

/// A refusal decided from the head. Its body is read and dropped after the answer, as nginx
/// does, so that the client's keep-alive connection carries its retry; it holds no slot and
/// keeps no byte. A body declared over the limit is not worth reading, a client waiting for
/// `100 Continue` will not send one, and a throttled client's bodies are what it is throttled
/// for: those connections close.
fn refuse_unread(state: &AppState, error: ApiError, headers: &HeaderMap, body: Body) -> Refused {
    let expects_continue = headers.get(header::EXPECT).is_some();
    let not_worth_reading =
        matches!(error, ApiError::PayloadTooLarge { .. } | ApiError::ClientThrottled | ApiError::AuthThrottled);
    if not_worth_reading || expects_continue {
        return Refused { error, connection: AfterRefusal::Close };
    }
    let timeout = Duration::from_secs(state.config.server.body_read_timeout_secs);
    discard_after_answer(body, state.config.limits.max_request_bytes, timeout);
    Refused { error, connection: AfterRefusal::KeepAlive }
}

/// A request's body and what is known of it before its messages are read.
struct Request {
    raw: Bytes,
    encoding: Encoding,
    kind: RouteKind,
    /// The source of the `Authorization` header's key, authenticated already.
    header_source: Option<Arc<str>>,
    client: IpAddr,
    /// Becomes each event's `receivedAt`.
    received_at: DateTime<Utc>,
}

/// The CPU part: decompress, parse, authenticate by body key, normalise, encode. What it builds
/// is reserved as it grows: the events as stored are bounded by
/// `limits.max_stored_request_bytes` whatever the batch's context.
fn prepare(state: &AppState, request: Request, reservation: &mut Reservation) -> Result<PreparedRequest, ApiError> {
    let Request { raw, encoding, kind, header_source, client, received_at } = request;
    let limits = &state.config.limits;
    let body = decode(raw, encoding, limits.max_request_bytes)?;
    reservation.grow_to(body.len())?;
    let parsed = parse_body(&body, kind, &state.normaliser.limits)?;
    let source = match header_source {
        Some(source) => source,
        None => {
            let key = parsed.write_key.as_deref().ok_or(ApiError::MissingWriteKey)?;
            let source = authenticate(state, key, client)?;
            admit_source(state, &source, reservation)?;
            source
        }
    };
    let meta = RequestMeta { received_at, client_ip: Some(client), ip_policy: state.sources.ip_policy(&source) };
    let stored_limit = limits.max_stored_request_bytes;
    let mut suppressed = 0;
    let mut records = FramedRecords::with_capacity(parsed.items.len(), body.len());
    let mut keys = Vec::with_capacity(parsed.items.len());
    let mut errors = Vec::new();
    // Looked up once per request, not per event.
    let plan = state.plans.get(&source);
    let mut verdicts = Vec::new();
    for (index, item) in parsed.items.iter().enumerate() {
        match state.normaliser.normalise(item, parsed.forced_type, &parsed.defaults, &meta) {
            Ok(event) if state.suppressions.matches(event.user_id.as_deref(), event.anonymous_id.as_deref()) => {
                suppressed += 1;
            }
            Ok(event) => {
                let verdict = plan.and_then(|plan| plan.check(&event));
                keys.push(state.dedupe.key(&source, &event.message_id));
                records.push_with(|out| {
                    encode_checked_event_into(out, &source, &event, verdict.as_ref().map(Verdict::stored));
                });
                if let Some(verdict) = verdict {
                    verdicts.push((records.len() - 1, verdict));
                }
                if records.framed_bytes() > stored_limit {
                    return Err(ApiError::StoredTooLarge { limit: stored_limit });
                }
                reservation.grow_to(body.len() + records.framed_bytes())?;
            }
            Err(rejection) => {
                state.metrics.events_rejected.with_label_values(&[rejection.reason.code()]).inc();
                state.debugger.record_rejection(&source, rejection.reason);
                if parsed.forced_type.is_some() {
                    return Err(ApiError::Rejected(rejection));
                }
                errors.push(ItemError { index, code: rejection.reason.code(), message: rejection.message });
            }
        }
    }
    Ok(PreparedRequest { source, records, keys, suppressed, planned: plan.is_some(), verdicts, errors })
}

/// Drops duplicates, appends the rest durably, then remembers their ids.
async fn store(state: &AppState, request: PreparedRequest) -> Result<Accepted, ApiError> {
    let PreparedRequest { source, records, keys, suppressed, planned, verdicts, errors } = request;
    let known = state.dedupe.known(&keys);
    let mut in_this_request = KeySet::with_capacity_and_hasher(keys.len(), Default::default());
    let fresh: Vec<bool> = keys.iter().zip(known).map(|(key, known)| in_this_request.insert(*key) && !known).collect();
    let duplicates = fresh.iter().filter(|fresh| !**fresh).count();
    let (records, keys) = if duplicates == 0 { (records, keys) } else { without_duplicates(&records, &keys, &fresh) };
    if records.is_empty() && duplicates == 0 && suppressed == 0 {
        return Err(ApiError::AllRejected(errors));
    }
    let accepted = records.len();
    // Copied before the append takes the records; kept only if it succeeds.
    let tapped = state.debugger.sample(&source, accepted);
    let tapped: Vec<Box<str>> =
        (0..tapped).map(|i| String::from_utf8_lossy(records.payload(i)).into_owned().into_boxed_str()).collect();
    let mut first_lsn = 0;
    if !records.is_empty() {
        if let Err(error) = state.source_limits.charge_events(&source, accepted) {
            state.metrics.requests_limited.with_label_values(&[&source, error.code()]).inc();
            return Err(error);
        }
        let bytes = records.payload_bytes();
        let appending = std::time::Instant::now();
        let lsns = state.wal.append_framed(records).await.map_err(|error| {
            tracing::error!(%error, "write-ahead log append failed");
            ApiError::StorageUnavailable
        })?;
        state.source_limits.record_append(&source, lsns.end.saturating_sub(1), bytes as u64);
        first_lsn = lsns.start;
        state.metrics.wal_append_duration.observe(appending.elapsed().as_secs_f64());
        state.metrics.wal_appended_records.inc_by(accepted as u64);
        state.metrics.wal_appended_bytes.inc_by(bytes as u64);
    }
    let evicted = state.dedupe.insert_all(keys);
    let metrics = &state.metrics;
    metrics.dedupe_evicted.inc_by(evicted);
    metrics.events_accepted.with_label_values(&[&source]).inc_by(accepted as u64);
    metrics.events_deduplicated.with_label_values(&[&source]).inc_by(duplicates as u64);
    metrics.events_suppressed.with_label_values(&[&source]).inc_by(suppressed as u64);
    if planned {
        count_verdicts(metrics, &source, &verdicts, &fresh);
    }
    state.debugger.tap(&source, tapped.into_iter().enumerate().map(|(i, record)| (first_lsn + i as u64, record)));
    // A suppressed id's events are answered as stored, as Segment does: the client cannot tell.
    Ok(Accepted { success: true, accepted: accepted + suppressed, duplicates, rejected: errors.len(), errors })
}

/// Counts what the plan found in the records stored (`fresh`): events valid, violating and
/// blocked, and each violation.
fn count_verdicts(metrics: &crate::metrics::Metrics, source: &str, verdicts: &[(usize, Verdict)], fresh: &[bool]) {
    let stored = fresh.iter().filter(|f| **f).count();
    let mut broken = 0;
    for (_, verdict) in verdicts.iter().filter(|(index, _)| fresh[*index]) {
        broken += 1;
        let outcome = if verdict.mode == inlet_plans::Mode::Block { "blocked" } else { "violating" };
        metrics.plan_events.with_label_values(&[source, outcome]).inc();
        for violation in &verdict.violations {
            metrics.plan_violations.with_label_values(&[source, &verdict.checked, &violation.kind]).inc();
        }
    }
    metrics.plan_events.with_label_values(&[source, "valid"]).inc_by((stored - broken) as u64);
}

/// The records (and their keys) marked fresh, framed again: the rare request with duplicates.
fn without_duplicates(records: &FramedRecords, keys: &[u128], fresh: &[bool]) -> (FramedRecords, Vec<u128>) {
    let mut kept = FramedRecords::with_capacity(keys.len(), records.payload_bytes());
    let mut kept_keys = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate().filter(|(index, _)| fresh[*index]) {
        kept.push(records.payload(index));
        kept_keys.push(*key);
    }
    (kept, kept_keys)
}
