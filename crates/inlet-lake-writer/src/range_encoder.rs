//! Encoding WAL records into one Parquet file per partition, on several threads.
//!
//! Building the columns (decoding each record, splitting its JSON) costs about twice as much as
//! writing them (arrow-rs's Parquet writer: dictionaries, pages, compression): 64 % and 36 % of
//! a range's CPU time (`docs/bench-log/2026-11-to-12.md`). So the work is split three ways:
//!
//! ```text
//! WAL reader ──chunk k──▶ builder k mod N ──batches of chunk k──▶ Parquet writer (chunks in order)
//! ```
//!
//! - The calling thread reads the records in chunks of [`WRITE_BATCH_ROWS`](inlet_lake::parquet_file::WRITE_BATCH_ROWS) (one buffer each,
//!   [`RecordChunk`]) and deals them out, round-robin, to [`builder_threads`] builders.
//! - Each builder turns a chunk into one batch per partition it touches.
//! - One writer (`inlet-lake-parquet`) takes the chunks' batches in chunk order and writes
//!   each into its partition's file.
//!
//! Where cores are free, a range therefore takes about the builders' share of one thread's time
//! divided among them, and the lake's ceiling grows with the cores instead of being one core's.
//! The threads are for catching up: they take every core they can get (at a lower priority,
//! but on two cores that still lengthened request latency tails at half load), so the lake
//! writer uses them only when it is behind and otherwise encodes on the calling thread alone
//! (`builders: 0`), in the same chunks, to the same bytes.
//!
//! - **Rows in WAL order.** Chunks are dealt, built and written in order, so each file holds
//!   its rows in the order of their LSNs, as one thread would write them. With one partition per
//!   chunk (the usual case: one source, one hour) the batches, and so the file's bytes, are the
//!   same as one thread's; a chunk that straddles partitions gives each a smaller batch.
//! - **Bounded memory.** A chunk is handed to its builder by rendezvous (the reader waits until
//!   the builder takes it), and each builder may have one chunk's batches waiting for the
//!   writer besides the chunk it builds: a few chunks of [`WRITE_BATCH_ROWS`](inlet_lake::parquet_file::WRITE_BATCH_ROWS) records in all,
//!   2 MB each at 1 KB a record. (The builder's queue of one keeps it from idling while the
//!   writer takes another builder's batches; without it, chunks of 2 Ki records encoded 10–20 %
//!   slower.)
//! - **Errors.** A read error stops the dealing and is returned once the threads have stopped;
//!   a Parquet error stops the writer, whose closed channels then stop the builders and the
//!   reader. Records that are not stored events are counted and left out.
//! - **Priority.** The threads are started by the encoding thread and so inherit its nice level
//!   (on Linux, nice is per thread and new threads take their creator's).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use inlet_privacy::Suppressions;
use inlet_segment::StoredRecord;
use inlet_wal::{RecordChunk, WalError};

use inlet_lake::layout::Partition;
use inlet_lake::parquet_file::{Codec, ParquetFile};
use inlet_lake::schema::{EVENT_NESTED, EventColumns};

use crate::metrics::LakeMetrics;
use crate::writer::LakeError;

/// At most this many builders: each holds a few MB, and beyond it the single writer is the
/// limit anyway (it does about half as much work as all the builders together).
pub const MAX_BUILDER_THREADS: usize = 4;

/// One builder per core, up to [`MAX_BUILDER_THREADS`]: builders that share a core only take
/// turns.
pub fn builder_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).clamp(1, MAX_BUILDER_THREADS)
}

/// One partition's finished file.
#[derive(Debug)]
pub struct EncodedPartition {
    pub partition: Partition,
    pub rows: usize,
    pub bytes: Vec<u8>,
}

/// How records are encoded: the lake's codec and partitioning rule, and on how many threads.
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    pub codec: Codec,
    /// Events dated before this are partitioned by `receivedAt` (see [`Partition::of`]).
    pub min_time: DateTime<Utc>,
    pub metrics: LakeMetrics,
    /// Builder threads (see [`builder_threads`]); 0 does everything on the calling thread,
    /// which leaves the other cores to ingestion when the lake is not behind.
    pub builders: usize,
    /// Events of these ids are left out (deleted or suppressed after they were acknowledged).
    pub suppressions: Arc<Suppressions>,
}

