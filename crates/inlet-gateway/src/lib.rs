//! # inlet-gateway: the ingestion gateway
//!
//! Speaks Segment's HTTP Tracking API in front of the write-ahead log. Entry points:
//! [`AppState::open`] (configuration → open WAL and shared state), [`router`] (for `oneshot`
//! tests), and [`serve`] (a listener and a shutdown future; tests bind port 0); the binary wires
//! them with the background tasks ([`start_privacy`], [`start_lake`], [`start_destinations`]). Everything else is
//! private to the crate; [`config`] is public because the configuration is the interface.

mod auth;
mod body;
mod client_ip;
pub mod config;
mod debugger;
mod dedupe;
mod destinations;
mod dev;
mod error;
mod inflight;
mod ingest;
mod lake;
mod metrics;
mod per_client;
mod plans;
mod privacy;
mod routes;
mod server;
mod settings;
mod source_limits;
mod state;
mod tls;

pub use config::Config;
pub use destinations::{DestinationTasks, start as start_destinations};
pub use dev::{DEV_SOURCE, ensure_dev_source};
pub use error::StartupError;
pub use lake::{LakeTask, lake_settings, lake_store, start as start_lake};
pub use privacy::{DeletionWorker, PrivacyTask, regulations_with_status, start as start_privacy};
pub use routes::{admin_router, router};
pub use server::{serve, serve_admin};
pub use settings::api_host;
pub use state::{AppState, Clock, SystemClock, operator_token};
pub use tls::server_config as tls_server_config;
