//! The metrics tables as Parquet under `{lake}/metrics/{table}/`.
//!
//! ## Layout
//! - dated tables: `metrics/{table}/{table}-{YYYY-MM-DD}-{source}.parquet`, one file per key
//!   date and source;
//! - `users`: `metrics/users/users-{source}.parquet`; `identity_map`:
//!   `metrics/identity_map/identity_map.parquet`.
//!
//! Folders are flat (no `key=value` levels), so Spectrum and Athena read a table's folder as one
//! unpartitioned table and every column, dates included, is in the files (Redshift's `COPY`
//! does not load partition values). Columns are in table order.
//!
//! ## Replacing
//! A step writes the files of every (key date, source) it computed, then deletes the files of
//! that slice it did not write (a date or source that now has no rows). Each file is written
//! whole (local: temporary file, fsync, rename; S3: one PUT), so a reader sees the old or the
//! new version of a file, never a torn one; across files a reader may briefly see a mix.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{Date32Type, SchemaRef};
use datafusion::arrow::error::ArrowError;
use inlet_lake::{Codec, LakeStore};

use crate::calendar::day;
use crate::lakeview::METRICS_PREFIX;
use crate::plan::Keys;
use crate::tables::{Replace, Table};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("step output does not fit the table: {0}")]
    Shape(#[from] ArrowError),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Store(#[from] inlet_lake::store::StoreError),
}

/// A file the step wrote: its key under the lake root, size and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub key: String,
    pub bytes: u64,
    pub rows: u64,
}

/// The (key date, source) a file holds, parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FileSlice {
    date: Option<NaiveDate>,
    source: Option<String>,
}

fn file_key(table: Table, slice: &FileSlice) -> String {
    let name = table.name();
    let stem = match (&slice.date, &slice.source) {
        (Some(date), Some(source)) => format!("{name}-{}-{source}", day(*date)),
        (None, Some(source)) => format!("{name}-{source}"),
        _ => name.to_owned(),
    };
    format!("{METRICS_PREFIX}/{name}/{stem}.parquet")
}

fn parse_file_key(table: Table, key: &str) -> Option<FileSlice> {
    let name = table.name();
    let stem = key.strip_prefix(&format!("{METRICS_PREFIX}/{name}/"))?.strip_suffix(".parquet")?;
    if stem == name {
        return Some(FileSlice { date: None, source: None });
    }
    let rest = stem.strip_prefix(&format!("{name}-"))?;
    match table.replace() {
        Replace::ByDate(_) => {
            let date = NaiveDate::parse_from_str(rest.get(..10)?, "%Y-%m-%d").ok()?;
            let source = rest.get(10..)?.strip_prefix('-')?;
            Some(FileSlice { date: Some(date), source: Some(source.to_owned()) })
        }
        Replace::WholePerSource => Some(FileSlice { date: None, source: Some(rest.to_owned()) }),
        Replace::Whole => None,
    }
}