/// A chunk's batches, one per partition it touches.
type ChunkBatches = Vec<(Partition, RecordBatch)>;

impl RecordEncoder {
    /// Encodes every stored-event record into its partition's file, the files in partition
    /// order. The records come in chunks of at most [`WRITE_BATCH_ROWS`](inlet_lake::parquet_file::WRITE_BATCH_ROWS)
    /// ([`inlet_wal::WalReader::chunks`]), the rows of one batch.
    pub fn encode(
        &self,
        chunks: impl IntoIterator<Item = Result<RecordChunk, WalError>>,
    ) -> Result<Vec<EncodedPartition>, LakeError> {
        if self.builders == 0 {
            return self.encode_here(chunks);
        }
        std::thread::scope(|scope| {
            let mut chunk_senders = Vec::new();
            let mut batch_receivers = Vec::new();
            let mut builders = Vec::new();
            for _ in 0..self.builders {
                let (chunk_sender, chunk_receiver) = sync_channel::<RecordChunk>(0);
                let (batch_sender, batches) = sync_channel::<ChunkBatches>(1);
                builders.push(spawn(scope, "inlet-lake-build", move || {
                    let mut builder = ChunkBuilder::new(self);
                    // A failed send means the writer has stopped; its error is the one reported.
                    for chunk in chunk_receiver {
                        if batch_sender.send(builder.build(chunk)).is_err() {
                            break;
                        }
                    }
                    Ok(())
                }));
                chunk_senders.push(chunk_sender);
                batch_receivers.push(batches);
            }
            let writer = spawn(scope, "inlet-lake-parquet", || write_in_chunk_order(batch_receivers, self.codec));
            let dealt = deal(chunks, &chunk_senders);
            // Ends the builders' loops (they have stopped already if a send failed).
            drop(chunk_senders);
            let builders: Result<Vec<()>, LakeError> = builders.into_iter().map(joined).collect();
            let written = joined(writer);
            // A send fails only once the writer has stopped, so the writer's error comes first.
            match (dealt, builders, written) {
                (_, _, Err(error)) | (_, Err(error), _) | (Err(error), _, _) => Err(error),
                (Ok(()), Ok(_), Ok(files)) => Ok(files),
            }
        })
    }

    /// The same work, chunk by chunk, on the calling thread.
    fn encode_here(
        &self,
        chunks: impl IntoIterator<Item = Result<RecordChunk, WalError>>,
    ) -> Result<Vec<EncodedPartition>, LakeError> {
        let mut builder = ChunkBuilder::new(self);
        let mut files = PartitionFiles::new(self.codec);
        for chunk in chunks {
            files.write(builder.build(chunk?))?;
        }
        files.finish()
    }
}

/// Turns each chunk into one batch per partition, in partition order. A partition's columns
/// are kept while consecutive chunks have rows for it, so their builders start at the last
/// batch's size.
struct ChunkBuilder<'e> {
    encoder: &'e RecordEncoder,
    open: BTreeMap<Partition, EventColumns>,
}

impl<'e> ChunkBuilder<'e> {
    fn new(encoder: &'e RecordEncoder) -> ChunkBuilder<'e> {
        ChunkBuilder { encoder, open: BTreeMap::new() }
    }

    fn build(&mut self, chunk: RecordChunk) -> ChunkBatches {
        for (lsn, payload) in chunk.iter() {
            let stored = match StoredRecord::decode_nested(payload, &EVENT_NESTED) {
                Ok(stored) => stored,
                Err(error) => {
                    // Written by this program, so this is a bug: say so loudly, keep going.
                    self.encoder.metrics.undecodable_records.inc();
                    tracing::error!(lsn, %error, "WAL record is not a stored event; left out of the lake");
                    continue;
                }
            };
            let suppressions = &self.encoder.suppressions;
            if suppressions.active()
                && suppressions.matches(stored.text("userId").as_deref(), stored.text("anonymousId").as_deref())
            {
                self.encoder.metrics.suppressed_records.inc();
                continue;
            }
            let partition = Partition::of(&stored, self.encoder.min_time);
            let columns = match self.open.get_mut(&partition) {
                Some(columns) => columns,
                None => self.open.entry(partition.clone()).or_default(),
            };
            columns.append(&stored);
        }
        // Columns this chunk did not touch are dropped, so that a range over many partitions
        // does not keep a batch's worth of room for each of them.
        self.open.retain(|_, columns| !columns.is_empty());
        self.open.iter_mut().map(|(partition, columns)| (partition.clone(), columns.finish())).collect()
    }
}

/// One Parquet file per partition, written batch by batch.
struct PartitionFiles {
    codec: Codec,
    files: BTreeMap<Partition, ParquetFile>,
}

impl PartitionFiles {
    fn new(codec: Codec) -> PartitionFiles {
        PartitionFiles { codec, files: BTreeMap::new() }
    }

