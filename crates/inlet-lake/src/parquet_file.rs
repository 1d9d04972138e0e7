//! Parquet encoding. Every writer setting is a named constant with the reason for its value.

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

use crate::schema::LAKE_SCHEMA;

/// Snappy: the codec every engine that reads the lake supports (Redshift Spectrum, Athena,
/// Glue, DataFusion, pyarrow), cheap to decode. ZSTD would be ~20% smaller but is not accepted
/// everywhere the data team's tools read.
pub const COMPRESSION: Compression = Compression::SNAPPY;

/// Rows per row group. A row group is the unit of parallel work in Spectrum and Athena; at
/// ~1 KB per event, 128 Ki rows make row groups of tens of MB once compressed, in the range
/// those engines like, while bounding the writer's memory per open file.
pub const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows handed to the writer at a time (the Arrow batch size).
pub const WRITE_BATCH_ROWS: usize = 8 * 1024;

/// Page-level statistics: min/max per page let engines skip pages on `timestamp`, `type`,
/// `event`, `user_id` filters, at a few bytes per page.
pub const STATISTICS: EnabledStatistics = EnabledStatistics::Page;

/// Dictionary encoding: most columns (type, event, library, os, locale, ...) repeat a handful
/// of values, so dictionaries shrink them several times; the writer falls back to plain
/// encoding per column chunk when a dictionary grows past its page size.
pub const DICTIONARY: bool = true;

/// Parquet format 1.0 pages: the most widely readable (Spectrum's reader predates v2 pages).
pub const WRITER_VERSION: WriterVersion = WriterVersion::PARQUET_1_0;

pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(COMPRESSION)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_statistics_enabled(STATISTICS)
        .set_dictionary_enabled(DICTIONARY)
        .set_writer_version(WRITER_VERSION)
        .set_created_by(format!("inlet {}", env!("CARGO_PKG_VERSION")))
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
    pub fn new() -> ParquetFile {
        let writer = ArrowWriter::try_new(Vec::new(), LAKE_SCHEMA.clone(), Some(writer_properties()))
            .expect("the lake schema is valid for Parquet");
        ParquetFile { writer, rows: 0 }
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

impl Default for ParquetFile {
    fn default() -> ParquetFile {
        ParquetFile::new()
    }
}
