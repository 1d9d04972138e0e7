//! The lake writer: the WAL's `lake` consumer. See the crate documentation for the protocol.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use inlet_privacy::Suppressions;
use inlet_wal::{WalHandle, WalReader};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use inlet_lake::Backoff;
use inlet_lake::layout::{Hour, Partition, WATERMARK_PREFIX, Watermark};
use inlet_lake::parquet_file::{Codec, WRITE_BATCH_ROWS};
use inlet_lake::store::{LakeLocation, LakeStore, S3Settings};

use crate::metrics::LakeMetrics;
use crate::range_encoder::{EncodedPartition, RecordEncoder, builder_threads};

/// The WAL consumer name of the lake writer.
pub const LAKE_CONSUMER: &str = "lake";
/// How often the writer looks at the WAL and its flush triggers.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Failed uploads are retried after these delays, without a deadline: the WAL keeps the records
/// until they are uploaded.
const UPLOAD_BACKOFF: Backoff = Backoff { base: Duration::from_millis(500), max: Duration::from_secs(30) };
const PENDING_FILE: &str = "pending.json";

#[derive(Debug, Clone)]
pub struct LakeSettings {
    pub location: LakeLocation,
    pub s3: S3Settings,
    /// Names this gateway's files and watermark; unique per instance.
    pub instance_id: String,
    /// Local directory for the writer's own state (the pending range).
    pub state_dir: PathBuf,
    /// A range is flushed at the latest this long after it started.
    pub max_age: Duration,
    /// After an hour ends, its range is flushed this much later (late arrivals of the hour).
    pub hour_grace: Duration,
    /// A range is flushed once it holds this many records.
    pub max_range_records: u64,
    /// A range holds at most this many bytes of events (or one chunk more): what bounds the
    /// encoder's memory when events are large, where `max_range_records` alone would not.
    pub max_range_bytes: usize,
    /// Events dated before this are partitioned by `receivedAt` instead.
    pub min_event_time: DateTime<Utc>,
    pub codec: Codec,
    /// Ids whose events still in the WAL are not written (shared with the gateway).
    pub suppressions: Arc<Suppressions>,
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("write-ahead log: {0}")]
    Wal(#[from] inlet_wal::WalError),
    #[error("lake writer state in {path}: {source}")]
    State { path: PathBuf, source: std::io::Error },
    #[error("encoding Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("the lake writer task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] inlet_lake::store::StoreError),
}

/// A range of WAL records decided on and about to be uploaded; persisted before the first
/// upload so a restart redoes exactly this range (same file names, so no duplicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRange {
    pub from: u64,
    pub to: u64,
    /// Every event acknowledged before this instant has an LSN below `to`. `None` when the
    /// range was cut short at `max_range_records` or `max_range_bytes` (a backlog), which
    /// promises nothing about time.
    pub cut_at: Option<DateTime<Utc>>,
}

/// One file ready to upload.
#[derive(Debug)]
pub struct EncodedFile {
    pub partition: Partition,
    pub key: String,
    pub rows: usize,
    pub bytes: Bytes,
}

#[derive(Debug)]
pub struct LakeWriter {
    settings: LakeSettings,
    store: LakeStore,
    wal: Arc<WalHandle>,
    metrics: LakeMetrics,
}

impl LakeWriter {
    pub fn new(settings: LakeSettings, wal: Arc<WalHandle>, metrics: LakeMetrics) -> Result<LakeWriter, LakeError> {
        let store = LakeStore::open(settings.location.clone(), &settings.s3)?;
        Ok(LakeWriter { settings, store, wal, metrics })
    }

