//! Parses and normalises the ingestion benchmark's single-message body a given number of
//! times, for counting instructions, which unlike this machine's wall-clock time do not vary
//! from run to run:
//!
//! ```text
//! cargo build --release -p inlet-gateway --example normalise_repeatedly
//! valgrind --tool=callgrind target/release/examples/normalise_repeatedly 1000
//! valgrind --tool=callgrind target/release/examples/normalise_repeatedly 3000
//! ```
//!
//! The difference between the two totals over 2,000 is one body without the set-up.

#[path = "../benches/corpus/mod.rs"]
mod corpus;

use std::hint::black_box;
use std::io::Write;

use inlet_segment::{IpPolicy, Limits, Normaliser, RequestMeta, parse_timestamp};

fn main() {
    let repeats: usize = std::env::args().nth(1).map_or(1, |n| n.parse().expect("a number"));
    let body = corpus::single_body();
    let normaliser = Normaliser::new(Limits::default());
    let received_at = parse_timestamp("2024-05-01T10:00:00Z").expect("a timestamp");
    let meta = RequestMeta {
        received_at,
        client_ip: Some("203.0.113.7".parse().expect("an address")),
        ip_policy: IpPolicy::Truncate,
    };
    let stored_bytes: usize =
        (0..repeats).map(|_| corpus::normalise_single(&normaliser, black_box(&body), &meta).len()).sum();
    let summary = format!("{repeats} bodies of {} bytes, {stored_bytes} bytes stored\n", body.len());
    std::io::stdout().write_all(summary.as_bytes()).expect("stdout");
}
