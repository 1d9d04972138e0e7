//! Group commit: one writer thread owns the [`Wal`]; any number of tasks append through a
//! [`WalHandle`] and are answered once the sync that covers their records has returned.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Result, WalError};
use crate::policy::FsyncPolicy;
use crate::record::FramedRecords;
use crate::wal::{RecoveryReport, Wal, WalConfig};

/// The most payload bytes one group commit gathers before it writes and syncs, so a flood of
/// appends cannot delay the first waiter's answer without bound.
pub const GROUP_COMMIT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Receives timings from the writer thread (the gateway turns them into metrics).
pub trait WalObserver: Send + Sync + fmt::Debug {
    /// One `fdatasync` took `duration` and made `records` records durable.
    fn synced(&self, duration: Duration, records: u64);

    /// An append waited `waited` in the queue before the writer thread took it.
    fn queued(&self, waited: Duration);
}

/// Live figures of a running log, updated by the writer thread after every group commit.
#[derive(Debug, Default)]
pub struct WalStats {
    next_lsn: AtomicU64,
    durable_lsn: AtomicU64,
    oldest_lsn: AtomicU64,
    disk_bytes: AtomicU64,
    segments: AtomicU64,
    cursors: Mutex<std::collections::BTreeMap<String, u64>>,
    poisoned: OnceLock<String>,
}

impl WalStats {
    fn update(&self, wal: &Wal) {
        self.next_lsn.store(wal.next_lsn(), Ordering::Release);
        self.durable_lsn.store(wal.acknowledged_lsn(), Ordering::Release);
        self.oldest_lsn.store(wal.oldest_lsn(), Ordering::Release);
        self.disk_bytes.store(wal.disk_bytes(), Ordering::Release);
        self.segments.store(wal.segment_count() as u64, Ordering::Release);
        if let Ok(mut cursors) = self.cursors.lock() {
            for (name, position) in wal.cursors().iter() {
                cursors.insert(name.to_owned(), position);
            }
        }
    }

    fn poison(&self, error: &WalError) -> WalError {
        let message = self.poisoned.get_or_init(|| error.to_string()).clone();
        tracing::error!(%error, "write-ahead log poisoned; restart to recover");
        WalError::Poisoned(message)
    }
}

enum Command {
    Append {
        records: FramedRecords,
        reply: oneshot::Sender<Result<Range<u64>>>,
        queued_at: Instant,
    },
    Confirm {
        consumer: String,
        lsn: u64,
        reply: oneshot::Sender<Result<usize>>,
    },
    /// Answered on a std channel: shutdown may run in `Drop`, inside or outside a runtime.
    Shutdown {
        reply: mpsc::Sender<Result<()>>,
    },
}

/// A running log: cheap to share (`Arc`), safe to call from any task or thread.
pub struct WalHandle {
    sender: mpsc::Sender<Command>,
    stats: Arc<WalStats>,
    thread: Mutex<Option<JoinHandle<()>>>,
    config: WalConfig,
}

impl fmt::Debug for WalHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalHandle").field("dir", &self.config.dir).field("stats", &self.stats).finish()
    }
}

impl WalHandle {
    /// Opens the log (recovering it) and starts its writer thread.
    pub fn start(config: WalConfig, observer: Option<Arc<dyn WalObserver>>) -> Result<(WalHandle, RecoveryReport)> {
        let (mut wal, report) = Wal::open(config.clone())?;
        wal.move_file_work_to_background()?;
        let stats = Arc::new(WalStats::default());
        stats.update(&wal);
        let (sender, receiver) = mpsc::channel();
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("inlet-wal-writer".into())
            .spawn(move || run_writer(wal, receiver, &thread_stats, observer.as_deref()))
            .map_err(WalError::io("starting the write-ahead log writer thread"))?;
        let handle = WalHandle { sender, stats, thread: Mutex::new(Some(thread)), config };
        Ok((handle, report))
    }

    /// Appends `payloads` as consecutive records; resolves once they are as durable as the
    /// fsync policy promises (with [`FsyncPolicy::Always`]: synced to disk).
    pub async fn append(&self, payloads: Vec<Vec<u8>>) -> Result<Range<u64>> {
        self.append_framed(FramedRecords::from_payloads(&payloads)).await
    }

