//! Encodes the lake benchmark's events a given number of times, for counting instructions,
//! which unlike this machine's wall-clock time do not vary from run to run:
//!
//! ```text
//! cargo build --release -p inlet-lake-writer --example encode_repeatedly
//! valgrind --tool=callgrind target/release/examples/encode_repeatedly 30000 1
//! valgrind --tool=callgrind target/release/examples/encode_repeatedly 30000 3
//! ```
//!
//! Half the difference between the two totals is one encoding without the set-up. Arguments:
//! events, repeats, codec (`gzip`, the default, `zstd` or `snappy`).

#[path = "../benches/corpus/mod.rs"]
mod corpus;

use std::io::Write;

use inlet_lake::Codec;
use inlet_segment::StoredEvent;

/// The gateway's allocator, as in the benchmark.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut number = |default: usize| args.next().map_or(default, |n| n.parse().expect("a number"));
    let (count, repeats) = (number(30_000), number(1));
    let codec = std::env::args().nth(3).map_or(Codec::Gzip, |name| Codec::parse(&name).expect("gzip, zstd or snappy"));
    let records: Vec<Vec<u8>> = corpus::events(count).iter().map(StoredEvent::encode).collect();
    let bytes: usize = (0..repeats).map(|_| corpus::encode(&records, codec, 0).len()).sum();
    let summary =
        format!("{count} events encoded {repeats} times with {codec:?}: {} bytes each time", bytes / repeats.max(1));
    std::io::stdout().write_all(summary.as_bytes()).and_then(|()| std::io::stdout().write_all(b"\n")).expect("stdout");
}