    /// Flushes until `shutdown` turns true, then flushes what is durable once more (giving up
    /// on the final upload after `final_flush_timeout`: the WAL keeps it for the next start).
    pub async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
        final_flush_timeout: Duration,
    ) -> Result<(), LakeError> {
        let interrupted = self.flush_until_shutdown(&mut shutdown).await?;
        match tokio::time::timeout(final_flush_timeout, self.flush_everything_durable(interrupted)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("final lake flush timed out; the WAL keeps the rest for the next start");
                Ok(())
            }
        }
    }

    /// The flush loop. Returns the range a stop interrupted (its upload was still retrying),
    /// which must be finished under the same bounds: a new range from the same start would name
    /// its files differently and duplicate what was already uploaded.
    async fn flush_until_shutdown(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<PendingRange>, LakeError> {
        if let Some(pending) = read_pending(&self.settings.state_dir)?.filter(|p| {
            // Confirmed already (the stop came between confirming and clearing the marker).
            p.to > self.cursor() || clear_pending(&self.settings.state_dir).is_err()
        }) {
            tracing::warn!(from = pending.from, to = pending.to, "redoing the lake flush interrupted by the last stop");
            if let (false, pending) = self.complete(pending, Bound::Decided, shutdown).await? {
                return Ok(Some(pending));
            }
        }
        let mut range_started = Instant::now();
        let mut range_started_at = Utc::now();
        let mut wait = POLL_INTERVAL;
        loop {
            let stopping = if wait.is_zero() {
                *shutdown.borrow()
            } else {
                tokio::select! {
                    () = tokio::time::sleep(wait) => *shutdown.borrow(),
                    changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
                }
            };
            wait = POLL_INTERVAL;
            if stopping {
                return Ok(None);
            }
            let cursor = self.cursor();
            let cut_at = Utc::now();
            // Read after `cut_at`: whatever was acknowledged before it is below this LSN.
            let durable = self.wal.durable_lsn();
            self.metrics.oldest_unflushed_age.set(if durable > cursor {
                range_started.elapsed().as_secs_f64()
            } else {
                0.0
            });
            let hour_ended =
                Hour::of(cut_at - self.settings.hour_grace) != Hour::of(range_started_at - self.settings.hour_grace);
            let due = range_started.elapsed() >= self.settings.max_age
                || hour_ended
                || durable.saturating_sub(cursor) >= self.settings.max_range_records;
            if !due {
                continue;
            }
            let (done, pending) = self.complete(self.next_range(cut_at), Bound::New, shutdown).await?;
            if !done {
                return Ok(Some(pending));
            }
            range_started = Instant::now();
            range_started_at = cut_at;
            wait = wait_after(&pending);
        }
    }

    /// At shutdown: finishes the interrupted range, then flushes up to what is durable now.
    async fn flush_everything_durable(&self, interrupted: Option<PendingRange>) -> Result<(), LakeError> {
        // The sender stays alive so retries keep their backoff (a dropped sender would wake the
        // retry sleep at once).
        let (_never, mut no_shutdown) = watch::channel(false);
        if let Some(pending) = interrupted {
            self.complete(pending, Bound::Decided, &mut no_shutdown).await?;
        }
        loop {
            let (_, pending) = self.complete(self.next_range(Utc::now()), Bound::New, &mut no_shutdown).await?;
            if pending.cut_at.is_some() {
                return Ok(());
            }
        }
    }

    fn cursor(&self) -> u64 {
        self.wal.cursor(LAKE_CONSUMER).unwrap_or_else(|| self.wal.oldest_lsn())
    }

    /// The next range to flush: from the cursor to what is durable now (read after `cut_at`,
    /// so whatever was acknowledged before it is inside), at most `max_range_records` long.
    fn next_range(&self, cut_at: DateTime<Utc>) -> PendingRange {
        let from = self.cursor();
        let durable = self.wal.durable_lsn().max(from);
        let to = durable.min(from.saturating_add(self.settings.max_range_records));
        PendingRange { from, to, cut_at: (to == durable).then_some(cut_at) }
    }

    /// Persists the range, uploads its files (retrying until they are stored or shutdown is
    /// asked), publishes the watermark, confirms the range to the WAL and clears the pending
    /// marker. Returns false if it stopped for shutdown before finishing.
    ///
    /// A new range is encoded before its marker is written, so that the marker holds the range
    /// as cut at `max_range_bytes`; a decided one (its marker written by an earlier attempt) is
    /// encoded whole, under the same file names. Returns whether it finished, and the range.
    async fn complete(
        &self,
        mut pending: PendingRange,
        bound: Bound,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(bool, PendingRange), LakeError> {
        if pending.to > pending.from {
            let max_bytes = match bound {
                Bound::New => self.settings.max_range_bytes,
                Bound::Decided => usize::MAX,
            };
            let (files, reached) = self.encode_range(pending.from, pending.to, max_bytes).await?;
            if reached < pending.to {
                pending = PendingRange { to: reached, cut_at: None, ..pending };
            }
            off_the_runtime(&self.settings.state_dir, move |dir| write_pending(dir, &pending)).await?;
            for file in files {
                if !self.upload(&file.key, file.bytes.clone(), shutdown).await {
                    return Ok((false, pending));
                }
                self.metrics.files_written.inc();
                self.metrics.bytes_written.inc_by(file.bytes.len() as u64);
                self.metrics.rows_written.inc_by(file.rows as u64);
                tracing::debug!(key = %file.key, rows = file.rows, bytes = file.bytes.len(), "lake file written");
            }
        }
        if let Some(flushed_before) = pending.cut_at {
            let watermark = Watermark { instance: self.settings.instance_id.clone(), flushed_before, lsn: pending.to };
            let key = format!("{WATERMARK_PREFIX}/{}.json", self.settings.instance_id);
            let body = Bytes::from(serde_json::to_vec_pretty(&watermark).expect("a watermark serialises"));
            if !self.upload(&key, body, shutdown).await {
                return Ok((false, pending));
            }
        }
        if pending.to > pending.from {
            self.wal.confirm(LAKE_CONSUMER, pending.to).await?;
            off_the_runtime(&self.settings.state_dir, clear_pending).await?;
        }
        self.metrics.cursor_lsn.set(pending.to as i64);
        Ok((true, pending))
    }

    /// Reads WAL records `from..to`, stopping after the chunk that reaches `max_bytes` of
    /// events, and encodes one Parquet file per partition: on one thread while the lake keeps
    /// up, on [`builder_threads`] more while it is behind. Returns the files and where the
    /// range ended (`to`, or the LSN after the last record read).
    pub async fn encode_range(
        &self,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<(Vec<EncodedFile>, u64), LakeError> {
        let builders = builders_for(self.wal.durable_lsn(), to, self.settings.max_range_records);
        let encoder = RangeEncoder {
            dir: self.wal.config().dir.clone(),
            max_record_bytes: self.wal.config().max_record_bytes,
            instance: self.settings.instance_id.clone(),
            records: RecordEncoder {
                codec: self.settings.codec,
                min_time: self.settings.min_event_time,
                metrics: self.metrics.clone(),
                builders,
                suppressions: Arc::clone(&self.settings.suppressions),
            },
        };
        // A burst of CPU for up to a few seconds, on threads of its own at a lower priority (this
        // one reads the WAL and, when behind, starts the builders and the Parquet writer, which
        // inherit it),
        // so that answering requests comes first when the CPUs are busy: a range encoded late
        // loses nothing (it stays in the WAL until uploaded), a request answered late does.
        let (result, answer) = tokio::sync::oneshot::channel();
        let started = std::time::Instant::now();
        std::thread::Builder::new()
            .name("inlet-lake-encode".into())
            .spawn(move || {
                lower_this_threads_priority();
                let _ = result.send(encoder.encode(from, to, max_bytes));
            })
            .map_err(|e| LakeError::Task(format!("starting the encoder thread: {e}")))?;
        let (files, reached) = answer.await.map_err(|_| LakeError::Task("the encoder thread panicked".into()))??;
        // With its start (the time logged less `ms`): what a latency timeline is lined up with.
        tracing::debug!(
            from,
            to = reached,
            builders,
            files = files.len(),
            ms = started.elapsed().as_millis() as u64,
            "lake range encoded"
        );
        Ok((files, reached))
    }

    /// Uploads with retries; false if shutdown was asked before it succeeded.
    async fn upload(&self, key: &str, bytes: Bytes, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            match self.store.put(key, bytes.clone()).await {
                Ok(()) => {
                    self.metrics.upload_duration.observe(started.elapsed().as_secs_f64());
                    return true;
                }
                Err(error) => {
                    self.metrics.upload_failures.inc();
                    attempt += 1;
                    let delay = UPLOAD_BACKOFF.delay(attempt);
                    tracing::warn!(%error, attempt, retry_in_ms = delay.as_millis() as u64, "lake upload failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                    if *shutdown.borrow() {
                        return false;
                    }
                }
            }
        }
    }
}

/// How long the flush loop waits before it looks at the WAL again after flushing `flushed`: not
/// at all when the range was cut short at `max_range_records` (a backlog, so the next range is
/// due already; the poll's 200 ms between ranges cost a third of the catch-up after a burst,
/// whose ranges take 0.4 s each to encode), the poll interval otherwise.
fn wait_after(flushed: &PendingRange) -> Duration {
    if flushed.cut_at.is_none() { Duration::ZERO } else { POLL_INTERVAL }
}

/// What encoding a range needs, owned, so it can run on a thread of its own.
struct RangeEncoder {
    dir: PathBuf,
    max_record_bytes: usize,
    instance: String,
    records: RecordEncoder,
}

/// What one chunk of records read for the encoder may hold at most (or one record more; and at
/// most a quarter of the range's bound), so a range of large events is cut finely enough for
/// `max_range_bytes` to hold.
const CHUNK_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Whether a range may be cut by bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// Decided now: cut at `max_range_bytes`.
    New,
    /// Decided and persisted by an earlier attempt: redone whole, so its files keep their names.
    Decided,
}