    /// As [`WalHandle::append`], for records the caller has framed (on its own thread).
    pub async fn append_framed(&self, records: FramedRecords) -> Result<Range<u64>> {
        let (reply, answer) = oneshot::channel();
        self.submit(Command::Append { records, reply, queued_at: Instant::now() })?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Confirms, for `consumer`, every record before `lsn`; releases what no one needs any more.
    pub async fn confirm(&self, consumer: &str, lsn: u64) -> Result<usize> {
        let (reply, answer) = oneshot::channel();
        self.submit(Command::Confirm { consumer: consumer.to_owned(), lsn, reply })?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Syncs, stops the writer thread and waits for it. Later appends fail with `Closed`.
    pub fn shutdown(&self) -> Result<()> {
        let (reply, answer) = mpsc::channel();
        let result = match self.sender.send(Command::Shutdown { reply }) {
            Ok(()) => answer.recv().unwrap_or(Err(WalError::Closed)),
            Err(_) => Ok(()),
        };
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        result
    }

    fn submit(&self, command: Command) -> Result<()> {
        if let Some(message) = self.stats.poisoned.get() {
            return Err(WalError::Poisoned(message.clone()));
        }
        self.sender.send(command).map_err(|_| WalError::Closed)
    }

    /// Every record below this LSN is as durable as the fsync policy promises (synced, except
    /// under [`FsyncPolicy::Never`]): safe to read and to confirm downstream.
    pub fn durable_lsn(&self) -> u64 {
        self.stats.durable_lsn.load(Ordering::Acquire)
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> u64 {
        self.stats.next_lsn.load(Ordering::Acquire)
    }

    pub fn oldest_lsn(&self) -> u64 {
        self.stats.oldest_lsn.load(Ordering::Acquire)
    }

    pub fn disk_bytes(&self) -> u64 {
        self.stats.disk_bytes.load(Ordering::Acquire)
    }

    pub fn segments(&self) -> u64 {
        self.stats.segments.load(Ordering::Acquire)
    }

    /// The first LSN `consumer` has not confirmed (`None` for an unknown consumer).
    pub fn cursor(&self, consumer: &str) -> Option<u64> {
        self.stats.cursors.lock().ok()?.get(consumer).copied()
    }

    /// Why the log refuses writes, if it does.
    pub fn poisoned(&self) -> Option<&str> {
        self.stats.poisoned.get().map(String::as_str)
    }

    pub fn config(&self) -> &WalConfig {
        &self.config
    }
}

impl Drop for WalHandle {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "write-ahead log shutdown failed");
        }
    }
}

/// An append written but not yet answered (waiting for the group's sync).
struct Pending {
    reply: oneshot::Sender<Result<Range<u64>>>,
    lsns: Range<u64>,
}

