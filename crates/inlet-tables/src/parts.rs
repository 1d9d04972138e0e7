//! A table's rows as Parquet parts, uploaded while they are written: each finished row group
//! leaves memory for the store (S3 multipart parts, or the local file being written), so
//! memory holds one row group being encoded whatever the table's size. A part ends after
//! `file_rows` rows and the next one starts.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use inlet_lake::store::{LakeStore, Upload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::TablesError;
use crate::manifest::FileEntry;

/// Bytes of encoded Parquet gathered before they go to the store.
const UPLOAD_CHUNK_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug)]
pub struct PartWriter {
    store: LakeStore,
    /// `tables/{db}/{table}/dt=…/part-{run}`.
    key_stem: String,
    schema: SchemaRef,
    properties: WriterProperties,
    file_rows: usize,
    open: Option<OpenPart>,
    written: Vec<FileEntry>,
}

struct OpenPart {
    writer: ArrowWriter<Vec<u8>>,
    upload: Upload,
    rows: u64,
}

impl std::fmt::Debug for OpenPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenPart").field("key", &self.upload.key()).field("rows", &self.rows).finish()
    }
}

fn parquet_error(key: &str, error: parquet::errors::ParquetError) -> TablesError {
    TablesError::Lake(format!("writing {key}: {error}"))
}

impl PartWriter {
    pub fn new(store: LakeStore, key_stem: String, schema: SchemaRef, row_group_rows: usize, file_rows: usize) -> Self {
        // Snappy: what Spectrum, Athena and every engine read fastest; these files are read
        // often and are small beside the events.
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(row_group_rows))
            .set_created_by(format!("inlet-tables {}", env!("CARGO_PKG_VERSION")))
            .build();
        PartWriter { store, key_stem, schema, properties, file_rows, open: None, written: Vec::new() }
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), TablesError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            let key = format!("{}-{:05}.parquet", self.key_stem, self.written.len());
            let upload = self.store.upload(&key).await?;
            let writer = ArrowWriter::try_new(
                Vec::with_capacity(UPLOAD_CHUNK_BYTES),
                Arc::clone(&self.schema),
                Some(self.properties.clone()),
            )
            .map_err(|e| parquet_error(&key, e))?;
            self.open = Some(OpenPart { writer, upload, rows: 0 });
        }
        let Some(part) = self.open.as_mut() else { return Ok(()) };
        part.rows += batch.num_rows() as u64;
        part.writer.write(&batch).map_err(|e| parquet_error(part.upload.key(), e))?;
        if part.writer.inner_mut().len() >= UPLOAD_CHUNK_BYTES {
            // The encoder counts what it wrote itself: taking the bytes away is safe.
            let chunk = std::mem::replace(part.writer.inner_mut(), Vec::with_capacity(UPLOAD_CHUNK_BYTES));
            part.upload.write(Bytes::from(chunk)).await?;
        }
        if part.rows >= self.file_rows as u64 {
            self.close_part().await?;
        }
        Ok(())
    }

    async fn close_part(&mut self) -> Result<(), TablesError> {
        let Some(OpenPart { writer, mut upload, rows }) = self.open.take() else { return Ok(()) };
        let key = upload.key().to_owned();
        let rest = writer.into_inner().map_err(|e| parquet_error(&key, e))?;
        upload.write(Bytes::from(rest)).await?;
        let bytes = upload.finish().await?;
        self.written.push(FileEntry { key, rows, bytes });
        Ok(())
    }

    /// Closes the last part; returns every part written. A table with no rows gets one empty
    /// file, so readers still find its columns.
    pub async fn finish(mut self) -> Result<Vec<FileEntry>, TablesError> {
        if self.open.is_none() && self.written.is_empty() {
            let key = format!("{}-00000.parquet", self.key_stem);
            let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&self.schema), Some(self.properties.clone()))
                .map_err(|e| parquet_error(&key, e))?;
            writer.flush().map_err(|e| parquet_error(&key, e))?;
            let upload = self.store.upload(&key).await?;
            self.open = Some(OpenPart { writer, upload, rows: 0 });
        }
        self.close_part().await?;
        Ok(self.written)
    }

    /// Gives up the open part; finished parts stay until a commit of the day deletes them.
    pub async fn abort(mut self) {
        if let Some(part) = self.open.take() {
            part.upload.abort().await;
        }
    }
}
