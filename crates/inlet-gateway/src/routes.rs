//! The routers: the public listener's (ingestion, settings, bare probes; CORS on the SDKs'
//! routes only) and the admin listener's (metrics, probes with reasons, the operator API).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use inlet_segment::{MessageType, RouteKind};
use serde_json::json;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use subtle::ConstantTimeEq;

use crate::client_ip::client_ip;
use crate::debugger;
use crate::error::ApiError;
use crate::ingest::ingest;
use crate::privacy;
use crate::settings::settings_json;
use crate::state::AppState;

/// Every ingestion path with what its body holds. Short forms are what the SDKs call:
/// analytics.js standard mode posts to the first letter of the type, batching mode and the
/// mobile SDKs to `/b`.
pub const INGEST_ROUTES: [(&str, RouteKind); 16] = [
    ("/v1/track", RouteKind::Single(MessageType::Track)),
    ("/v1/page", RouteKind::Single(MessageType::Page)),
    ("/v1/screen", RouteKind::Single(MessageType::Screen)),
    ("/v1/identify", RouteKind::Single(MessageType::Identify)),
    ("/v1/group", RouteKind::Single(MessageType::Group)),
    ("/v1/alias", RouteKind::Single(MessageType::Alias)),
    ("/v1/batch", RouteKind::Batch),
    ("/v1/import", RouteKind::Batch),
    ("/v1/t", RouteKind::Single(MessageType::Track)),
    ("/v1/p", RouteKind::Single(MessageType::Page)),
    ("/v1/s", RouteKind::Single(MessageType::Screen)),
    ("/v1/i", RouteKind::Single(MessageType::Identify)),
    ("/v1/g", RouteKind::Single(MessageType::Group)),
    ("/v1/a", RouteKind::Single(MessageType::Alias)),
    ("/v1/b", RouteKind::Batch),
    ("/v1/m", RouteKind::Batch),
];

/// The public listener: ingestion, the SDKs' settings and the public probes. CORS applies to
/// the ingestion and settings routes only.
pub fn router(state: Arc<AppState>) -> Router {
    let mut sdk_routes = Router::new();
    for (path, kind) in INGEST_ROUTES {
        if path == "/v1/m" {
            // analytics.js's own telemetry: accepted so the SDK is content, then discarded.
            sdk_routes = sdk_routes.route(path, post(|| async { Json(json!({"success": true})) }));
            continue;
        }
        let handler = move |state, connect_info, headers, body| ingest(state, kind, connect_info, headers, body);
        sdk_routes = sdk_routes.route(path, post(handler));
        // Some older SDKs append a slash.
        sdk_routes = sdk_routes.route(&format!("{path}/"), post(handler));
    }
    // The fallback is set before the layer, so that CORS wraps it too (a preflight is an
    // OPTIONS, which only the fallback of these routes sees).
    let sdk_routes = sdk_routes
        .route("/v1/projects/{write_key}/settings", get(project_settings))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(cors());
    Router::new()
        .merge(sdk_routes)
        .route("/healthz", get(public_healthz))
        .route("/readyz", get(public_readyz))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), record_request))
        .with_state(state)
}

/// The admin listener: metrics and probes with their reasons and the live debugger's page (no
/// token: keep the listener on loopback or a private network), and the operator API under
/// `/admin/` (the debugger's data included), which requires the operator token
/// (`Authorization: Bearer …`).
pub fn admin_router(state: Arc<AppState>) -> Router {
    let operator = Router::new()
        .route("/admin/status", get(admin_status))
        .route("/admin/destinations", get(admin_destinations))
        .route("/admin/privacy/regulations", get(privacy::list_regulations).post(privacy::create_regulation))
        .route("/admin/privacy/regulations/{id}", get(privacy::get_regulation))
        .merge(debugger::operator_routes())
        .layer(middleware::from_fn_with_state(Arc::clone(&state), require_operator_token));
    Router::new()
        .merge(operator)
        .merge(debugger::page_routes())
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Lets a request through only with the operator token; compared in constant time.
async fn require_operator_token(State(state): State<Arc<AppState>>, request: Request<Body>, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match (&state.admin_token, presented) {
        (None, _) => {
            admin_refusal(StatusCode::UNAUTHORIZED, "no_operator_token", "the operator API is off: set admin.token")
        }
        (Some(expected), Some(presented)) if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) => {
            next.run(request).await
        }
        (Some(_), _) => admin_refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_operator_token",
            "send Authorization: Bearer <admin.token>",
        ),
    }
}

