//! The ingestion hot path without HTTP: parse + normalise + encode a 100-event batch, and
//! append it to the WAL with and without fsync. Results: `docs/benchmarks.md`.

use std::hint::black_box;

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use inlet_segment::{Limits, Normaliser, RequestMeta, RouteKind, encode_stored_event, parse_body};
use inlet_wal::{FsyncPolicy, Wal, WalConfig};
use serde_json::json;

const EVENTS: usize = 100;

/// A batch shaped like what analytics.js and the mobile SDKs send (~700 bytes an event).
fn batch_body() -> Vec<u8> {
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            json!({
                "type": if i % 3 == 0 { "page" } else { "track" },
                "event": "Article Viewed",
                "messageId": format!("ajs-next-1714557598120-{i:08}-0c7a-4d0e-9d5e-0d7b3b1a2f10"),
                "anonymousId": "8d9c1a34-5b6e-4f70-8a91-b2c3d4e5f607",
                "userId": format!("doc-{}", i % 17),
                "timestamp": "2024-05-01T09:59:58.120Z",
                "properties": {"article_id": format!("a-{i}"), "category": "implants", "position": i},
                "context": {
                    "page": {"path": "/articles/implants", "referrer": "https://www.google.com/", "title": "Implant care",
                             "url": "https://dentists.example.com/articles/implants?utm_source=newsletter", "search": "?utm_source=newsletter"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                    "locale": "ko-KR", "timezone": "Asia/Seoul",
                    "library": {"name": "analytics.js", "version": "next-1.70.0"},
                    "campaign": {"source": "newsletter", "medium": "email"}
                },
                "integrations": {}
            })
        })
        .collect();
    serde_json::to_vec(&json!({"batch": events, "sentAt": "2024-05-01T09:59:58.130Z", "writeKey": "k"})).expect("json")
}

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
    let meta = RequestMeta { received_at: Utc::now(), client_ip: Some("203.0.113.7".parse().expect("ip")) };
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
}

criterion_group!(ingest, benches);
criterion_main!(ingest);
