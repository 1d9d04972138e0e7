//! Parquet encoding. Every writer setting is a named constant with the reason for its value.

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::schema::LAKE_SCHEMA;

/// The codecs `lake.compression` offers. Measured on 100k realistic events
/// (`docs/bench-log/2026-11-to-12.md`): gzip 43.9 B/event, zstd 30.7, snappy 89.2, against 53.3 for gzipped
/// NDJSON. Gzip is the default because Redshift Spectrum documents gzip and snappy only, and
/// gzip is also the smaller of those two by half; zstd is for lakes read by Athena, DataFusion
/// or Spark alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    #[default]
    Gzip,
    Zstd,
    Snappy,
}

impl Codec {
    pub fn parse(name: &str) -> Option<Codec> {
        match name {
            "gzip" => Some(Codec::Gzip),
            "zstd" => Some(Codec::Zstd),
            "snappy" => Some(Codec::Snappy),
            _ => None,
        }
    }

    /// Level 3 for both, the knee of size against CPU time: on 100k realistic events gzip's
    /// own default (6) made files 2 % smaller than 3 for 39 % more encoding time.
    fn compression(self) -> Compression {
        match self {
            Codec::Gzip => Compression::GZIP(GzipLevel::try_new(3).expect("valid level")),
            Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")),
            Codec::Snappy => Compression::SNAPPY,
        }
    }
}

/// Rows per row group. A row group is the unit of parallel work in Spectrum and Athena; at
/// ~1 KB per event, 128 Ki rows make row groups of about 128 MB of data (6 MB once encoded),
/// in the range those engines like, while bounding the writer's memory per open file.
pub const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows handed to the writer at a time (the Arrow batch size), and so the records a lake
/// builder thread takes at a time (`range_encoder`). Each thread in that pipeline holds a few
/// such batches: at 8 Ki rows the gateway's peak RSS under batch load rose by 120–170 MiB,
/// at 2 Ki by about 30, with the same encoding speed (`docs/bench-log/2026-11-to-12.md`).
pub const WRITE_BATCH_ROWS: usize = 2 * 1024;

/// Page-level statistics: min/max per page let engines skip pages on `timestamp`, `type`,
/// `event`, `user_id` filters, at a few bytes per page.
pub const STATISTICS: EnabledStatistics = EnabledStatistics::Page;

/// Dictionary encoding: most columns (type, event, library, os, locale, ...) repeat a handful
/// of values, so dictionaries shrink them several times; the writer falls back to plain
/// encoding per column chunk when a dictionary grows past its page size.
pub const DICTIONARY: bool = true;

/// Columns whose values are (nearly) all distinct, written without a dictionary: one would
/// only cost hashing every value until it overflowed and the writer fell back to plain
/// encoding. `context` holds the page URL, IP and user agent of each event. Measured on 100k
/// realistic events: files 7 % smaller and encoding 20 % faster than with dictionaries on
/// every column (`properties` gained nothing and cost 4 % in size, so it keeps its dictionary).
pub const UNIQUE_COLUMNS: [&str; 4] = ["message_id", "original_timestamp", "timestamp", "context"];

/// Parquet format 1.0 pages: the most widely readable (Spectrum's reader predates v2 pages).
pub const WRITER_VERSION: WriterVersion = WriterVersion::PARQUET_1_0;

/// Columns with a bloom filter per row group: the ids a deletion looks for, so that it reads
/// only the files that may hold them (`inlet-privacy`). Sized for a full row group of distinct
/// ids at [`BLOOM_FILTER_FPP`], then folded by the writer to what the row group needed: an
/// hour of a few thousand users costs a few KB per column.
pub const BLOOM_FILTER_COLUMNS: [&str; 2] = ["user_id", "anonymous_id"];

/// One file in a hundred that lacks an id is read anyway: a deletion's cost stays the files that
/// hold the user plus 1 % of the rest.
pub const BLOOM_FILTER_FPP: f64 = 0.01;