impl RangeEncoder {
    /// Encodes `from..to`, or the part of it whose chunks reach `max_bytes` first; returns the
    /// files, named by the part encoded, and its end.
    fn encode(&self, from: u64, to: u64, max_bytes: usize) -> Result<(Vec<EncodedFile>, u64), LakeError> {
        let reached = std::cell::Cell::new(from);
        let mut bytes = 0usize;
        let chunks = WalReader::open(&self.dir, from, to, self.max_record_bytes)?
            .chunks(WRITE_BATCH_ROWS, (max_bytes / 4).clamp(1, CHUNK_MAX_BYTES))
            .take_while(|chunk| {
                let Ok(chunk) = chunk else { return true };
                if bytes >= max_bytes {
                    return false;
                }
                bytes += chunk.payload_bytes();
                reached.set(chunk.last_lsn().map_or(reached.get(), |lsn| lsn + 1));
                true
            });
        let files = self.records.encode(chunks)?;
        let end = if bytes >= max_bytes { reached.get() } else { to };
        let files = files
            .into_iter()
            .map(|EncodedPartition { partition, rows, bytes }| {
                let key = partition.file_key(&self.instance, from, end);
                EncodedFile { partition, key, rows, bytes: Bytes::from(bytes) }
            })
            .collect();
        Ok((files, end))
    }
}

