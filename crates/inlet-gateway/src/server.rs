//! The accept loop: plain HTTP or TLS, HTTP/1.1 and HTTP/2, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::routes::router;
use crate::state::AppState;

/// A client must finish sending request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake must finish within this time.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish (up
/// to `server.shutdown_grace_secs`) and returns. At `server.max_connections` open connections
/// it stops accepting until one closes: new clients wait in the kernel's listen backlog. The WAL stays open: the caller shuts it down
/// after this returns, so every acknowledged append is synced before the process exits.
pub async fn serve(
    state: Arc<AppState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(Arc::clone(&state));
    let acceptor = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let connection_slots = Arc::new(Semaphore::new(state.config.server.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connection_slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let watcher = graceful.watcher();
                let builder = builder.clone();
                let acceptor = acceptor.clone();
                let app = app.clone();
                let open = OpenConnection::new(slot, &state);
                tokio::spawn(async move {
                    serve_connection(stream, peer, acceptor, builder, app, watcher).await;
                    drop(open);
                });
            }
            () = &mut shutdown => break,
        }
    }
    state.shutting_down.store(true, Ordering::Release);
    drop(listener);
    let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
    tracing::info!(connections = graceful.count(), grace_secs = grace.as_secs(), "draining connections");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period ended with connections still open");
    }
    Ok(())
}

/// A connection's slot, counted in `inlet_http_connections` while it is open.
struct OpenConnection {
    _slot: OwnedSemaphorePermit,
    state: Arc<AppState>,
}

impl OpenConnection {
    fn new(slot: OwnedSemaphorePermit, state: &Arc<AppState>) -> OpenConnection {
        state.metrics.http_connections.inc();
        OpenConnection { _slot: slot, state: Arc::clone(state) }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.state.metrics.http_connections.dec();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap_or_else(|e| match e {})) }
    });
    let result = match acceptor {
        None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await,
        Some(acceptor) => {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            watcher.watch(builder.serve_connection(TokioIo::new(tls), service).into_owned()).await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
