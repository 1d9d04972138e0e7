//! The accept loop: plain HTTP or TLS, HTTP/1.1 and HTTP/2, connection hygiene and graceful
//! shutdown.
//!
//! A connection is a cost the client chooses, so each has deadlines it cannot extend by
//! doing nothing (`docs/security.md` lists them with their defaults):
//! - a first request within `server.first_request_timeout_secs` of the TLS handshake (or the
//!   accept): a socket that never speaks is closed, whatever its protocol would have been;
//! - at most `server.idle_timeout_secs` without a request in flight (HTTP/1 keep-alive and
//!   HTTP/2 alike), and HTTP/2 pings every `server.http2_keepalive_secs` that must be answered.
//!   On HTTP/1 hyper's header-read timer enforces it: it runs from the end of one request to
//!   the end of the next one's headers, so a head dripped slowly after a request ends in the
//!   same time. It is one setting, not two, because hyper starts that timer as soon as a
//!   keep-alive connection goes idle: a shorter header timeout would close idle connections
//!   before a load balancer's own idle timeout, and its next request on them would fail;
//! - at most `server.max_connection_age_secs` of life: then the connection is asked to close
//!   gracefully (HTTP/1 `Connection: close` on the next answer, HTTP/2 `GOAWAY`), so clients
//!   reconnect and spread over the replicas behind a load balancer.
//!
//! `server.max_connections` bounds the open connections (beyond it new ones wait in the kernel's
//! listen backlog) and `server.max_connections_per_client` bounds one address's share of them;
//! a peer in `trusted_proxies` is not limited, since many clients share it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::per_client::{ClientSlot, PerClient};
use crate::routes::{admin_router, router};
use crate::state::AppState;

/// A TLS handshake must finish within this time.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection asked to close gracefully (idle, too old) may take to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The deadlines every connection is held to.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    first_request: Duration,
    idle: Duration,
    max_age: Duration,
    /// At shutdown, how long requests in flight may take to finish.
    shutdown_grace: Duration,
}

impl Deadlines {
    fn from_config(server: &ServerConfig) -> Deadlines {
        Deadlines {
            first_request: Duration::from_secs(server.first_request_timeout_secs),
            idle: Duration::from_secs(server.idle_timeout_secs),
            max_age: Duration::from_secs(server.max_connection_age_secs),
            shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
        }
    }
}

/// Serves the ingestion listener until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (up to `server.shutdown_grace_secs`) and returns. The WAL stays
/// open: the caller shuts it down after this returns, so every acknowledged append is synced
/// before the process exits.
pub async fn serve(
    state: Arc<AppState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    let janitor = tokio::spawn({
        let state = Arc::clone(&state);
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                state.source_limits.forget_idle_clients();
            }
        }
    });
    let result = serve_router(&state, app, tls, listener, shutdown).await;
    janitor.abort();
    state.shutting_down.store(true, Ordering::Release);
    result
}

/// Serves the admin listener (plain HTTP: keep it on loopback or a private network) until
/// `shutdown` resolves.
pub async fn serve_admin(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // The debugger's rates: counters read every few seconds, for as long as the listener runs.
    let sampled = Arc::clone(&state);
    let sampler = tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::debugger::RATE_INTERVAL);
        loop {
            every.tick().await;
            sampled.debugger.snapshot(&sampled.metrics);
        }
    });
    let served = serve_router(&state, admin_router(Arc::clone(&state)), None, listener, shutdown).await;
    sampler.abort();
    served
}

/// The accept loop of one listener, serving `app`.
pub(crate) async fn serve_router(
    state: &Arc<AppState>,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = &state.config.server;
    let acceptor = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(server.idle_timeout_secs));
    let keepalive = Duration::from_secs(server.http2_keepalive_secs);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(keepalive))
        .keep_alive_timeout(keepalive)
        .max_concurrent_streams(server.http2_max_concurrent_streams);
    let deadlines = Deadlines::from_config(server);
    let (draining_tx, draining) = watch::channel(false);
    let max_connections = server.max_connections;
    let connection_slots = Arc::new(Semaphore::new(max_connections));
    let per_client = PerClient::new(server.max_connections_per_client);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connection_slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let trusted = server.trusted_proxies.iter().any(|net| net.contains(&peer.ip()));
        let Some(client_slot) = (if trusted { Some(None) } else { per_client.take(peer.ip()).map(Some) }) else {
            state.metrics.connections_refused.with_label_values(&["per_client_limit"]).inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            acceptor: acceptor.clone(),
            builder: builder.clone(),
            app: app.clone(),
            deadlines,
            draining: draining.clone(),
            metrics: Arc::clone(&state.metrics),
        };
        let open = OpenConnection::new(slot, client_slot, &state.metrics);
        tokio::spawn(async move {
            connection.serve(stream).await;
            drop(open);
        });
    }
    drop(listener);
    let _ = draining_tx.send(true);
    let grace = Duration::from_secs(server.shutdown_grace_secs);
    let open = max_connections - connection_slots.available_permits();
    tracing::info!(connections = open, grace_secs = grace.as_secs(), "draining connections");
    let all_closed = connection_slots.acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX));
    if tokio::time::timeout(grace, all_closed).await.is_err() {
        tracing::warn!("shutdown grace period ended with connections still open");
    }
    Ok(())
}

