//! The lake writer's sustained flush rate: a write-ahead log filled with the lake benchmark's
//! events, then the writer started on it and timed until it has confirmed the last record.
//! The whole log is a backlog, so it is flushed in ranges of `max_range_records`, as after an
//! outage or a burst. Prints one JSON line.
//!
//! ```text
//! cargo run --release -p inlet-lake-writer --example flush_rate -- 1000000
//! cargo run --release -p inlet-lake-writer --example flush_rate -- 1000000 s3://bucket/prefix
//! ```
//!
//! Arguments: events (default 1,000,000), lake URL (default a local directory in a temporary
//! folder). S3 credentials, region and endpoint come from the environment as for the gateway
//! (`AWS_*`, plus `INLET_BENCH_S3_ENDPOINT` for a local S3 such as Garage).

// Shared with the encoding benchmark, which uses the rest of it.
#[allow(dead_code)]
#[path = "../benches/corpus/mod.rs"]
mod corpus;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use inlet_lake::{Codec, LakeLocation, S3Settings};
use inlet_lake_writer::{LAKE_CONSUMER, LakeMetrics, LakeSettings, LakeWriter};
use inlet_segment::StoredEvent;
use inlet_wal::{WalConfig, WalHandle};

/// The corpus repeats with this period; its events differ within it (ids, times).
const DISTINCT_EVENTS: usize = 100_000;
const APPEND_BATCH: usize = 1_000;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(1_000_000, |n| n.parse().expect("events: a number"));
    let dir = tempfile::tempdir().expect("tempdir");
    let location = match args.next() {
        Some(url) => LakeLocation::parse(&url).expect("lake URL"),
        None => LakeLocation::Local(dir.path().join("lake")),
    };
    let config = WalConfig { consumers: vec![LAKE_CONSUMER.into()], ..WalConfig::new(dir.path().join("wal")) };
    let (wal, _) = WalHandle::start(config, None).expect("wal");
    let wal = Arc::new(wal);
    let records: Vec<Vec<u8>> = corpus::events(DISTINCT_EVENTS).iter().map(StoredEvent::encode).collect();
    let bytes: usize = (0..count).map(|i| records[i % DISTINCT_EVENTS].len()).sum();
    for start in (0..count).step_by(APPEND_BATCH) {
        let batch = (start..(start + APPEND_BATCH).min(count)).map(|i| records[i % DISTINCT_EVENTS].clone()).collect();
        wal.append(batch).await.expect("append");
    }
    let last = wal.durable_lsn();
    let settings = LakeSettings {
        location: location.clone(),
        s3: S3Settings {
            endpoint: std::env::var("INLET_BENCH_S3_ENDPOINT").ok(),
            force_path_style: true,
            ..S3Settings::default()
        },
        instance_id: "gw-bench".into(),
        state_dir: dir.path().join("state"),
        max_age: Duration::from_secs(1),
        hour_grace: Duration::from_secs(60),
        max_range_records: 250_000,
        max_range_bytes: 128 * 1024 * 1024,
        min_event_time: DateTime::<Utc>::MIN_UTC,
        codec: Codec::default(),
        suppressions: Arc::default(),
    };
    let metrics = LakeMetrics::register(&prometheus::Registry::new());
    let writer = LakeWriter::new(settings, Arc::clone(&wal), metrics.clone()).expect("lake writer");
    let (stop, receiver) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(writer.run(receiver, Duration::from_secs(60)));
    while wal.cursor(LAKE_CONSUMER) != Some(last) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.send(true).expect("stop");
    task.await.expect("join").expect("run");
    let report = serde_json::json!({
        "lake": location.url_of(""),
        "events": count,
        "wal_bytes": bytes,
        "files": metrics.files_written.get(),
        "parquet_bytes": metrics.bytes_written.get(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "events_per_second": (count as f64 / seconds).round(),
    });
    writeln!(std::io::stdout(), "{report}").expect("stdout");
}
