//! The baseline target: an axum server that reads each request's body and answers 200 with
//! Segment's `{"success":true}`, without parsing, storing or fsyncing anything. Measured in the
//! same run as the gateway, it is what the HTTP stack alone does on this machine.

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;

pub async fn serve(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().fallback(|body: Bytes| async move {
        let _ = body.len();
        ([(CONTENT_TYPE, "application/json")], "{\"success\":true}")
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