/// A connection's slots, counted in `inlet_http_connections` while it is open.
struct OpenConnection {
    _slot: OwnedSemaphorePermit,
    _client_slot: Option<ClientSlot>,
    metrics: Arc<Metrics>,
}

impl OpenConnection {
    fn new(slot: OwnedSemaphorePermit, client_slot: Option<ClientSlot>, metrics: &Arc<Metrics>) -> OpenConnection {
        metrics.http_connections.inc();
        OpenConnection { _slot: slot, _client_slot: client_slot, metrics: Arc::clone(metrics) }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.http_connections.dec();
    }
}

/// What a connection's requests tell its watchdog.
#[derive(Debug)]
struct Activity {
    started: Instant,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` of the last request's start or end.
    last_change_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_change_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Ends a request for the watchdog, however the request's future ends.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

struct Connection {
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    deadlines: Deadlines,
    draining: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        match self.acceptor.clone() {
            None => self.serve_io(stream).await,
            Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => self.serve_io(tls).await,
                Ok(Err(error)) => tracing::debug!(peer = %self.peer, %error, "TLS handshake failed"),
                Err(_) => {
                    self.metrics.connections_closed.with_label_values(&["tls_handshake_timeout"]).inc();
                    tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                }
            },
        }
    }

    async fn serve_io<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, io: I) {
        let Connection { peer, builder, app, deadlines, mut draining, metrics, .. } = self;
        let activity = Arc::new(Activity {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
        });
        let seen = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            seen.requests.fetch_add(1, Ordering::Relaxed);
            seen.in_flight.fetch_add(1, Ordering::Relaxed);
            seen.touch();
            let in_flight = InFlight(Arc::clone(&seen));
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await.unwrap_or_else(|e| match e {});
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(io), service).into_owned();
        tokio::pin!(connection);
        // Once the connection was asked to close, the time by which it must have.
        let mut closing_since: Option<Instant> = None;
        let mut close_grace = CLOSE_GRACE;
        let close_reason = loop {
            let wake = match closing_since {
                Some(since) => since + close_grace,
                None => next_check(&activity, deadlines),
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                changed = draining.changed(), if closing_since.is_none() => {
                    if changed.is_err() || *draining.borrow() {
                        connection.as_mut().graceful_shutdown();
                        closing_since = Some(Instant::now());
                        close_grace = deadlines.shutdown_grace;
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if closing_since.is_some() {
                        break "close_grace_ended";
                    }
                    match overdue(&activity, deadlines) {
                        None => {}
                        // A socket that never sent a request has nothing to finish.
                        Some("first_request_timeout") => break "first_request_timeout",
                        Some(reason) => {
                            metrics.connections_closed.with_label_values(&[reason]).inc();
                            connection.as_mut().graceful_shutdown();
                            closing_since = Some(Instant::now());
                        }
                    }
                }
            }
        };
        metrics.connections_closed.with_label_values(&[close_reason]).inc();
        tracing::debug!(%peer, reason = close_reason, "connection closed");
    }
}

/// When the watchdog should look again: the earliest deadline that could pass.
fn next_check(activity: &Activity, deadlines: Deadlines) -> Instant {
    let age_limit = activity.started + deadlines.max_age;
    if activity.requests.load(Ordering::Relaxed) == 0 {
        return (activity.started + deadlines.first_request).min(age_limit);
    }
    let last = Duration::from_millis(activity.last_change_ms.load(Ordering::Relaxed));
    (activity.started + last + deadlines.idle).min(age_limit)
}

/// The deadline the connection has passed, if any.
fn overdue(activity: &Activity, deadlines: Deadlines) -> Option<&'static str> {
    let age = activity.started.elapsed();
    if activity.requests.load(Ordering::Relaxed) == 0 && age >= deadlines.first_request {
        return Some("first_request_timeout");
    }
    if age >= deadlines.max_age {
        return Some("max_age");
    }
    let last = Duration::from_millis(activity.last_change_ms.load(Ordering::Relaxed));
    let idle = activity.in_flight.load(Ordering::Relaxed) == 0 && age.saturating_sub(last) >= deadlines.idle;
    idle.then_some("idle_timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(requests: u64, in_flight: usize) -> Activity {
        Activity {
            started: Instant::now(),
            requests: AtomicU64::new(requests),
            in_flight: AtomicUsize::new(in_flight),
            last_change_ms: AtomicU64::new(0),
        }
    }

    const DEADLINES: Deadlines = Deadlines {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        max_age: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(30),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_socket_is_due_at_the_first_request_deadline() {
        let silent = activity(0, 0);
        assert_eq!(next_check(&silent, DEADLINES), silent.started + DEADLINES.first_request);
        assert_eq!(overdue(&silent, DEADLINES), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(overdue(&silent, DEADLINES), Some("first_request_timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_never_idle_and_an_idle_one_is() {
        let busy = activity(1, 1);
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(overdue(&busy, DEADLINES), None, "a request in flight is not idleness");
        let quiet = activity(5, 0);
        quiet.touch();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(overdue(&quiet, DEADLINES), None);
        assert_eq!(next_check(&quiet, DEADLINES), quiet.started + DEADLINES.idle);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(overdue(&quiet, DEADLINES), Some("idle_timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn every_connection_ends_at_its_maximum_age() {
        let busy = activity(1_000, 3);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(overdue(&busy, DEADLINES), Some("max_age"));
    }
}
