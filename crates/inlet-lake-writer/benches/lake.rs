//! Lake encoding: Parquet bytes per event against gzipped NDJSON of the same events (what
//! Segment's S3 destination writes), and encoding throughput. Results: `docs/benchmarks.md`.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inlet_lake::Codec;
use inlet_lake_writer::range_encoder::builder_threads;
use inlet_segment::StoredEvent;

/// The gateway's allocator, so allocation costs here are the ones the lake writer pays there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod corpus;
use corpus::{encode, events};

const EVENTS: usize = 100_000;

fn gzip_ndjson(events: &[StoredEvent]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for event in events {
        serde_json::to_writer(&mut gz, &event.event).expect("json");
        gz.write_all(b"\n").expect("write");
    }
    gz.finish().expect("gzip")
}

fn benches(c: &mut Criterion) {
    let events = events(EVENTS);
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
