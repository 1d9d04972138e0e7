//! The router: every route, CORS, and per-route request metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use inlet_segment::{MessageType, RouteKind};
use serde_json::json;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::ingest::ingest;
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

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for (path, kind) in INGEST_ROUTES {
        if path == "/v1/m" {
            // analytics.js's own telemetry: accepted so the SDK is content, then discarded.
            router = router.route(path, post(|| async { Json(json!({"success": true})) }));
            continue;
        }
        let handler = move |state, connect_info, headers, body| ingest(state, kind, connect_info, headers, body);
        router = router.route(path, post(handler));
        // Some older SDKs append a slash.
        router = router.route(&format!("{path}/"), post(handler));
    }
    router
        .route("/v1/projects/{write_key}/settings", get(project_settings))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), record_request))
        .layer(cors())
        .with_state(state)
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

async fn project_settings(State(state): State<Arc<AppState>>, Path(write_key): Path<String>) -> Response {
    if state.sources.lookup(&write_key).is_none() {
        return ApiError::InvalidWriteKey.into_response();
    }
    let mut response = Json(settings_json(&write_key, &state.public_url)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
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

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.dedupe_entries.set(state.dedupe.len() as i64);
    let body = state.metrics.render(&state.wal);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
