//! # inlet-destinations: stored events, forwarded to Amplitude and GA4
//!
//! Each configured destination is a consumer of the WAL with its own cursor
//! ([`delivery`]): it maps events to the vendor's shape ([`amplitude`], [`ga4`]), packs them
//! into requests within the vendor's limits ([`vendor::pack`]), and decides each event's fate
//! from the vendor's answer through the one retry policy ([`retry`]): delivered, retried with
//! backoff, held (throttling), split (too large), or given up on and stored in the dead
//! letters ([`dead_letters`]). [`replay`] sends a time range again from the lake files or the
//! dead letters. Nothing here knows HTTP serving or the gateway; the gateway wires it.
//!
//! The durable parts document their invariants where they live: the cursor and resolution
//! state in [`delivery`], the dead-letter files in [`dead_letters`].

pub mod amplitude;
pub mod config;
pub mod consent;
pub mod dead_letters;
pub mod deletions;
pub mod delivery;
pub mod ga4;
pub mod metrics;
pub mod outbox;
pub mod replay;
pub mod retry;
pub mod status;
pub mod vendor;

use std::sync::Arc;
use std::time::Duration;

pub use config::{ClientIdFrom, DeliveryConfig, DestinationConfig, VendorConfig};
pub use consent::{ConsentConfig, WithoutConsent};
pub use dead_letters::{DeadLetter, DeadLetterStore};
pub use delivery::{Delivery, DeliveryParts, consumer_name};
pub use metrics::{DestinationMetricFamilies, DestinationMetrics};
pub use outbox::{Outbox, OutboxParts};
pub use replay::{ReplayFrom, ReplayReport, ReplayRequest, replay};
pub use retry::RetryPolicy;
pub use status::{DestinationStatus, RecentError, StatusReport};
pub use vendor::Vendor;

/// A configured destination: its settings and its vendor's mapping.
#[derive(Debug, Clone)]
pub struct Destination {
    pub config: DestinationConfig,
    pub vendor: Vendor,
}

impl Destination {
    pub fn new(config: DestinationConfig) -> Destination {
        let types = config.types.clone().unwrap_or_else(|| config::default_types(&config.vendor));
        let vendor = match &config.vendor {
            VendorConfig::Amplitude { api_key, min_id_length, group_type, user_mapping_endpoint, .. } => {
                Vendor::Amplitude(amplitude::Amplitude {
                    api_key: api_key.clone(),
                    endpoint: config.endpoint.clone().unwrap_or_else(|| amplitude::DEFAULT_ENDPOINT.into()),
                    min_id_length: *min_id_length,
                    types,
                    group_type: group_type.clone(),
                    user_mapping_endpoint: user_mapping_endpoint
                        .clone()
                        .unwrap_or_else(|| amplitude::DEFAULT_USER_MAPPING_ENDPOINT.into()),
                })
            }
            VendorConfig::Ga4 { measurement_id, api_secret, client_id, .. } => Vendor::Ga4(ga4::Ga4 {
                measurement_id: measurement_id.clone(),
                api_secret: api_secret.clone(),
                endpoint: config.endpoint.clone().unwrap_or_else(|| ga4::DEFAULT_ENDPOINT.into()),
                client_id_from: *client_id,
                types,
            }),
        };
        Destination { config, vendor }
    }

    /// Maps one event as delivery would (golden tests, debugging).
    pub fn map(&self, stored: &inlet_segment::StoredEvent, now: chrono::DateTime<chrono::Utc>) -> vendor::Mapped {
        self.vendor.map(stored, now)
    }

    /// A fresh delivery engine for this destination, reporting to `status`.
    pub fn outbox(&self, metrics: DestinationMetrics, status: Arc<DestinationStatus>) -> Outbox {
        let delivery = &self.config.delivery;
        let concurrency = self.config.max_concurrent_requests();
        let http = outbox::http_client(Duration::from_secs(delivery.request_timeout_secs), concurrency);
        Outbox::new(
            self.vendor.clone(),
            OutboxParts {
                policy: delivery.retry_policy(),
                http,
                metrics,
                consent: self.config.consent.clone(),
                status,
                max_concurrent_requests: concurrency,
            },
        )
    }
}
