//! The lake writer's metrics (naming per `docs/instrumentation.md`), registered into the
//! gateway's registry.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

#[derive(Debug, Clone)]
pub struct LakeMetrics {
    pub files_written: IntCounter,
    pub bytes_written: IntCounter,
    pub rows_written: IntCounter,
    pub upload_duration: Histogram,
    pub upload_failures: IntCounter,
    pub undecodable_records: IntCounter,
    pub oldest_unflushed_age: Gauge,
    pub cursor_lsn: IntGauge,
}

impl LakeMetrics {
    pub fn register(registry: &Registry) -> LakeMetrics {
        fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let upload_duration = Histogram::with_opts(
            HistogramOpts::new("inlet_lake_upload_duration_seconds", "Time to store one lake file (or watermark).")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(upload_duration.clone())).expect("unique metric");
        let oldest = Gauge::new(
            "inlet_lake_oldest_unflushed_age_seconds",
            "Age of the oldest acknowledged event not yet in the lake (0 when all are).",
        )
        .expect("valid metric");
        registry.register(Box::new(oldest.clone())).expect("unique metric");
        let cursor =
            IntGauge::new("inlet_lake_cursor_lsn", "Every WAL record below this LSN is in the lake.").expect("valid");
        registry.register(Box::new(cursor.clone())).expect("unique metric");
        LakeMetrics {
            files_written: counter(registry, "inlet_lake_files_written_total", "Parquet files stored in the lake."),
            bytes_written: counter(
                registry,
                "inlet_lake_bytes_written_total",
                "Bytes of Parquet files stored in the lake.",
            ),
            rows_written: counter(registry, "inlet_lake_rows_written_total", "Events written to lake files."),
            upload_duration,
            upload_failures: counter(
                registry,
                "inlet_lake_upload_failures_total",
                "Failed lake uploads (each is retried).",
            ),
            undecodable_records: counter(
                registry,
                "inlet_lake_undecodable_records_total",
                "WAL records that were not stored events (a bug; logged).",
            ),
            oldest_unflushed_age: oldest,
            cursor_lsn: cursor,
        }
    }
}