/// Builder threads for a range ending at `to`: behind (a whole range more already waiting after
/// this one), every core's worth; keeping up, none, since one thread is enough and leaves the
/// other cores to the requests.
fn builders_for(durable: u64, to: u64, max_range_records: u64) -> usize {
    if durable.saturating_sub(to) >= max_range_records { builder_threads() } else { 0 }
}

/// How much nicer than the gateway's other threads the range encoder is (Linux nice levels,
/// which any process may raise for its own threads).
const ENCODER_NICENESS: i32 = 10;

fn lower_this_threads_priority() {
    // On Linux a thread id names just that thread here, not the whole process.
    let thread = Some(rustix::thread::gettid());
    let current = rustix::process::getpriority_process(thread).unwrap_or(0);
    if let Err(error) = rustix::process::setpriority_process(thread, current + ENCODER_NICENESS) {
        tracing::debug!(%error, "could not lower the lake encoder's priority; it runs at the normal one");
    }
}

/// Runs blocking file work (the pending marker's two fsyncs) on the blocking pool: on one of the
/// runtime's threads it would stop that thread's requests for as long as the disk takes, and
/// the gateway has one such thread per core.
async fn off_the_runtime(
    state_dir: &Path,
    work: impl FnOnce(&Path) -> Result<(), LakeError> + Send + 'static,
) -> Result<(), LakeError> {
    let state_dir = state_dir.to_path_buf();
    tokio::task::spawn_blocking(move || work(&state_dir))
        .await
        .map_err(|_| LakeError::Task("the pending-marker task panicked".into()))?
}