fn run_writer(mut wal: Wal, receiver: mpsc::Receiver<Command>, stats: &WalStats, observer: Option<&dyn WalObserver>) {
    let policy = wal.config().fsync;
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let first = match (policy, unsynced_since) {
            (FsyncPolicy::Interval(interval), Some(since)) => {
                match receiver.recv_timeout(interval.saturating_sub(since.elapsed())) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = sync_and_observe(&mut wal, stats, observer);
                        unsynced_since = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match receiver.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        let mut commands = vec![first];
        let mut gathered = 0usize;
        while gathered < GROUP_COMMIT_MAX_BYTES {
            match receiver.try_recv() {
                Ok(command) => {
                    if let Command::Append { records, .. } = &command {
                        gathered += records.payload_bytes();
                    }
                    commands.push(command);
                }
                Err(_) => break,
            }
        }

        let mut pending = Vec::new();
        let mut after_sync = Vec::new();
        for command in commands {
            match command {
                Command::Append { records, reply, queued_at } => {
                    if let Some(observer) = observer {
                        observer.queued(queued_at.elapsed());
                    }
                    if let Some(message) = stats.poisoned.get() {
                        let _ = reply.send(Err(WalError::Poisoned(message.clone())));
                        continue;
                    }
                    match wal.stage(&records) {
                        Ok(lsns) => pending.push(Pending { reply, lsns }),
                        Err(e @ WalError::RecordTooLarge { .. }) => {
                            let _ = reply.send(Err(e));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(stats.poison(&e)));
                        }
                    }
                }
                other => after_sync.push(other),
            }
        }

        // One write for the whole group: a request's records are not in the file until here.
        let written = write_staged(&mut wal, stats);
        let needs_sync = (policy.syncs_before_ack() && !pending.is_empty()) || !after_sync.is_empty();
        let synced = match written {
            Ok(()) if needs_sync => sync_and_observe(&mut wal, stats, observer),
            other => other,
        };
        if let FsyncPolicy::Interval(interval) = policy {
            if synced.is_ok() && !pending.is_empty() && unsynced_since.is_none() {
                unsynced_since = Some(Instant::now());
            }
            if unsynced_since.is_some_and(|since| since.elapsed() >= interval) {
                let _ = sync_and_observe(&mut wal, stats, observer);
                unsynced_since = None;
            }
        }
        // Published before anyone is answered, so a caller that saw its append acknowledged
        // also sees it in `next_lsn`/`durable_lsn`.
        stats.update(&wal);
        for Pending { reply, lsns } in pending {
            let answer = match &synced {
                Ok(()) => Ok(lsns),
                Err(message) => Err(WalError::Poisoned(message.clone())),
            };
            let _ = reply.send(answer);
        }

        let mut shutdown = None;
        for command in after_sync {
            match command {
                Command::Confirm { consumer, lsn, reply } => {
                    let result = wal.confirm(&consumer, lsn);
                    if let Err(e @ WalError::Io { .. }) = &result {
                        tracing::error!(error = %e, "confirming consumer position failed");
                    }
                    // Published before the answer, like appends.
                    stats.update(&wal);
                    let _ = reply.send(result);
                }
                Command::Shutdown { reply } => shutdown = Some(reply),
                Command::Append { .. } => unreachable!("appends were handled above"),
            }
        }
        stats.update(&wal);
        if let Some(reply) = shutdown {
            let _ = reply.send(synced.map_err(WalError::Poisoned));
            break;
        }
    }
    if stats.poisoned.get().is_none() {
        let _ = sync_and_observe(&mut wal, stats, observer);
    }
    stats.update(&wal);
}

/// Writes what the group staged; poisons the log on failure (returning the message), and
/// writes nothing more once it is poisoned.
fn write_staged(wal: &mut Wal, stats: &WalStats) -> Result<(), String> {
    if let Some(message) = stats.poisoned.get() {
        return Err(message.clone());
    }
    wal.write_staged().map_err(|e| poison_message(stats, &e))
}

/// Syncs, reports the timing, and poisons the log on failure (returning the message).
fn sync_and_observe(wal: &mut Wal, stats: &WalStats, observer: Option<&dyn WalObserver>) -> Result<(), String> {
    if let Some(message) = stats.poisoned.get() {
        return Err(message.clone());
    }
    let records = wal.next_lsn() - wal.synced_lsn();
    let started = Instant::now();
    match wal.sync() {
        Ok(()) => {
            if let Some(observer) = observer.filter(|_| records > 0) {
                observer.synced(started.elapsed(), records);
            }
            stats.update(wal);
            Ok(())
        }
        Err(e) => Err(poison_message(stats, &e)),
    }
}

