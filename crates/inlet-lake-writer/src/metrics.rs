//! The lake writer's metrics (naming per `docs/instrumentation.md`), registered into the
//! gateway's registry.

use prometheus::{
    Gauge, Histogram, IntCounter, IntGauge, Registry, register_gauge_with_registry, register_histogram_with_registry,
    register_int_counter_with_registry, register_int_gauge_with_registry,
};

#[derive(Debug, Clone)]
pub struct LakeMetrics {
    pub files_written: IntCounter,
    pub bytes_written: IntCounter,
    pub rows_written: IntCounter,
    pub upload_duration: Histogram,
    pub upload_failures: IntCounter,
    pub undecodable_records: IntCounter,
    pub suppressed_records: IntCounter,
    pub oldest_unflushed_age: Gauge,
    pub cursor_lsn: IntGauge,
}

impl LakeMetrics {
    pub fn register(registry: &Registry) -> LakeMetrics {
        const DEFINED_ONCE: &str = "metric definitions are valid and their names unique";
        LakeMetrics {
            files_written: register_int_counter_with_registry!(
                "inlet_lake_files_written_total",
                "Parquet files stored in the lake.",
                registry
            )
            .expect(DEFINED_ONCE),
            bytes_written: register_int_counter_with_registry!(
                "inlet_lake_bytes_written_total",
                "Bytes of Parquet files stored in the lake.",
                registry
            )
            .expect(DEFINED_ONCE),
            rows_written: register_int_counter_with_registry!(
                "inlet_lake_rows_written_total",
                "Events written to lake files.",
                registry
            )
            .expect(DEFINED_ONCE),
            upload_duration: register_histogram_with_registry!(
                "inlet_lake_upload_duration_seconds",
                "Time to store one lake file (or watermark).",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                registry
            )
            .expect(DEFINED_ONCE),
            upload_failures: register_int_counter_with_registry!(
                "inlet_lake_upload_failures_total",
                "Failed lake uploads (each is retried).",
                registry
            )
            .expect(DEFINED_ONCE),
            undecodable_records: register_int_counter_with_registry!(
                "inlet_lake_undecodable_records_total",
                "WAL records that were not stored events (a bug; logged).",
                registry
            )
            .expect(DEFINED_ONCE),
            suppressed_records: register_int_counter_with_registry!(
                "inlet_lake_suppressed_events_total",
                "Events left out of the lake because their id was suppressed or deleted after they were acknowledged.",
                registry
            )
            .expect(DEFINED_ONCE),
            oldest_unflushed_age: register_gauge_with_registry!(
                "inlet_lake_oldest_unflushed_age_seconds",
                "Age of the oldest acknowledged event not yet in the lake (0 when all are).",
                registry
            )
            .expect(DEFINED_ONCE),
            cursor_lsn: register_int_gauge_with_registry!(
                "inlet_lake_cursor_lsn",
                "Every WAL record below this LSN is in the lake.",
                registry
            )
            .expect(DEFINED_ONCE),
        }
    }
}
