//! Local stand-ins for Amplitude's HTTP V2 API and GA4's Measurement Protocol, for tests.
//!
//! They enforce the documented contracts (see `../shared/reference/destinations.md` and the
//! vendors' API references) rather than accept anything: a payload Inlet gets wrong is refused
//! here as the vendor would refuse it (Amplitude) or recorded as invalid with GA4's validation
//! messages (GA4 answers 2xx regardless, so the test asserts none were invalid). Faults can be
//! queued to answer the next requests: any status (optionally after ingesting, as Amplitude's
//! 500/502/504 may), 429 with `throttled_events`, a 400 naming invalid events, a hang past the
//! client's timeout, or a response cut mid-body.

pub mod amplitude;
pub mod ga4;
pub mod ga4_deletion;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};

/// A fault to answer one request with, instead of the normal processing.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this status (with a small JSON body) without ingesting.
    Status(u16),
    /// Ingest the request normally, then answer this status anyway (Amplitude's 500/502/504).
    IngestThenStatus(u16),
    /// Amplitude 429: the first `count` events of the request are throttled, none ingested.
    Throttle { count: usize, retry_after_secs: Option<u64> },
    /// Amplitude 400 naming these events (by index) as having invalid fields; none ingested.
    InvalidEvents(Vec<usize>),
    /// Sleep this long, then answer 503 without ingesting (longer than the client's timeout:
    /// a request lost on the way, seen by the client as a timeout).
    Hang(Duration),
    /// Send `200` headers, then break the body: the client cannot know what happened.
    CutResponse,
}

/// Faults waiting for the next requests, in order.
#[derive(Debug, Default)]
pub struct FaultQueue(Mutex<VecDeque<Fault>>);

impl FaultQueue {
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.0).extend(faults);
    }

    pub(crate) fn next(&self) -> Option<Fault> {
        lock(&self.0).pop_front()
    }

    pub fn pending(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn cut_response() -> Response {
    let stream = futures_util::stream::iter([
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"code\":")),
        Err(std::io::Error::other("connection cut by the test receiver")),
    ]);
    (axum::http::StatusCode::OK, Body::from_stream(stream)).into_response()
}

/// Both receivers on one loopback port.
#[derive(Debug, Clone)]
pub struct Receivers {
    /// `http://127.0.0.1:{port}`; the events each has taken at `GET /counts`
    /// (`{"amplitude": n, "ga4": n}`); Amplitude at `/2/httpapi` and `/batch`, its Identify, Group
    /// Identify and User Mapping APIs at `/identify`, `/groupidentify`, `/usermap` (its User
    /// Privacy API at `/api/2/deletions/users`), GA4 at `/mp/collect` and `/debug/mp/collect`.
    pub url: String,
    pub amplitude: Arc<amplitude::AmplitudeReceiver>,
    pub ga4: Arc<ga4::Ga4Receiver>,
    /// GA4's User Deletion API and its OAuth2 token endpoint (`{url}/token`).
    pub ga4_deletion: Arc<ga4_deletion::Ga4DeletionReceiver>,
}

impl Receivers {
    pub async fn start(api_key: &str, measurement_id: &str, api_secret: &str) -> std::io::Result<Receivers> {
        Receivers::start_on("127.0.0.1:0", api_key, measurement_id, api_secret).await
    }

    pub async fn start_on(
        addr: &str,
        api_key: &str,
        measurement_id: &str,
        api_secret: &str,
    ) -> std::io::Result<Receivers> {
        let amplitude = Arc::new(amplitude::AmplitudeReceiver::new(api_key));
        let ga4 = Arc::new(ga4::Ga4Receiver::new(measurement_id, api_secret));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let ga4_deletion = Arc::new(ga4_deletion::Ga4DeletionReceiver::new(format!("{url}/token")));
        let counted = (Arc::clone(&amplitude), Arc::clone(&ga4));
        let app = Router::new()
            .route(
                "/counts",
                axum::routing::get(move || async move {
                    axum::Json(serde_json::json!({"amplitude": counted.0.ingested(), "ga4": counted.1.received()}))
                }),
            )
            .merge(amplitude::router(Arc::clone(&amplitude)))
            .merge(ga4::router(Arc::clone(&ga4)))
            .merge(ga4_deletion::router(Arc::clone(&ga4_deletion)));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receivers { url, amplitude, ga4, ga4_deletion })
    }

    /// Every ingestion answer (Amplitude's APIs, GA4's `/mp/collect`) waits `latency` first.
    pub fn set_latency(&self, latency: Duration) {
        let millis = latency.as_millis() as u64;
        self.amplitude.latency_ms.store(millis, std::sync::atomic::Ordering::Relaxed);
        self.ga4.latency_ms.store(millis, std::sync::atomic::Ordering::Relaxed);
    }

    /// Count events without keeping them (long benchmark runs).
    pub fn count_only(&self) {
        self.amplitude.count_only.store(true, std::sync::atomic::Ordering::Relaxed);
        self.ga4.count_only.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn amplitude_endpoint(&self) -> String {
        format!("{}/2/httpapi", self.url)
    }

    pub fn amplitude_user_mapping_endpoint(&self) -> String {
        format!("{}/usermap", self.url)
    }

    pub fn ga4_endpoint(&self) -> String {
        format!("{}/mp/collect", self.url)
    }
}