fn poison_message(stats: &WalStats, error: &WalError) -> String {
    match stats.poison(error) {
        WalError::Poisoned(message) => message,
        _ => unreachable!("poison returns Poisoned"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct CountingObserver(AtomicU64, AtomicU64, AtomicU64);
    impl WalObserver for CountingObserver {
        fn synced(&self, _: Duration, records: u64) {
            self.0.fetch_add(1, Ordering::Relaxed);
            self.1.fetch_add(records, Ordering::Relaxed);
        }

        fn queued(&self, _: Duration) {
            self.2.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `tasks` tasks at once, each appending `appends` requests of `payloads(task, i)`: every
    /// append's LSNs with its payloads.
    async fn append_concurrently(
        wal: &Arc<WalHandle>,
        tasks: u32,
        appends: u32,
        payloads: fn(u32, u32) -> Vec<Vec<u8>>,
    ) -> Vec<(Range<u64>, Vec<Vec<u8>>)> {
        let tasks: Vec<_> = (0..tasks)
            .map(|task| {
                let wal = Arc::clone(wal);
                tokio::spawn(async move {
                    let mut appended = Vec::new();
                    for i in 0..appends {
                        let payloads = payloads(task, i);
                        appended.push((wal.append(payloads.clone()).await.expect("append"), payloads));
                    }
                    appended
                })
            })
            .collect();
        let mut appended = Vec::new();
        for task in tasks {
            appended.extend(task.await.expect("task"));
        }
        appended
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_syncs_and_get_distinct_lsns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let observer = Arc::new(CountingObserver::default());
        let (wal, _) = WalHandle::start(WalConfig::new(dir.path()), Some(observer.clone())).expect("start");
        let wal = Arc::new(wal);
        let appended = append_concurrently(&wal, 64, 20, |task, i| {
            vec![format!("{task}-{i}-a").into_bytes(), format!("{task}-{i}-b").into_bytes()]
        })
        .await;
        let mut lsns = Vec::new();
        for (range, _) in appended {
            assert_eq!(range.end - range.start, 2, "one request's records are contiguous");
            lsns.extend(range);
        }
        lsns.sort_unstable();
        assert_eq!(lsns, (0..64 * 20 * 2).collect::<Vec<u64>>());
        assert_eq!(wal.durable_lsn(), 2560);
        assert_eq!(observer.1.load(Ordering::Relaxed), 2560);
        assert_eq!(observer.2.load(Ordering::Relaxed), 1280, "every append's wait in the queue is reported");
        let syncs = observer.0.load(Ordering::Relaxed);
        assert!(syncs < 1280, "group commit should share syncs ({syncs} syncs for 1280 appends)");
        wal.shutdown().expect("shutdown");
        assert!(matches!(wal.append(vec![b"late".to_vec()]).await, Err(WalError::Closed)));
    }

    /// Group commits staged across many rolls onto spares prepared in the background: every
    /// acknowledged record is read back at its LSN, from a log that reopens clean.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commits_across_rolls_read_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WalConfig { segment_bytes: 4096, ..WalConfig::new(dir.path()) };
        let (wal, _) = WalHandle::start(config.clone(), None).expect("start");
        let wal = Arc::new(wal);
        let appended = append_concurrently(&wal, 16, 40, |task, i| {
            vec![format!("{task}-{i}-").repeat(12).into_bytes(), vec![task as u8; 50]]
        })
        .await;
        let mut expected: Vec<(u64, Vec<u8>)> =
            appended.into_iter().flat_map(|(lsns, payloads)| lsns.zip(payloads)).collect();
        expected.sort();
        assert!(wal.segments() > 20, "the small segments rolled ({})", wal.segments());
        wal.shutdown().expect("shutdown");
        let (_, report) = Wal::open(config).expect("reopen");
        assert_eq!((report.next_lsn, report.truncated_bytes), (16 * 40 * 2, 0));
        let read: Vec<(u64, Vec<u8>)> = crate::WalReader::open(dir.path(), 0, u64::MAX, 1 << 20)
            .expect("reader")
            .map(|r| r.map(|r| (r.lsn, r.payload)).expect("record"))
            .collect();
        assert_eq!(read, expected);
    }

    #[tokio::test]
    async fn interval_policy_syncs_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            WalConfig { fsync: FsyncPolicy::Interval(Duration::from_millis(20)), ..WalConfig::new(dir.path()) };
        let (wal, _) = WalHandle::start(config, None).expect("start");
        wal.append(vec![b"a".to_vec()]).await.expect("append");
        assert_eq!(wal.next_lsn(), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while wal.durable_lsn() < 1 {
            assert!(Instant::now() < deadline, "interval sync never happened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn without_fsync_written_records_are_visible_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            WalConfig { fsync: FsyncPolicy::Never, consumers: vec!["lake".into()], ..WalConfig::new(dir.path()) };
        let (wal, _) = WalHandle::start(config, None).expect("start");
        wal.append(vec![b"a".to_vec(), b"b".to_vec()]).await.expect("append");
        assert_eq!(wal.durable_lsn(), 2, "consumers can read what the policy acknowledged");
        wal.confirm("lake", 2).await.expect("confirm");
        assert_eq!(wal.cursor("lake"), Some(2));
    }

    #[tokio::test]
    async fn confirmed_segments_are_released_off_the_writer_thread_by_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WalConfig {
            segment_bytes: 256,
            consumers: vec!["lake".into()],
            recycled_segments: 3,
            ..WalConfig::new(dir.path())
        };
        let (wal, _) = WalHandle::start(config, None).expect("start");
        for i in 0..40u8 {
            wal.append(vec![vec![i; 60]]).await.expect("append");
        }
        let segments = || {
            std::fs::read_dir(dir.path())
                .expect("dir")
                .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal")))
                .count()
        };
        let before = segments();
        assert!(wal.confirm("lake", 40).await.expect("confirm") > 0);
        assert!(wal.segments() < before as u64, "the log stops counting them at once");
        wal.shutdown().expect("shutdown");
        assert_eq!(segments(), 1, "only the active segment is left once the reaper finished");
        let recycled = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("recycled-")))
            .count();
        assert!(before > 4);
        assert!(recycled <= 3, "at most the limit is kept; the rest was deleted");
    }

    /// The first segment grows as it is written, so a spare is zero-filled off the writer
    /// thread at once and the log moves onto it. From then on the next spare is prepared once
    /// the active segment is half full, and the roll names it: segments are full-length from
    /// their first record on.
    #[tokio::test]
    async fn segments_start_from_spares_prepared_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment_bytes = 4096;
        let config = WalConfig { segment_bytes, ..WalConfig::new(dir.path()) };
        let (wal, _) = WalHandle::start(config, None).expect("start");
        let spare = dir.path().join("next-segment.spare");
        let spare_ready = || async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::metadata(&spare).map(|m| m.len()).unwrap_or(0) < segment_bytes {
                assert!(Instant::now() < deadline, "the spare was never prepared");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // its sync, then its answer
        };
        let records: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 100]).collect();
        wal.append(vec![records[0].clone()]).await.expect("append");
        spare_ready().await;
        wal.append(vec![records[1].clone()]).await.expect("append");
        assert_eq!(wal.segments(), 2, "the log moved onto the spare");
        let files = crate::segment::list_segments(dir.path()).expect("list");
        assert_eq!(files[1].bytes, segment_bytes, "the new segment is the preallocated spare");
        assert_eq!(files[1].first_lsn, 1);
        assert!(!spare.exists(), "no spare is asked for before the new segment is half full");

        for record in &records[2..26] {
            wal.append(vec![record.clone()]).await.expect("append");
        }
        spare_ready().await;
        for record in &records[26..50] {
            wal.append(vec![record.clone()]).await.expect("append");
        }
        assert_eq!(wal.segments(), 3);
        let files = crate::segment::list_segments(dir.path()).expect("list");
        assert_eq!(files[2].bytes, segment_bytes, "the roll named the spare");
        assert!(files[1].bytes < segment_bytes, "a closed segment is cut to its records");
        for record in &records[50..] {
            wal.append(vec![record.clone()]).await.expect("append");
        }
        wal.shutdown().expect("shutdown");
        let files = crate::segment::list_segments(dir.path()).expect("list");
        assert!(files.last().expect("segments").bytes < segment_bytes, "a clean stop cuts the unused zeros");
        let read: Vec<Vec<u8>> = crate::WalReader::open(dir.path(), 0, u64::MAX, 1 << 20)
            .expect("reader")
            .map(|r| r.expect("record").payload)
            .collect();
        assert_eq!(read, records);
    }

    #[tokio::test]
    async fn oversized_records_are_refused_without_poisoning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WalConfig { max_record_bytes: 4, ..WalConfig::new(dir.path()) };
        let (wal, _) = WalHandle::start(config, None).expect("start");
        assert!(matches!(wal.append(vec![vec![0; 5]]).await, Err(WalError::RecordTooLarge { .. })));
        assert_eq!(wal.append(vec![vec![0; 4]]).await.expect("append"), 0..1);
        assert!(wal.poisoned().is_none());
    }
}