    fn write(&mut self, batches: ChunkBatches) -> Result<(), LakeError> {
        for (partition, batch) in batches {
            self.files.entry(partition).or_insert_with(|| ParquetFile::new(self.codec)).write(&batch)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<EncodedPartition>, LakeError> {
        self.files
            .into_iter()
            .map(|(partition, file)| {
                let rows = file.rows();
                Ok(EncodedPartition { partition, rows, bytes: file.finish()? })
            })
            .collect()
    }
}

/// The reader: deals the chunks out round-robin. Stops at a read error, or when a builder is
/// gone (the writer failed).
fn deal(
    chunks: impl IntoIterator<Item = Result<RecordChunk, WalError>>,
    builders: &[SyncSender<RecordChunk>],
) -> Result<(), LakeError> {
    for (next, chunk) in chunks.into_iter().enumerate() {
        if builders[next % builders.len()].send(chunk?).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The writer: takes each chunk's batches from the builder it was dealt to, in chunk order,
/// until the builder of the next chunk has none (there is no next chunk), then finishes the files.
fn write_in_chunk_order(
    builders: Vec<Receiver<ChunkBatches>>,
    codec: Codec,
) -> Result<Vec<EncodedPartition>, LakeError> {
    let mut files = PartitionFiles::new(codec);
    for batches in builders.iter().cycle().map_while(|builder| builder.recv().ok()) {
        files.write(batches)?;
    }
    files.finish()
}

fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    name: &str,
    work: impl FnOnce() -> Result<T, LakeError> + Send + 'scope,
) -> Result<ScopedJoinHandle<'scope, Result<T, LakeError>>, LakeError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, work)
        .map_err(|e| LakeError::Task(format!("starting the {name} thread: {e}")))
}

fn joined<T>(thread: Result<ScopedJoinHandle<'_, Result<T, LakeError>>, LakeError>) -> Result<T, LakeError> {
    thread?.join().map_err(|_| LakeError::Task("a lake encoding thread panicked".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_lake::parquet_file::WRITE_BATCH_ROWS;
    use inlet_wal::Record;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn record(lsn: u64, hour: u32) -> Result<Record, WalError> {
        let payload = format!(
            r#"{{"source":"web","event":{{"messageId":"m{lsn}","type":"track","event":"E","userId":"u","timestamp":"2024-05-01T{hour:02}:30:00.000000Z","receivedAt":"2024-05-01T10:45:00.000000Z"}}}}"#
        );
        Ok(Record { lsn, payload: payload.into_bytes() })
    }

    /// The records in chunks of [`WRITE_BATCH_ROWS`], as `WalReader::chunks` reads them: a
    /// read error ends the chunks, the chunk it interrupted is not seen.
    fn chunked(records: Vec<Result<Record, WalError>>) -> Vec<Result<RecordChunk, WalError>> {
        let mut chunks = Vec::new();
        let mut chunk = RecordChunk::default();
        for record in records {
            match record {
                Ok(record) => chunk.push(record.lsn, &record.payload),
                Err(error) => {
                    chunks.push(Err(error));
                    return chunks;
                }
            }
            if chunk.len() == WRITE_BATCH_ROWS {
                chunks.push(Ok(std::mem::take(&mut chunk)));
            }
        }
        if !chunk.is_empty() {
            chunks.push(Ok(chunk));
        }
        chunks
    }

    fn encoder(builders: usize) -> RecordEncoder {
        RecordEncoder {
            codec: Codec::default(),
            min_time: DateTime::<Utc>::MIN_UTC,
            metrics: LakeMetrics::register(&prometheus::Registry::new()),
            builders,
            suppressions: Arc::default(),
        }
    }

    /// Several chunks and a partial last one; every `nth_at_nine` record in hour 09, the rest
    /// in hour 10 (0: all in hour 10).
    fn records(nth_at_nine: u64) -> Vec<Result<Record, WalError>> {
        let hour = |lsn: u64| if nth_at_nine > 0 && lsn.is_multiple_of(nth_at_nine) { 9 } else { 10 };
        (0..WRITE_BATCH_ROWS as u64 * 3 + 77).map(|lsn| record(lsn, hour(lsn))).collect()
    }

    /// What one thread writing each partition's batches as they fill makes of the records.
    fn one_thread(records: Vec<Result<Record, WalError>>) -> Vec<u8> {
        let (mut columns, mut file) = (EventColumns::default(), ParquetFile::new(Codec::default()));
        for record in records {
            let record = record.expect("record");
            columns.append(&StoredRecord::decode(&record.payload).expect("stored"));
            if columns.len() >= WRITE_BATCH_ROWS {
                file.write(&columns.finish()).expect("write");
            }
        }
        file.write(&columns.finish()).expect("write");
        file.finish().expect("finish")
    }

    fn message_ids(file: &EncodedPartition) -> Vec<String> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.bytes.clone())).expect("parquet");
        let mut ids = Vec::new();
        for batch in reader.build().expect("reader") {
            let batch = batch.expect("batch");
            let column = arrow_array::cast::AsArray::as_string::<i32>(batch.column(0).as_ref()).clone();
            ids.extend((0..batch.num_rows()).map(|i| column.value(i).to_owned()));
        }
        ids
    }

    #[test]
    fn one_partition_gets_the_bytes_one_thread_would_write() {
        let expected = one_thread(records(0));
        for builders in [0, 1, 2, 3] {
            let files = encoder(builders).encode(chunked(records(0))).expect("encode");
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].rows, records(0).len());
            assert!(files[0].bytes == expected, "{builders} builders: the file differs from one thread's");
        }
    }

