//! Every metric the gateway exports, defined once. Naming follows `docs/instrumentation.md`:
//! `inlet_<subsystem>_<name>_<unit>[_total]`; labels come from bounded sets only (route
//! template, status code, reason code, configured source name).

use std::sync::Arc;
use std::time::Duration;

use inlet_wal::{WalHandle, WalObserver};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub events_accepted: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub events_deduplicated: IntCounterVec,
    pub requests_rejected: IntCounterVec,
    pub inflight_bytes: IntGauge,
    pub inflight_requests: IntGauge,
    pub http_connections: IntGauge,
    pub connections_refused: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub requests_limited: IntCounterVec,
    pub source_wal_bytes: prometheus::IntGaugeVec,
    pub dedupe_entries: IntGauge,
    pub dedupe_evicted: IntCounter,
    pub wal_appended_records: IntCounter,
    pub wal_appended_bytes: IntCounter,
    pub wal_fsync_duration: Histogram,
    pub wal_group_commit_records: Histogram,
    pub wal_append_queue: Histogram,
    pub wal_append_duration: Histogram,
    pub wal_disk_bytes: IntGauge,
    pub wal_segments: IntGauge,
    pub wal_durable_lsn: IntGauge,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("metric definition is valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "inlet_http_request_duration_seconds",
                "Time from request to response, by route template.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid");
        r.register(Box::new(http_request_duration.clone())).expect("unique");
        let counter = IntCounter::new(
            "inlet_dedupe_evicted_total",
            "Remembered message ids forgotten before the window ended, to stay within dedupe.max_entries.",
        )
        .expect("valid");
        r.register(Box::new(counter.clone())).expect("unique");
        Metrics {
            http_requests: counter_vec(
                &r,
                "inlet_http_requests_total",
                "HTTP requests answered, by route template and status code.",
                &["route", "status"],
            ),
            http_request_duration,
            events_accepted: counter_vec(
                &r,
                "inlet_ingest_events_accepted_total",
                "Events appended to the write-ahead log, by source.",
                &["source"],
            ),
            events_rejected: counter_vec(
                &r,
                "inlet_ingest_events_rejected_total",
                "Events refused for breaking a rule, by reason code.",
                &["reason"],
            ),
            events_deduplicated: counter_vec(
                &r,
                "inlet_ingest_events_deduplicated_total",
                "Events acknowledged but not stored again (messageId seen within the window), by source.",
                &["source"],
            ),
            requests_rejected: counter_vec(
                &r,
                "inlet_ingest_requests_rejected_total",
                "Ingestion requests refused as a whole, by error code.",
                &["code"],
            ),
            inflight_bytes: gauge(
                &r,
                "inlet_ingest_inflight_bytes",
                "Request bytes reserved by requests being decoded or awaiting the write-ahead log.",
            ),
            inflight_requests: gauge(&r, "inlet_ingest_inflight_requests", "Ingestion requests being handled."),
            http_connections: gauge(&r, "inlet_http_connections", "Client connections open."),
            connections_refused: counter_vec(
                &r,
                "inlet_http_connections_refused_total",
                "Connections closed at accept, by reason (per_client_limit).",
                &["reason"],
            ),
            connections_closed: counter_vec(
                &r,
                "inlet_http_connections_closed_total",
                "Connections the gateway closed or asked to close, by deadline passed.",
                &["reason"],
            ),
            requests_limited: counter_vec(
                &r,
                "inlet_ingest_requests_limited_total",
                "Ingestion requests refused by a per-source limit, by source and code.",
                &["source", "code"],
            ),
            source_wal_bytes: {
                let g = prometheus::IntGaugeVec::new(
                    Opts::new("inlet_ingest_source_wal_bytes", "Bytes each source appended that the WAL still holds."),
                    &["source"],
                )
                .expect("valid");
                r.register(Box::new(g.clone())).expect("unique");
                g
            },
            dedupe_entries: gauge(&r, "inlet_dedupe_entries", "Message ids remembered for deduplication."),
            dedupe_evicted: counter,
            wal_appended_records: {
                let c = IntCounter::new("inlet_wal_appended_records_total", "Records appended to the write-ahead log.")
                    .expect("valid");
                r.register(Box::new(c.clone())).expect("unique");
                c
            },
            wal_appended_bytes: {
                let c =
                    IntCounter::new("inlet_wal_appended_bytes_total", "Payload bytes appended to the write-ahead log.")
                        .expect("valid");
                r.register(Box::new(c.clone())).expect("unique");
                c
            },
            wal_fsync_duration: histogram(
                &r,
                "inlet_wal_fsync_duration_seconds",
                "Duration of each fdatasync of the write-ahead log.",
                LATENCY_BUCKETS.to_vec(),
            ),
            wal_group_commit_records: histogram(
                &r,
                "inlet_wal_group_commit_records",
                "Records made durable by one fdatasync (group commit size).",
                vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
            ),
            wal_append_queue: histogram(
                &r,
                "inlet_wal_append_queue_seconds",
                "Time an append waited before the write-ahead log's writer thread took it.",
                LATENCY_BUCKETS.to_vec(),
            ),
            wal_append_duration: histogram(
                &r,
                "inlet_wal_append_duration_seconds",
                "Time from a request's append to its answer: queue, write, fdatasync and wake-up.",
                LATENCY_BUCKETS.to_vec(),
            ),
            wal_disk_bytes: gauge(&r, "inlet_wal_disk_bytes", "Bytes of write-ahead log segments on disk."),
            wal_segments: gauge(&r, "inlet_wal_segments", "Write-ahead log segment files on disk."),
            wal_durable_lsn: gauge(
                &r,
                "inlet_wal_durable_lsn",
                "Every record below this log sequence number is durable.",
            ),
            registry: r,
        }
    }

    /// The registry, for other subsystems (the lake writer) to register their metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Pre-creates the labelled series that should read 0 rather than be absent.
    pub fn init_labels<'a>(&self, sources: impl Iterator<Item = &'a str>) {
        for source in sources {
            self.events_accepted.with_label_values(&[source]);
            self.events_deduplicated.with_label_values(&[source]);
            for code in ["source_overloaded", "source_rate_limited", "source_storage_full"] {
                self.requests_limited.with_label_values(&[source, code]);
            }
        }
        for reason in inlet_segment::RejectReason::ALL {
            self.events_rejected.with_label_values(&[reason.code()]);
        }
    }

    /// Renders the Prometheus text format, refreshing the gauges read from the WAL.
    pub fn render(&self, wal: &WalHandle) -> String {
        self.wal_disk_bytes.set(wal.disk_bytes() as i64);
        self.wal_segments.set(wal.segments() as i64);
        self.wal_durable_lsn.set(wal.durable_lsn() as i64);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Feeds the WAL writer's sync timings into the histograms.
#[derive(Debug)]
pub struct WalMetrics(pub Arc<Metrics>);

impl WalObserver for WalMetrics {
    fn synced(&self, duration: Duration, records: u64) {
        self.0.wal_fsync_duration.observe(duration.as_secs_f64());
        self.0.wal_group_commit_records.observe(records as f64);
    }

    fn queued(&self, waited: Duration) {
        self.0.wal_append_queue.observe(waited.as_secs_f64());
    }
}