/// Casts a step's output to the table's schema, column by column in order.
pub fn conform(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let mut conformed = Vec::with_capacity(batches.len());
    for batch in batches {
        if batch.num_columns() != schema.fields().len() {
            return Err(ArrowError::SchemaError(format!(
                "{} columns, the table has {}",
                batch.num_columns(),
                schema.fields().len()
            )));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| cast(column, field.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        conformed.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    concat_batches(schema, &conformed)
}

/// `batches` as one Parquet file with the lake's writer settings. The metrics files are snappy,
/// which Spectrum and Redshift's `COPY` read and which decodes several times faster than gzip
/// (the later steps read `daily_user_activity` over and over); the state's, read by this job
/// only, zstd.
pub fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch], codec: Codec) -> Result<Bytes, OutputError> {
    let mut file = inlet_lake::parquet_file::ParquetFile::for_schema(
        schema.clone(),
        inlet_lake::parquet_file::writer_properties(codec),
    )?;
    for batch in batches {
        file.write(batch)?;
    }
    Ok(Bytes::from(file.finish()?))
}

#[derive(Debug, Clone)]
pub struct MetricsFiles {
    store: LakeStore,
}

impl MetricsFiles {
    pub fn new(store: LakeStore) -> MetricsFiles {
        MetricsFiles { store }
    }

    /// The keys of a dated table's files whose date lies in `from ..= to`.
    pub async fn keys_between(&self, table: Table, from: NaiveDate, to: NaiveDate) -> Result<Vec<String>, OutputError> {
        let keys = self.store.list(&format!("{METRICS_PREFIX}/{}/", table.name())).await?;
        Ok(keys
            .into_iter()
            .filter(|key| parse_file_key(table, key).and_then(|s| s.date).is_some_and(|d| d >= from && d <= to))
            .collect())
    }

    /// Replaces the slice `keys` × `sources` of `table` by `rows` (already conformed).
    pub async fn replace(
        &self,
        table: Table,
        keys: &Keys,
        sources: Option<&[String]>,
        rows: &RecordBatch,
    ) -> Result<Vec<WrittenFile>, OutputError> {
        let mut written = Vec::new();
        for (slice, part) in split(table, rows)? {
            let bytes = parquet_bytes(&rows.schema(), std::slice::from_ref(&part), Codec::Snappy)?;
            let key = file_key(table, &slice);
            let size = bytes.len() as u64;
            self.store.put(&key, bytes).await?;
            written.push(WrittenFile { key, bytes: size, rows: part.num_rows() as u64 });
        }
        let existing = self.store.list(&format!("{METRICS_PREFIX}/{}/", table.name())).await?;
        for key in existing {
            let Some(slice) = parse_file_key(table, &key) else { continue };
            let in_scope = match (keys, slice.date) {
                (Keys::Dates(dates), Some(date)) => dates.contains(date),
                (Keys::Whole, None) => true,
                _ => false,
            };
            let source_in_scope = sources.is_none_or(|wanted| slice.source.as_ref().is_none_or(|s| wanted.contains(s)));
            if in_scope && source_in_scope && !written.iter().any(|w| w.key == key) {
                self.store.delete(&key).await?;
            }
        }
        Ok(written)
    }
}

/// Rows grouped by the file they belong in.
fn split(table: Table, rows: &RecordBatch) -> Result<BTreeMap<FileSlice, RecordBatch>, ArrowError> {
    let source_column = rows.schema().index_of("source").ok();
    let date_column = match table.replace() {
        Replace::ByDate(column) => Some(rows.schema().index_of(column)?),
        _ => None,
    };
    let mut groups: BTreeMap<FileSlice, Vec<u32>> = BTreeMap::new();
    for row in 0..rows.num_rows() {
        let date = date_column
            .map(|c| rows.column(c).as_primitive::<Date32Type>())
            .filter(|dates| dates.is_valid(row))
            .and_then(|dates| dates.value_as_date(row));
        let source = source_column.map(|c| rows.column(c).as_string::<i32>().value(row).to_owned());
        let index = u32::try_from(row).map_err(|_| ArrowError::ComputeError("too many rows".into()))?;
        groups.entry(FileSlice { date, source }).or_default().push(index);
    }
    groups
        .into_iter()
        .map(|(slice, indices)| Ok((slice, take_record_batch(rows, &UInt32Array::from(indices))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 2);
        for (table, slice) in [
            (Table::ActiveUsers, FileSlice { date, source: Some("web-app_2".into()) }),
            (Table::Users, FileSlice { date: None, source: Some("ios".into()) }),
            (Table::IdentityMap, FileSlice { date: None, source: None }),
        ] {
            let key = file_key(table, &slice);
            assert_eq!(parse_file_key(table, &key), Some(slice), "{key}");
        }
        assert_eq!(
            file_key(Table::Retention, &FileSlice { date, source: Some("web".into()) }),
            "metrics/retention/retention-2026-11-02-web.parquet"
        );
        assert_eq!(parse_file_key(Table::Retention, "metrics/retention/_manifest.json"), None);
    }
}
