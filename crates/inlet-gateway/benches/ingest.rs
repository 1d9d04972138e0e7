//! The ingestion hot path without HTTP: parse + normalise + encode a 100-event batch (and one
//! single-message body), and append the batch to the WAL with and without fsync. Results:
//! `docs/benchmarks.md`.

#[path = "corpus/mod.rs"]
mod corpus;

use std::hint::black_box;

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use inlet_segment::{IpPolicy, Limits, Normaliser, RequestMeta, RouteKind, encode_stored_event, parse_body};
use inlet_wal::{FsyncPolicy, Wal, WalConfig};

use corpus::{EVENTS, batch_body, normalise_single, single_body};

fn normalise_batch(normaliser: &Normaliser, body: &[u8], meta: &RequestMeta) -> Vec<Vec<u8>> {
    let parsed = parse_body(body, RouteKind::Batch, &normaliser.limits).expect("valid batch");
    parsed
        .items
        .iter()
        .map(|item| {
            let event = normaliser.normalise(item, None, &parsed.defaults, meta).expect("valid event");
            encode_stored_event("web", &event)
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let body = batch_body();
    let normaliser = Normaliser::new(Limits::default());
    let meta = RequestMeta {
        received_at: Utc::now(),
        client_ip: Some("203.0.113.7".parse().expect("ip")),
        ip_policy: IpPolicy::Truncate,
    };
    let records = normalise_batch(&normaliser, &body, &meta);
    let record_bytes: usize = records.iter().map(Vec::len).sum();
    eprintln!("batch body {} bytes, {} records of {} bytes in all", body.len(), records.len(), record_bytes);

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("normalise_batch_100", |b| b.iter(|| normalise_batch(&normaliser, black_box(&body), &meta)));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = WalConfig { fsync: FsyncPolicy::Never, ..WalConfig::new(dir.path().join("wal")) };
    let (mut wal, _) = Wal::open(config).expect("open");
    group.bench_function("wal_append_100_no_fsync", |b| {
        b.iter_batched(|| records.clone(), |r| wal.append(&r).expect("append"), BatchSize::SmallInput)
    });
    group.bench_function("wal_append_100_fsync", |b| {
        b.iter_batched(
            || records.clone(),
            |r| {
                wal.append(&r).expect("append");
                wal.sync().expect("sync");
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("normalise_and_append_100_fsync", |b| {
        b.iter(|| {
            let r = normalise_batch(&normaliser, black_box(&body), &meta);
            wal.append(&r).expect("append");
            wal.sync().expect("sync");
        })
    });
    group.finish();

    let single = single_body();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("normalise_single", |b| b.iter(|| normalise_single(&normaliser, black_box(&single), &meta)));
    group.finish();
}

criterion_group!(ingest, benches);
criterion_main!(ingest);
