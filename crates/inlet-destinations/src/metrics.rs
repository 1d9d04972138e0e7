//! Destination metrics (naming per `docs/instrumentation.md`), labelled by destination name;
//! registered once into the gateway's registry and shared by every destination.

use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    register_gauge_vec_with_registry, register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry,
};

/// The metric families, registered once.
#[derive(Debug, Clone)]
pub struct DestinationMetricFamilies {
    delivered: IntCounterVec,
    retried: IntCounterVec,
    without_consent: IntCounterVec,
    dead_lettered: IntCounterVec,
    requests: HistogramVec,
    backlog_events: IntGaugeVec,
    backlog_bytes: IntGaugeVec,
    over_budget: IntGaugeVec,
    lag: GaugeVec,
    cursor: IntGaugeVec,
}

/// One destination's handles.
#[derive(Debug, Clone)]
pub struct DestinationMetrics {
    name: String,
    families: DestinationMetricFamilies,
    pub delivered: IntCounter,
    pub retried: IntCounter,
    pub without_consent: IntCounter,
    pub backlog_events: IntGauge,
    pub backlog_bytes: IntGauge,
    pub over_budget: IntGauge,
    pub lag: Gauge,
    pub cursor: IntGauge,
}

impl DestinationMetricFamilies {
    pub fn register(registry: &Registry) -> DestinationMetricFamilies {
        const DEFINED_ONCE: &str = "metric definitions are valid and their names unique";
        let by_destination = &["destination"];
        DestinationMetricFamilies {
            delivered: register_int_counter_vec_with_registry!(
                "inlet_destination_delivered_events_total",
                "Events the destination accepted.",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
            retried: register_int_counter_vec_with_registry!(
                "inlet_destination_retried_events_total",
                "Failed delivery attempts of events that will be tried again.",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
            without_consent: register_int_counter_vec_with_registry!(
                "inlet_destination_without_consent_events_total",
                "Events not sent because the user's consent does not cover the destination's categories.",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
            dead_lettered: register_int_counter_vec_with_registry!(
                "inlet_destination_dead_lettered_events_total",
                "Events given up on and written to the dead letters, by reason.",
                &["destination", "reason"],
                registry
            )
            .expect(DEFINED_ONCE),
            requests: register_histogram_vec_with_registry!(
                "inlet_destination_request_duration_seconds",
                "Requests to destinations, by outcome.",
                &["destination", "status_class"],
                vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                registry
            )
            .expect(DEFINED_ONCE),
            backlog_events: register_int_gauge_vec_with_registry!(
                "inlet_destination_backlog_events",
                "Acknowledged events not yet delivered or dead-lettered.",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
            backlog_bytes: register_int_gauge_vec_with_registry!(
                "inlet_destination_backlog_bytes",
                "WAL bytes held on disk for this destination (estimate).",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
            over_budget: register_int_gauge_vec_with_registry!(
                "inlet_destination_backlog_over_budget",
                "1 while the backlog is over max_backlog_bytes and the oldest events are being dead-lettered.",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
            lag: register_gauge_vec_with_registry!(
                "inlet_destination_lag_seconds",
                "Age (since receipt) of the oldest event not yet delivered.",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
            cursor: register_int_gauge_vec_with_registry!(
                "inlet_destination_cursor_lsn",
                "Every WAL record below this LSN is resolved for the destination.",
                by_destination,
                registry
            )
            .expect(DEFINED_ONCE),
        }
    }

    pub fn for_destination(&self, name: &str) -> DestinationMetrics {
        let l = [name];
        DestinationMetrics {
            name: name.to_owned(),
            delivered: self.delivered.with_label_values(&l),
            retried: self.retried.with_label_values(&l),
            without_consent: self.without_consent.with_label_values(&l),
            backlog_events: self.backlog_events.with_label_values(&l),
            backlog_bytes: self.backlog_bytes.with_label_values(&l),
            over_budget: self.over_budget.with_label_values(&l),
            lag: self.lag.with_label_values(&l),
            cursor: self.cursor.with_label_values(&l),
            families: self.clone(),
        }
    }
}

impl DestinationMetrics {
    /// Handles on a private registry, for replay and tests.
    pub fn unregistered(name: &str) -> DestinationMetrics {
        DestinationMetricFamilies::register(&Registry::new()).for_destination(name)
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.families.dead_lettered.with_label_values(&[self.name.as_str(), reason]).inc();
    }

    pub fn observe_request(&self, status_class: &str, elapsed: Duration) {
        self.families.requests.with_label_values(&[self.name.as_str(), status_class]).observe(elapsed.as_secs_f64());
    }
}
