//! Destination metrics (naming per `docs/instrumentation.md`), labelled by destination name;
//! registered once into the gateway's registry and shared by every destination.

use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The metric families, registered once.
#[derive(Debug, Clone)]
pub struct DestinationMetricFamilies {
    delivered: IntCounterVec,
    retried: IntCounterVec,
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
    pub backlog_events: IntGauge,
    pub backlog_bytes: IntGauge,
    pub over_budget: IntGauge,
    pub lag: Gauge,
    pub cursor: IntGauge,
}

impl DestinationMetricFamilies {
    pub fn register(registry: &Registry) -> DestinationMetricFamilies {
        fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
            registry.register(Box::new(metric.clone())).expect("unique metric");
            metric
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str| {
            register(registry, IntGaugeVec::new(Opts::new(name, help), &["destination"]).expect("valid metric"))
        };
        DestinationMetricFamilies {
            delivered: counter(
                "inlet_destination_delivered_events_total",
                "Events the destination accepted.",
                &["destination"],
            ),
            retried: counter(
                "inlet_destination_retried_events_total",
                "Failed delivery attempts of events that will be tried again.",
                &["destination"],
            ),
            dead_lettered: counter(
                "inlet_destination_dead_lettered_events_total",
                "Events given up on and written to the dead letters, by reason.",
                &["destination", "reason"],
            ),
            requests: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "inlet_destination_request_duration_seconds",
                        "Requests to destinations, by outcome.",
                    )
                    .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                    &["destination", "status_class"],
                )
                .expect("valid metric"),
            ),
            backlog_events: gauge(
                "inlet_destination_backlog_events",
                "Acknowledged events not yet delivered or dead-lettered.",
            ),
            backlog_bytes: gauge(
                "inlet_destination_backlog_bytes",
                "WAL bytes held on disk for this destination (estimate).",
            ),
            over_budget: gauge(
                "inlet_destination_backlog_over_budget",
                "1 while the backlog is over max_backlog_bytes and the oldest events are being dead-lettered.",
            ),
            lag: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "inlet_destination_lag_seconds",
                        "Age (since receipt) of the oldest event not yet delivered.",
                    ),
                    &["destination"],
                )
                .expect("valid metric"),
            ),
            cursor: gauge(
                "inlet_destination_cursor_lsn",
                "Every WAL record below this LSN is resolved for the destination.",
            ),
        }
    }

    pub fn for_destination(&self, name: &str) -> DestinationMetrics {
        let l = [name];
        DestinationMetrics {
            name: name.to_owned(),
            delivered: self.delivered.with_label_values(&l),
            retried: self.retried.with_label_values(&l),
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
