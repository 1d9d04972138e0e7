//! The debugger's HTTP side, on the admin listener: the page (`/debugger`, static, holding no
//! data, so a browser can load it without a header) and its API under `/admin/debugger/`, behind
//! the operator token like the rest of the operator API. The page keeps the token in the tab's
//! session storage and sends it as `Authorization: Bearer …` on every call, the live stream
//! included (read with `fetch`, since `EventSource` cannot send headers).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Tapped, Watch};
use crate::routes::admin_refusal;
use crate::state::AppState;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");
/// The page loads nothing but its own files.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// How often a live stream checks whether the gateway is stopping (so it does not hold the
/// admin listener's drain) when no event comes.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// The page and its two files: no token needed, nothing in them but code.
pub fn page_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/debugger", get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/debugger/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/debugger/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
}

/// The page's data, for the operator API router (which requires the token).
pub fn operator_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/debugger/sources", get(sources))
        .route("/admin/debugger/rates", get(rates))
        .route("/admin/debugger/sources/{source}/events", get(events))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The configured sources, with their tracking plan's mode.
async fn sources(State(state): State<Arc<AppState>>) -> Response {
    let sources: Vec<serde_json::Value> = state
        .config
        .sources
        .iter()
        .map(|s| json!({"name": s.name, "tracking_plan": s.tracking_plan.as_ref().map(|p| p.mode.as_str())}))
        .collect();
    Json(json!({"sources": sources, "recent_events": super::RECENT_EVENTS, "sample_per_second": super::SAMPLE_PER_SECOND}))
        .into_response()
}

async fn rates(State(state): State<Arc<AppState>>) -> Response {
    Json(state.debugger.rates()).into_response()
}

/// Server-Sent Events: the source's kept events, then live ones. Each event is `id: <lsn>`,
/// `data: <the stored record>`; a viewer that fell behind gets an event `dropped` with how many
/// it lost.
async fn events(State(state): State<Arc<AppState>>, Path(source): Path<String>) -> Response {
    let watch = match state.debugger.watch(&source) {
        None => return admin_refusal(StatusCode::NOT_FOUND, "unknown_source", &format!("no source named {source:?}")),
        Some(Err(())) => {
            return admin_refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_viewers",
                &format!("at most {} debugger streams are open at once; close one", super::MAX_VIEWERS),
            );
        }
        Some(Ok(watch)) => watch,
    };
    let Watch { backlog, live, _slot } = watch;
    let stream = futures_util::stream::unfold(
        (backlog.into_iter(), live, _slot, state),
        |(mut backlog, mut live, slot, state)| async move {
            if let Some(event) = backlog.next() {
                return Some((Ok::<_, Infallible>(sse_event(&event)), (backlog, live, slot, state)));
            }
            loop {
                if state.shutting_down.load(Ordering::Acquire) {
                    return None;
                }
                match tokio::time::timeout(STOP_CHECK, live.recv()).await {
                    Err(_) => continue,
                    Ok(Ok(event)) => return Some((Ok(sse_event(&event)), (backlog, live, slot, state))),
                    Ok(Err(RecvError::Lagged(lost))) => {
                        let event = Event::default().event("dropped").data(lost.to_string());
                        return Some((Ok(event), (backlog, live, slot, state)));
                    }
                    Ok(Err(RecvError::Closed)) => return None,
                }
            }
        },
    );
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response();
    // Proxies (nginx) would otherwise hold the stream back in their buffers.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn sse_event(event: &Tapped) -> Event {
    // Stored JSON has line breaks only where whitespace may be; SSE data cannot hold a `\r`.
    let data = event.record.replace(['\r', '\n'], " ");
    Event::default().id(event.lsn.to_string()).data(data)
}
