//! The lake benchmarks' events and the encoding they time, shared by `benches/lake.rs` and
//! `examples/encode_repeatedly.rs` (instruction counts under callgrind).

use chrono::{DateTime, Utc};
use inlet_lake::Codec;
use inlet_lake::parquet_file::WRITE_BATCH_ROWS;
use inlet_lake_writer::LakeMetrics;
use inlet_lake_writer::range_encoder::RecordEncoder;
use inlet_segment::StoredEvent;
use inlet_wal::RecordChunk;
use serde_json::json;

/// Events shaped like a community app's traffic: a few hundred users, a dozen event names,
/// browser context with page and campaign, per-event properties.
pub fn events(count: usize) -> Vec<StoredEvent> {
    let categories = ["implants", "ortho", "hygiene"];
    let names = ["Article Viewed", "Bookmark Added", "Quiz Completed", "Case Shared", "Webinar Joined", "Search"];
    (0..count)
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
            StoredEvent::new("web", event.as_object().cloned().expect("object"))
        })
        .collect()
}

/// What the lake writer does with a range of WAL records: decode, build columns, encode, on
/// `builders` threads of `range_encoder` (0: one thread, as for a lake that keeps up). The
/// records are copied first into chunks of a batch's rows, as reading them from the WAL does.
pub fn encode(records: &[Vec<u8>], codec: Codec, builders: usize) -> Vec<u8> {
    let encoder = RecordEncoder {
        codec,
        min_time: DateTime::<Utc>::MIN_UTC,
        metrics: LakeMetrics::register(&prometheus::Registry::new()),
        builders,
        suppressions: Default::default(),
    };
    let chunks = records.chunks(WRITE_BATCH_ROWS).enumerate().map(|(n, payloads)| {
        let mut chunk = RecordChunk::with_capacity(payloads.len(), payloads.iter().map(Vec::len).sum());
        for (i, payload) in payloads.iter().enumerate() {
            chunk.push((n * WRITE_BATCH_ROWS + i) as u64, payload);
        }
        Ok(chunk)
    });
    let mut files = encoder.encode(chunks).expect("encode");
    assert_eq!(files.len(), 1, "the events are all of one hour");
    files.pop().expect("one file").bytes
}