/// An operator API refusal: `{"code", "message"}`, with the `Bearer` challenge on a `401`.
pub(crate) fn admin_refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (status, Json(json!({"code": code, "message": message}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Browsers: analytics.js ≥ 1.84 sends `Authorization` and `X-Retry-Count`, which forces a
/// preflight; with credentials the origin must be echoed, not `*`.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(24 * 3600))
}

async fn record_request(State(state): State<Arc<AppState>>, request: Request<Body>, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().trim_end_matches('/').to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics.http_request_duration.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    metrics.http_requests.with_label_values(&[&route, response.status().as_str()]).inc();
    response
}

async fn project_settings(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(write_key): Path<String>,
) -> Response {
    let client = client_ip(peer.ip(), &headers, &state.config.server.trusted_proxies);
    if state.source_limits.auth_throttled(client) {
        return ApiError::AuthThrottled.into_response();
    }
    if state.sources.lookup(&write_key).is_none() {
        let throttled = state.source_limits.record_failed_auth(client);
        return if throttled { ApiError::AuthThrottled } else { ApiError::InvalidWriteKey }.into_response();
    }
    let mut response = Json(settings_json(&write_key, &state.public_url)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}

/// The public probes say whether, not why: the reasons are internal (paths, errors) and go to
/// the log and the admin listener.
async fn public_healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.wal.poisoned() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"code": "unhealthy", "message": "not healthy"})))
            .into_response(),
    }
}

async fn public_readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.not_ready_reason() {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(reason) => {
            if state.refusal_log.allow() {
                tracing::warn!(%reason, "not ready");
            }
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"code": "not_ready", "message": "not ready"})))
                .into_response()
        }
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.wal.poisoned() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"code": "wal_failed", "message": format!("write-ahead log failed: {message}")})),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.not_ready_reason() {
        None => Json(json!({"status": "ready", "destinations": state.destinations_report()})).into_response(),
        Some(message) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"code": "not_ready", "message": message}))).into_response()
        }
    }
}

/// What an operator asks first: readiness and why, the budgets' use, each source's share.
async fn admin_status(State(state): State<Arc<AppState>>) -> Response {
    let sources: serde_json::Map<String, serde_json::Value> = state
        .config
        .sources
        .iter()
        .map(|s| (s.name.clone(), json!({"wal_bytes": state.source_limits.retained_bytes(&s.name)})))
        .collect();
    Json(json!({
        "ready": state.not_ready_reason().is_none(),
        "not_ready_reason": state.not_ready_reason(),
        "wal": {"disk_bytes": state.wal.disk_bytes(), "durable_lsn": state.wal.durable_lsn(), "oldest_lsn": state.wal.oldest_lsn()},
        "inflight_bytes": state.inflight.reserved_bytes(),
        "sources": sources,
        "destinations": state.destinations_report(),
    }))
    .into_response()
}

async fn admin_destinations(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({"destinations": state.destinations_status()})).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    for source in &state.config.sources {
        let bytes = state.source_limits.retained_bytes(&source.name);
        state.metrics.source_wal_bytes.with_label_values(&[&source.name]).set(bytes as i64);
    }
    state.metrics.dedupe_entries.set(state.dedupe.len() as i64);
    let body = state.metrics.render(&state.wal);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
