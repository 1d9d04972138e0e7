//! What the bloom filters on `user_id` and `anonymous_id` cost: one day of a lake re-encoded
//! with the lake's settings and with the same settings less the filters, alternated, reporting
//! bytes and encoding throughput. Run by `crates/inlet-privacy/scripts/bench.sh`.
//!   cargo run --release -p inlet-privacy --example bloom_cost -- LAKE_DIR YYYY-MM-DD [ROUNDS]

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use arrow_array::RecordBatch;
use inlet_lake::Codec;
use inlet_lake::parquet_file::{BLOOM_FILTER_COLUMNS, ParquetFile, writer_properties};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (lake, day) = (&args[1], &args[2]);
    let rounds: usize = args.get(3).map_or(3, |r| r.parse().unwrap());
    let mut files: Vec<Vec<RecordBatch>> = Vec::new();
    for source in std::fs::read_dir(format!("{lake}/events")).unwrap() {
        let day_dir = source.unwrap().path().join(format!("dt={day}"));
        for hour in std::fs::read_dir(&day_dir).into_iter().flatten() {
            for file in std::fs::read_dir(hour.unwrap().path()).unwrap() {
                let bytes = bytes::Bytes::from(std::fs::read(file.unwrap().path()).unwrap());
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
                files.push(reader.map(Result::unwrap).collect());
            }
        }
    }
    let events: usize = files.iter().flatten().map(RecordBatch::num_rows).sum();
    let with = writer_properties(Codec::Gzip);
    let without = BLOOM_FILTER_COLUMNS
        .iter()
        .fold(writer_properties(Codec::Gzip).into_builder(), |b, c| {
            b.set_column_bloom_filter_enabled(ColumnPath::from(*c), false)
        })
        .build();
    let encode = |properties: &WriterProperties| {
        let started = Instant::now();
        let mut bytes = 0;
        for batches in &files {
            let mut file = ParquetFile::for_schema(batches[0].schema(), properties.clone()).unwrap();
            for batch in batches {
                file.write(batch).unwrap();
            }
            bytes += file.finish().unwrap().len();
        }
        (bytes, events as f64 / started.elapsed().as_secs_f64())
    };
    println!("{day}: {} files, {events} events", files.len());
    for round in 1..=rounds {
        let (bytes_without, rate_without) = encode(&without);
        let (bytes_with, rate_with) = encode(&with);
        println!(
            "round {round}: without filters {bytes_without} B, {rate_without:.0} events/s; with filters {bytes_with} B \
             (+{:.2} %), {rate_with:.0} events/s ({:+.1} %)",
            (bytes_with as f64 / bytes_without as f64 - 1.0) * 100.0,
            (rate_with / rate_without - 1.0) * 100.0
        );
    }
}
