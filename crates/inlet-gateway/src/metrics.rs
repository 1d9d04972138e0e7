//! Every metric the gateway exports, defined once. Naming follows `docs/instrumentation.md`:
//! `inlet_<subsystem>_<name>_<unit>[_total]`; labels come from bounded sets only (route
//! template, status code, reason code, configured source name).

use std::sync::Arc;
use std::time::Duration;

use inlet_wal::{WalHandle, WalObserver};
use prometheus::{
    Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
    register_histogram_vec_with_registry, register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_counter_with_registry, register_int_gauge_vec_with_registry, register_int_gauge_with_registry,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub events_accepted: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub events_deduplicated: IntCounterVec,
    pub events_suppressed: IntCounterVec,
    pub plan_events: IntCounterVec,
    pub plan_violations: IntCounterVec,
    pub privacy_suppressed_ids: IntGauge,
    pub requests_rejected: IntCounterVec,
    pub inflight_bytes: IntGauge,
    pub inflight_requests: IntGauge,
    pub http_connections: IntGauge,
    pub connections_refused: IntCounterVec,
    pub connections_closed: IntCounterVec,
    pub requests_limited: IntCounterVec,
    pub source_wal_bytes: IntGaugeVec,
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

const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Registration fails only for an invalid definition or a name registered twice: both bugs.
const DEFINED_ONCE: &str = "metric definitions are valid and their names unique";

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let latency = || LATENCY_BUCKETS.to_vec();
        Metrics {
            http_requests: register_int_counter_vec_with_registry!(
                "inlet_http_requests_total",
                "HTTP requests answered, by route template and status code.",
                &["route", "status"],
                r
            )
            .expect(DEFINED_ONCE),
            http_request_duration: register_histogram_vec_with_registry!(
                "inlet_http_request_duration_seconds",
                "Time from request to response, by route template.",
                &["route"],
                latency(),
                r
            )
            .expect(DEFINED_ONCE),
            events_accepted: register_int_counter_vec_with_registry!(
                "inlet_ingest_events_accepted_total",
                "Events appended to the write-ahead log, by source.",
                &["source"],
                r
            )
            .expect(DEFINED_ONCE),
            events_rejected: register_int_counter_vec_with_registry!(
                "inlet_ingest_events_rejected_total",
                "Events refused for breaking a rule, by reason code.",
                &["reason"],
                r
            )
            .expect(DEFINED_ONCE),
            events_deduplicated: register_int_counter_vec_with_registry!(
                "inlet_ingest_events_deduplicated_total",
                "Events acknowledged but not stored again (messageId seen within the window), by source.",
                &["source"],
                r
            )
            .expect(DEFINED_ONCE),
            events_suppressed: register_int_counter_vec_with_registry!(
                "inlet_ingest_events_suppressed_total",
                "Events acknowledged but not stored (their user or anonymous id is suppressed), by source.",
                &["source"],
                r
            )
            .expect(DEFINED_ONCE),
            plan_events: register_int_counter_vec_with_registry!(
                "inlet_tracking_plan_events_total",
                "Stored events checked against their source's tracking plan, by source and outcome (valid, violating, blocked).",
                &["source", "outcome"],
                r
            )
            .expect(DEFINED_ONCE),
            plan_violations: register_int_counter_vec_with_registry!(
                "inlet_tracking_plan_violations_total",
                "Tracking plan violations in stored events, by source, event (a planned name, (unplanned), or the call type in parentheses) and kind (unplanned_event or the JSON Schema keyword).",
                &["source", "event", "kind"],
                r
            )
            .expect(DEFINED_ONCE),
            privacy_suppressed_ids: register_int_gauge_with_registry!(
                "inlet_privacy_suppressed_ids",
                "User and anonymous ids whose events are not stored, as of the last read of the regulations.",
                r
            )
            .expect(DEFINED_ONCE),
            requests_rejected: register_int_counter_vec_with_registry!(
                "inlet_ingest_requests_rejected_total",
                "Ingestion requests refused as a whole, by error code.",
                &["code"],
                r
            )
            .expect(DEFINED_ONCE),
            inflight_bytes: register_int_gauge_with_registry!(
                "inlet_ingest_inflight_bytes",
                "Request bytes reserved by requests being decoded or awaiting the write-ahead log.",
                r
            )
            .expect(DEFINED_ONCE),
            inflight_requests: register_int_gauge_with_registry!(
                "inlet_ingest_inflight_requests",
                "Ingestion requests being handled.",
                r
            )
            .expect(DEFINED_ONCE),
            http_connections: register_int_gauge_with_registry!(
                "inlet_http_connections",
                "Client connections open.",
                r
            )
            .expect(DEFINED_ONCE),
            connections_refused: register_int_counter_vec_with_registry!(
                "inlet_http_connections_refused_total",
                "Connections closed at accept, by reason (per_client_limit).",
                &["reason"],
                r
            )
            .expect(DEFINED_ONCE),
            connections_closed: register_int_counter_vec_with_registry!(
                "inlet_http_connections_closed_total",
                "Connections the gateway closed or asked to close, by deadline passed.",
                &["reason"],
                r
            )
            .expect(DEFINED_ONCE),
            requests_limited: register_int_counter_vec_with_registry!(
                "inlet_ingest_requests_limited_total",
                "Ingestion requests refused by a per-source limit, by source and code.",
                &["source", "code"],
                r
            )
            .expect(DEFINED_ONCE),
            source_wal_bytes: register_int_gauge_vec_with_registry!(
                "inlet_ingest_source_wal_bytes",
                "Bytes each source appended that the WAL still holds.",
                &["source"],
                r
            )
            .expect(DEFINED_ONCE),
            dedupe_entries: register_int_gauge_with_registry!(
                "inlet_dedupe_entries",
                "Message ids remembered for deduplication.",
                r
            )
            .expect(DEFINED_ONCE),
            dedupe_evicted: register_int_counter_with_registry!(
                "inlet_dedupe_evicted_total",
                "Remembered message ids forgotten before the window ended, to stay within dedupe.max_entries.",
                r
            )
            .expect(DEFINED_ONCE),
            wal_appended_records: register_int_counter_with_registry!(
                "inlet_wal_appended_records_total",
                "Records appended to the write-ahead log.",
                r
            )
            .expect(DEFINED_ONCE),
            wal_appended_bytes: register_int_counter_with_registry!(
                "inlet_wal_appended_bytes_total",
                "Payload bytes appended to the write-ahead log.",
                r
            )
            .expect(DEFINED_ONCE),
            wal_fsync_duration: register_histogram_with_registry!(
                "inlet_wal_fsync_duration_seconds",
                "Duration of each fdatasync of the write-ahead log.",
                latency(),
                r
            )
            .expect(DEFINED_ONCE),
            wal_group_commit_records: register_histogram_with_registry!(
                "inlet_wal_group_commit_records",
                "Records made durable by one fdatasync (group commit size).",
                vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
                r
            )
            .expect(DEFINED_ONCE),
            wal_append_queue: register_histogram_with_registry!(
                "inlet_wal_append_queue_seconds",
                "Time an append waited before the write-ahead log's writer thread took it.",
                latency(),
                r
            )
            .expect(DEFINED_ONCE),
            wal_append_duration: register_histogram_with_registry!(
                "inlet_wal_append_duration_seconds",
                "Time from a request's append to its answer: queue, write, fdatasync and wake-up.",
                latency(),
                r
            )
            .expect(DEFINED_ONCE),
            wal_disk_bytes: register_int_gauge_with_registry!(
                "inlet_wal_disk_bytes",
                "Bytes of write-ahead log segments on disk.",
                r
            )
            .expect(DEFINED_ONCE),
            wal_segments: register_int_gauge_with_registry!(
                "inlet_wal_segments",
                "Write-ahead log segment files on disk.",
                r
            )
            .expect(DEFINED_ONCE),
            wal_durable_lsn: register_int_gauge_with_registry!(
                "inlet_wal_durable_lsn",
                "Every record below this log sequence number is durable.",
                r
            )
            .expect(DEFINED_ONCE),
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
            self.events_suppressed.with_label_values(&[source]);
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