pub fn read_pending(state_dir: &Path) -> Result<Option<PendingRange>, LakeError> {
    let path = state_dir.join(PENDING_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LakeError::State { path, source: std::io::Error::other(e) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LakeError::State { path, source }),
    }
}

fn write_pending(state_dir: &Path, pending: &PendingRange) -> Result<(), LakeError> {
    let path = state_dir.join(PENDING_FILE);
    std::fs::create_dir_all(state_dir)
        .and_then(|()| inlet_durable::durable_replace(&path, &serde_json::to_vec(pending).expect("a range serialises")))
        .map_err(|source| LakeError::State { path, source })
}

fn clear_pending(state_dir: &Path) -> Result<(), LakeError> {
    let path = state_dir.join(PENDING_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LakeError::State { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_wal::WalConfig;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn ranges_are_encoded_on_more_threads_only_while_a_whole_range_more_waits() {
        assert_eq!(builders_for(1_000, 1_000, 250), 0, "caught up");
        assert_eq!(builders_for(1_249, 1_000, 250), 0, "less than a range behind");
        assert_eq!(builders_for(1_250, 1_000, 250), builder_threads());
        assert_eq!(builders_for(900, 1_000, 250), 0, "durable read before the range was cut");
    }

    #[test]
    fn a_backlog_is_flushed_range_after_range_without_polling_between() {
        let cut_short = PendingRange { from: 0, to: 250, cut_at: None };
        let up_to_now = PendingRange { from: 250, to: 300, cut_at: Some(Utc::now()) };
        assert_eq!(wait_after(&cut_short), Duration::ZERO);
        assert_eq!(wait_after(&up_to_now), POLL_INTERVAL);
    }

    #[test]
    fn the_encoder_thread_alone_runs_at_a_lower_priority() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("priority");
        let before = own();
        let inside = std::thread::spawn(move || {
            lower_this_threads_priority();
            own()
        })
        .join()
        .expect("thread");
        assert_eq!(inside, (before + ENCODER_NICENESS).min(19));
        assert_eq!(own(), before, "the calling thread keeps its priority");
    }

    async fn setup(dir: &Path) -> (Arc<WalHandle>, LakeWriter) {
        let config = WalConfig { consumers: vec![LAKE_CONSUMER.into()], ..WalConfig::new(dir.join("wal")) };
        let (wal, _) = WalHandle::start(config, None).expect("wal");
        let wal = Arc::new(wal);
        // Two hours, so each range has two partitions (two files).
        let records: Vec<Vec<u8>> = (0..50)
            .map(|i| {
                let hour = if i % 2 == 0 { "09" } else { "10" };
                format!(
                    r#"{{"source":"web","event":{{"messageId":"m{i}","type":"track","event":"E","userId":"u","timestamp":"2024-05-01T{hour}:30:00.000000Z","receivedAt":"2024-05-01T10:45:00.000000Z"}}}}"#
                )
                .into_bytes()
            })
            .collect();
        wal.append(records).await.expect("append");
        let settings = LakeSettings {
            location: LakeLocation::Local(dir.join("lake")),
            s3: S3Settings::default(),
            instance_id: "gw-test".into(),
            state_dir: dir.join("state"),
            max_age: Duration::from_millis(100),
            hour_grace: Duration::from_secs(60),
            max_range_records: 1000,
            max_range_bytes: 64 * 1024 * 1024,
            min_event_time: DateTime::<Utc>::MIN_UTC,
            codec: Codec::default(),
            suppressions: Arc::default(),
        };
        let metrics = LakeMetrics::register(&prometheus::Registry::new());
        let writer = LakeWriter::new(settings, Arc::clone(&wal), metrics).expect("open the lake");
        (wal, writer)
    }

    /// Runs the writer until the WAL has `lsn` confirmed for the lake, then stops it.
    async fn run_until_confirmed(writer: LakeWriter, wal: &WalHandle, lsn: u64) -> LakeStore {
        let store = writer.store.clone();
        let (stop, receiver) = watch::channel(false);
        let task = tokio::spawn(writer.run(receiver, Duration::from_secs(5)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while wal.cursor(LAKE_CONSUMER) != Some(lsn) {
            assert!(Instant::now() < deadline, "the lake writer did not reach LSN {lsn}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).expect("stop");
        task.await.expect("join").expect("run");
        store
    }

    async fn message_ids(store: &LakeStore) -> Vec<String> {
        let mut ids = Vec::new();
        for key in store.list("events").await.expect("list") {
            let bytes = store.get(&key).await.expect("get").expect("exists");
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet").build().expect("reader") {
                let batch = batch.expect("batch");
                let column = arrow_array::cast::AsArray::as_string::<i32>(batch.column(0).as_ref()).clone();
                ids.extend((0..batch.num_rows()).map(|i| column.value(i).to_owned()));
            }
        }
        ids.sort();
        ids
    }

    /// The ids `setup` appends, in `message_ids` order.
    fn every_message_id() -> Vec<String> {
        let mut ids: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
        ids.sort();
        ids
    }

    /// A stop after some or all uploads but before the WAL confirmation: the next run redoes the
    /// recorded range under the same names, so the lake ends with every event exactly once.
    #[tokio::test(start_paused = true)]
    async fn a_restart_after_partial_or_full_upload_leaves_no_duplicates() {
        for uploaded_before_crash in [0usize, 1, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (wal, writer) = setup(dir.path()).await;
            let pending = PendingRange { from: 0, to: 50, cut_at: Some(Utc::now()) };
            write_pending(&writer.settings.state_dir, &pending).expect("pending");
            let (files, _) = writer.encode_range(0, 50, usize::MAX).await.expect("encode");
            assert_eq!(files.len(), 2);
            for file in files.iter().take(uploaded_before_crash) {
                writer.store.put(&file.key, file.bytes.clone()).await.expect("put");
            }
            let keys_before: Vec<String> = files.iter().map(|f| f.key.clone()).collect();
            // Restart: a new writer over the same WAL and state.
            let store = run_until_confirmed(writer, &wal, 50).await;
            assert_eq!(store.list("events").await.expect("list"), keys_before, "same names, no new files");
            assert_eq!(message_ids(&store).await, every_message_id(), "every event exactly once");
            assert!(read_pending(&dir.path().join("state")).expect("read").is_none(), "marker cleared");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_is_flushed_in_ranges_of_at_most_max_range_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, mut writer) = setup(dir.path()).await;
        writer.settings.max_range_records = 20;
        let store = run_until_confirmed(writer, &wal, 50).await;
        let keys = store.list("events").await.expect("list");
        let ranges: std::collections::BTreeSet<String> =
            keys.iter().map(|k| k.rsplit('/').next().expect("name").trim_end_matches(".parquet").to_owned()).collect();
        let expected: std::collections::BTreeSet<String> =
            [(0, 20), (20, 40), (40, 50)].iter().map(|(from, to)| format!("gw-test-{from:020}-{to:020}")).collect();
        assert_eq!(ranges, expected);
        let mut ids = message_ids(&store).await;
        ids.dedup();
        assert_eq!(ids.len(), 50);
        let watermark: Watermark =
            serde_json::from_slice(&store.get("_inlet/watermarks/gw-test.json").await.expect("get").expect("exists"))
                .expect("watermark");
        assert_eq!(watermark.lsn, 50, "the watermark moves once the backlog is done");
    }

    #[tokio::test(start_paused = true)]
    async fn large_events_are_flushed_in_ranges_bounded_by_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, mut writer) = setup(dir.path()).await;
        // The 50 test events are about 200 bytes each: ranges of about ten.
        writer.settings.max_range_bytes = 2000;
        let store = run_until_confirmed(writer, &wal, 50).await;
        let names: Vec<String> = store.list("events").await.expect("list");
        let ranges: std::collections::BTreeSet<(u64, u64)> = names
            .iter()
            .map(|k| {
                let name = k.rsplit('/').next().expect("name").trim_end_matches(".parquet");
                let mut parts = name.rsplit('-');
                let to = parts.next().expect("to").parse().expect("lsn");
                let from = parts.next().expect("from").parse().expect("lsn");
                (from, to)
            })
            .collect();
        assert!(ranges.len() >= 4, "cut by bytes: {ranges:?}");
        assert!(ranges.iter().all(|(from, to)| to - from <= 15), "each near 2,000 bytes: {ranges:?}");
        let mut ids = message_ids(&store).await;
        let all = ids.len();
        ids.dedup();
        assert_eq!((all, ids.len()), (50, 50), "every event once");
    }

    /// A stop while an upload is still retrying (the store was down and has just come back)
    /// goes on to the final flush, which finishes that range under the same names.
    // Real time: the final flush's budget must be measured against real uploads here.
    #[tokio::test]
    async fn a_stop_during_upload_retries_still_flushes_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, writer) = setup(dir.path()).await;
        // The store is down: its directory is replaced by a file.
        let blocker = dir.path().join("lake");
        std::fs::remove_dir_all(&blocker).expect("remove the lake's directory");
        std::fs::write(&blocker, b"not a directory").expect("block");
        let (store, metrics) = (writer.store.clone(), writer.metrics.clone());
        let (stop, receiver) = watch::channel(false);
        let task = tokio::spawn(writer.run(receiver, Duration::from_secs(5)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.upload_failures.get() == 0 {
            assert!(Instant::now() < deadline, "the upload never failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let interrupted = read_pending(&dir.path().join("state")).expect("read").expect("a range is pending");
        // The store comes back, and the stop arrives while the upload waits to retry.
        std::fs::remove_file(&blocker).expect("unblock");
        stop.send(true).expect("stop");
        task.await.expect("join").expect("run");
        assert_eq!(wal.cursor(LAKE_CONSUMER), Some(50), "everything durable is confirmed");
        let names: Vec<String> = store.list("events").await.expect("list");
        let range = format!("gw-test-{:020}-{:020}.parquet", interrupted.from, interrupted.to);
        assert!(names.iter().all(|name| name.ends_with(&range)), "the interrupted range's names: {names:?}");
        assert_eq!(message_ids(&store).await, every_message_id(), "every event exactly once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_range_already_confirmed_is_simply_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, writer) = setup(dir.path()).await;
        wal.confirm(LAKE_CONSUMER, 50).await.expect("confirm");
        write_pending(&writer.settings.state_dir, &PendingRange { from: 0, to: 50, cut_at: Some(Utc::now()) })
            .expect("pending");
        let store = writer.store.clone();
        let (stop, receiver) = watch::channel(false);
        let task = tokio::spawn(writer.run(receiver, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(true).expect("stop");
        task.await.expect("join").expect("run");
        assert!(store.list("events").await.expect("list").is_empty(), "a confirmed range is not written again");
        assert!(read_pending(&dir.path().join("state")).expect("read").is_none());
    }
}