/// The filters go together before the footer, so one ranged read of a file's tail fetches the
/// footer and every filter.
pub const BLOOM_FILTER_POSITION: BloomFilterPosition = BloomFilterPosition::End;

pub fn writer_properties(codec: Codec) -> WriterProperties {
    let builder = WriterProperties::builder()
        .set_compression(codec.compression())
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_statistics_enabled(STATISTICS)
        .set_dictionary_enabled(DICTIONARY)
        .set_writer_version(WRITER_VERSION)
        .set_created_by(format!("inlet {}", env!("CARGO_PKG_VERSION")));
    let builder = UNIQUE_COLUMNS
        .iter()
        .fold(builder, |builder, column| builder.set_column_dictionary_enabled(ColumnPath::from(*column), false));
    BLOOM_FILTER_COLUMNS
        .iter()
        .fold(builder.set_bloom_filter_position(BLOOM_FILTER_POSITION), |builder, column| {
            let path = || ColumnPath::from(*column);
            builder
                .set_column_bloom_filter_enabled(path(), true)
                .set_column_bloom_filter_fpp(path(), BLOOM_FILTER_FPP)
                .set_column_bloom_filter_max_ndv(path(), MAX_ROW_GROUP_ROWS as u64)
        })
        .build()
}

/// A Parquet file being built in memory.
pub struct ParquetFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
}

impl std::fmt::Debug for ParquetFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetFile").field("rows", &self.rows).finish()
    }
}

impl ParquetFile {
    pub fn new(codec: Codec) -> ParquetFile {
        ParquetFile::with_properties(writer_properties(codec))
    }

    /// A file with other settings (benchmarks compare codecs with it).
    pub fn with_properties(properties: WriterProperties) -> ParquetFile {
        ParquetFile::for_schema(LAKE_SCHEMA.clone(), properties).expect("the lake schema is valid for Parquet")
    }

    /// A file of another table (the batch job's metrics tables), with the lake's settings.
    pub fn for_schema(
        schema: arrow_schema::SchemaRef,
        properties: WriterProperties,
    ) -> Result<ParquetFile, parquet::errors::ParquetError> {
        Ok(ParquetFile { writer: ArrowWriter::try_new(Vec::new(), schema, Some(properties))?, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), parquet::errors::ParquetError> {
        self.rows += batch.num_rows();
        self.writer.write(batch)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Finishes the file (footer and all) and returns its bytes.
    pub fn finish(self) -> Result<Vec<u8>, parquet::errors::ParquetError> {
        self.writer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::EventColumns;
    use inlet_segment::StoredRecord;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn every_codec_round_trips() {
        let event = serde_json::json!({"messageId": "m", "type": "track", "event": "E", "userId": "u",
            "timestamp": "2024-05-01T10:00:00.000000Z", "receivedAt": "2024-05-01T10:00:00.000000Z"});
        let bytes = serde_json::to_vec(&serde_json::json!({"source": "web", "event": event})).expect("json");
        let stored = StoredRecord::decode(&bytes).expect("record");
        for codec in [Codec::Gzip, Codec::Zstd, Codec::Snappy] {
            let mut columns = EventColumns::default();
            columns.append(&stored);
            let mut file = ParquetFile::new(codec);
            file.write(&columns.finish()).expect("write");
            let bytes = bytes::Bytes::from(file.finish().expect("finish"));
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
            let column = reader.metadata().row_group(0).column(0).compression();
            let kind = |c: Compression| format!("{c:?}").split('(').next().map(str::to_owned);
            assert_eq!(kind(column), kind(codec.compression()), "{codec:?}");
            let rows: usize = reader.build().expect("reader").map(|b| b.expect("batch").num_rows()).sum();
            assert_eq!(rows, 1);
        }
        assert_eq!(Codec::parse("zstd"), Some(Codec::Zstd));
        assert_eq!(Codec::parse("lz4"), None);
    }
}
