//! # inlet-gateway: the ingestion gateway
//!
//! Speaks Segment's HTTP Tracking API in front of the write-ahead log. Entry points:
//! [`AppState::open`] (configuration → open WAL and shared state), [`router`] (for `oneshot`
//! tests), and [`serve`] (a listener and a shutdown future; tests bind port 0).

pub mod auth;
pub mod body;
pub mod client_ip;
pub mod config;
pub mod dedupe;
pub mod destinations;
pub mod dev;
pub mod error;
pub mod inflight;
pub mod ingest;
pub mod lake;
pub mod metrics;
pub mod per_client;
pub mod routes;
pub mod server;
pub mod settings;
pub mod source_limits;
pub mod state;
pub mod tls;

pub use config::Config;
pub use routes::{admin_router, router};
pub use server::{serve, serve_admin};
pub use state::{AppState, Clock, SystemClock};