    #[test]
    fn each_partition_holds_its_rows_in_wal_order() {
        let count = records(5).len() as u64;
        let in_order = |hour: u32| -> Vec<String> {
            (0..count).filter(|lsn| lsn.is_multiple_of(5) == (hour == 9)).map(|lsn| format!("m{lsn}")).collect()
        };
        for builders in [0, 1, 2, 3] {
            let files = encoder(builders).encode(chunked(records(5))).expect("encode");
            let hours: Vec<u32> = files.iter().map(|f| chrono::Timelike::hour(&f.partition.hour.start())).collect();
            assert_eq!(hours, [9, 10], "files in partition order");
            for (file, hour) in files.iter().zip([9, 10]) {
                assert_eq!(message_ids(file), in_order(hour), "{builders} builders, hour {hour}");
                assert_eq!(file.rows, in_order(hour).len());
            }
        }
    }

    #[test]
    fn nothing_to_encode_makes_no_files() {
        assert!(encoder(2).encode(Vec::new()).expect("encode").is_empty());
    }

    #[test]
    fn an_undecodable_record_is_counted_and_left_out() {
        for builders in [0, 2] {
            let encoder = encoder(builders);
            let records =
                vec![record(0, 10), Ok(Record { lsn: 1, payload: b"\xff not a record".to_vec() }), record(2, 10)];
            let files = encoder.encode(chunked(records)).expect("encode");
            assert_eq!(files.iter().map(|f| f.rows).sum::<usize>(), 2);
            assert_eq!(encoder.metrics.undecodable_records.get(), 1);
        }
    }

    #[test]
    fn a_read_error_stops_the_encoding_with_that_error() {
        for builders in [0, 2] {
            let mut records = records(0);
            let corrupt = WalError::Corrupt { path: "segment".into(), offset: 42, reason: "bad crc".into() };
            records.insert(WRITE_BATCH_ROWS * 2 + 3, Err(corrupt));
            match encoder(builders).encode(chunked(records)) {
                Err(LakeError::Wal(WalError::Corrupt { offset: 42, .. })) => {}
                other => panic!("{builders} builders: expected the read error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_thread_started_by_a_lowered_thread_runs_at_its_lower_priority() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("priority");
        let (lowered, inherited) = std::thread::spawn(move || {
            let thread = Some(rustix::thread::gettid());
            rustix::process::setpriority_process(thread, own() + 3).expect("lower");
            (own(), std::thread::spawn(own).join().expect("child"))
        })
        .join()
        .expect("thread");
        assert_eq!(inherited, lowered);
    }
}
