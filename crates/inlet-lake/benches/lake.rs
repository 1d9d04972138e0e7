//! Lake encoding: Parquet bytes per event against gzipped NDJSON of the same events (what
//! Segment's S3 destination writes), and encoding throughput. Results: `docs/benchmarks.md`.

use std::hint::black_box;
use std::io::Write;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inlet_lake::range_encoder::{RecordEncoder, builder_threads};
use inlet_lake::{Codec, LakeMetrics};
use inlet_segment::StoredEvent;
use inlet_wal::Record;
use serde_json::json;

const EVENTS: usize = 100_000;

/// The gateway's allocator, so allocation costs here are the ones the lake writer pays there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Events shaped like a community app's traffic: a few hundred users, a dozen event names,
/// browser context with page and campaign, per-event properties.
fn events() -> Vec<StoredEvent> {
    let categories = ["implants", "ortho", "hygiene"];
    let names = ["Article Viewed", "Bookmark Added", "Quiz Completed", "Case Shared", "Webinar Joined", "Search"];
    (0..EVENTS)
        .map(|i| {
            let event = json!({
                "messageId": format!("ajs-next-{:013}-{:08x}", 1_714_557_598_120u64 + i as u64, i * 2_654_435_761 % (1 << 32)),
                "type": if i % 4 == 0 { "page" } else { "track" },
                "event": names[i % names.len()],
                "userId": format!("doc-{}", i % 350),
                "anonymousId": format!("{:08x}-5b6e-4f70-8a91-b2c3d4e5f607", i % 900),
                "timestamp": format!("2024-05-01T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, i * 7919 % 1_000_000),
                "originalTimestamp": format!("2024-05-01T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, i * 7919 % 1_000_000),
                "sentAt": format!("2024-05-01T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, i * 7919 % 1_000_000),
                "receivedAt": format!("2024-05-01T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, i * 7919 % 1_000_000),
                "properties": {"article_id": format!("a-{}", i % 5000), "category": categories[i % 3], "position": i % 20},
                "context": {
                    "ip": format!("203.0.{}.{}", i % 200, i % 250),
                    "page": {"path": format!("/articles/{}", i % 5000), "referrer": "https://www.google.com/", "title": "Implant care",
                             "url": format!("https://dentists.example.com/articles/{}?utm_source=newsletter", i % 5000), "search": "?utm_source=newsletter"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                    "locale": "ko-KR", "timezone": "Asia/Seoul",
                    "library": {"name": "analytics.js", "version": "next-1.70.0"},
                    "campaign": {"source": "newsletter", "medium": "email"}
                },
                "integrations": {}
            });
            StoredEvent { source: "web".into(), event: event.as_object().cloned().expect("object") }
        })
        .collect()
}

/// What the lake writer does with a range of WAL records: decode, build columns, encode, on
/// `builders` threads of `range_encoder` (0: one thread, as for a lake that keeps up). The
/// records are copied first, as reading them from the WAL does.
fn encode(records: &[Vec<u8>], codec: Codec, builders: usize) -> Vec<u8> {
    let encoder = RecordEncoder {
        codec,
        min_time: DateTime::<Utc>::MIN_UTC,
        metrics: LakeMetrics::register(&prometheus::Registry::new()),
        builders,
    };
    let records =
        records.iter().enumerate().map(|(lsn, payload)| Ok(Record { lsn: lsn as u64, payload: payload.clone() }));
    let mut files = encoder.encode(records).expect("encode");
    assert_eq!(files.len(), 1, "the events are all of one hour");
    files.pop().expect("one file").bytes
}

fn gzip_ndjson(events: &[StoredEvent]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for event in events {
        serde_json::to_writer(&mut gz, &event.event).expect("json");
        gz.write_all(b"\n").expect("write");
    }
    gz.finish().expect("gzip")
}

fn benches(c: &mut Criterion) {
    let events = events();
    let raw: usize = events.iter().map(|e| serde_json::to_vec(&e.event).expect("json").len() + 1).sum();
    let gzip = gzip_ndjson(&events);
    let records: Vec<Vec<u8>> = events.iter().map(StoredEvent::encode).collect();
    eprintln!(
        "{EVENTS} events: NDJSON {raw} B ({:.1} B/event); gzipped NDJSON {} B ({:.1} B/event)",
        raw as f64 / EVENTS as f64,
        gzip.len(),
        gzip.len() as f64 / EVENTS as f64
    );
    for codec in [Codec::Gzip, Codec::Zstd, Codec::Snappy] {
        let size = encode(&records, codec, 0).len();
        eprintln!(
            "  Parquet with {codec:?}: {size} B ({:.1} B/event, {:.2}x gzipped NDJSON)",
            size as f64 / EVENTS as f64,
            size as f64 / gzip.len() as f64
        );
    }
    let mut group = c.benchmark_group("lake");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    for codec in [Codec::Gzip, Codec::Zstd, Codec::Snappy] {
        group.bench_function(format!("parquet_{codec:?}_100k").to_lowercase(), |b| {
            b.iter(|| encode(black_box(&records), codec, 0))
        });
    }
    // A lake that is behind: the builder threads the writer then uses.
    group.bench_function("parquet_gzip_100k_threads", |b| {
        b.iter(|| encode(black_box(&records), Codec::Gzip, builder_threads()))
    });
    group.bench_function("gzip_ndjson_100k", |b| b.iter(|| gzip_ndjson(black_box(&events))));
    group.finish();
}

criterion_group!(lake, benches);
criterion_main!(lake);
