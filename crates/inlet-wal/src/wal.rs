//! The log itself: single-owner, synchronous. [`crate::WalHandle`] runs one on a writer thread.

use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::cursors::Cursors;
use crate::error::{Result, WalError};
use crate::policy::FsyncPolicy;
use crate::reaper::SegmentReaper;
use crate::record::FramedRecords;
use crate::recycle::RecycledSegments;
use crate::segment::{self, SegmentInfo};
use crate::spare::{self, SpareSegments};

/// How to open a log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// The directory holding the segments and cursors; created if missing.
    pub dir: PathBuf,
    /// A segment is closed once the next write would take it past this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// The largest payload accepted; larger ones are refused before anything is written.
    pub max_record_bytes: usize,
    /// The downstream consumers that must confirm records before their segments are deleted.
    pub consumers: Vec<String>,
    /// Start segments zero-filled to `segment_bytes`, so syncs write data only (see `spare`).
    pub preallocate: bool,
    /// With `preallocate`: how many confirmed segments to keep as files to zero-fill in place
    /// as the next spares, instead of deleting them and filling new files (see `recycle`).
    pub recycled_segments: usize,
}

impl WalConfig {
    /// A configuration with the defaults for everything but the directory.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
            max_record_bytes: 1024 * 1024,
            consumers: Vec::new(),
            preallocate: true,
            recycled_segments: 4,
        }
    }
}

/// What opening the log found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub oldest_lsn: u64,
    pub next_lsn: u64,
    /// Bytes cut from the newest segment's tail (0 after a clean shutdown): a torn write, or
    /// the unused zeros of a preallocated segment.
    pub truncated_bytes: u64,
    /// Why the tail was cut, when it was.
    pub truncated_reason: Option<String>,
}

/// An open write-ahead log. Not shared: one owner appends, syncs and confirms.
#[derive(Debug)]
pub struct Wal {
    config: WalConfig,
    /// Oldest first; the last one is the active segment and is never deleted.
    segments: Vec<SegmentInfo>,
    active: File,
    /// The active file's length: past the records' end when it was preallocated.
    active_len: u64,
    spares: SpareSegments,
    next_lsn: u64,
    /// Every record below this LSN is in the segment files; the rest are staged in `buf`.
    written_lsn: u64,
    synced_lsn: u64,
    /// Bytes of the active segment covered by the last sync (everything before is durable).
    active_synced_bytes: u64,
    cursors: Cursors,
    buf: Vec<u8>,
    reaper: SegmentReaper,
    recycled: Arc<RecycledSegments>,
}

/// Where the active segment stands; for diagnostics and crash-simulation tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSegment {
    pub path: PathBuf,
    pub first_lsn: u64,
    pub bytes: u64,
    pub synced_bytes: u64,
}

impl Wal {
    /// Opens (or creates) the log in `config.dir`, repairing a torn tail.
    pub fn open(config: WalConfig) -> Result<(Wal, RecoveryReport)> {
        fs::create_dir_all(&config.dir).map_err(WalError::io(format!("creating {}", config.dir.display())))?;
        // A crash can leave the cursors' temporary file (named without the dot by earlier versions).
        for stale in [".cursors.json.tmp", "cursors.json.tmp"] {
            let _ = fs::remove_file(config.dir.join(stale));
        }
        SpareSegments::discard_leftover(&config.dir)?;
        let recycled_limit = if config.preallocate { config.recycled_segments } else { 0 };
        let recycled = Arc::new(RecycledSegments::open(&config.dir, recycled_limit)?);
        let spares = if config.preallocate {
            SpareSegments::Inline {
                dir: config.dir.clone(),
                segment_bytes: config.segment_bytes,
                recycled: Arc::clone(&recycled),
            }
        } else {
            SpareSegments::Off
        };
        let mut segments = segment::list_segments(&config.dir)?;
        let mut truncated_bytes = 0;
        let mut truncated_reason = None;
        let (active, next_lsn) = match segments.last_mut() {
            None => {
                let (file, info) = segment::create_segment(&config.dir, 0)?;
                segments.push(info);
                (file, 0)
            }
            Some(newest) => {
                let scan = segment::scan_segment(newest, config.max_record_bytes)?;
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&newest.path)
                    .map_err(WalError::io(format!("opening {}", newest.path.display())))?;
                if scan.valid_end < newest.bytes {
                    truncated_bytes = newest.bytes - scan.valid_end;
                    truncated_reason = scan.stopped.map(str::to_owned);
                    if scan.tail_is_zeros {
                        tracing::info!(segment = %newest.path.display(), bytes = truncated_bytes, "cutting the unused preallocated tail of the write-ahead log");
                    } else {
                        tracing::warn!(
                            segment = %newest.path.display(),
                            bytes = truncated_bytes,
                            reason = scan.stopped.unwrap_or("unknown"),
                            "truncating torn tail of the write-ahead log"
                        );
                    }
                    file.set_len(scan.valid_end)
                        .and_then(|()| file.sync_all())
                        .map_err(WalError::io(format!("truncating {}", newest.path.display())))?;
                    newest.bytes = scan.valid_end;
                }
                (file, newest.first_lsn + scan.records)
            }
        };
        let oldest_lsn = segments[0].first_lsn;
        let cursors = Cursors::load(&config.dir, &config.consumers, oldest_lsn)?;
        cursors.persist(&config.dir)?;
        let report =
            RecoveryReport { segments: segments.len(), oldest_lsn, next_lsn, truncated_bytes, truncated_reason };
        let active_synced_bytes = segments.last().map_or(0, |s| s.bytes);
        // The newest segment was just cut to its records (or created with only its header).
        let active_len = active_synced_bytes;
        let wal = Wal {
            config,
            segments,
            active,
            active_len,
            spares,
            next_lsn,
            written_lsn: next_lsn,
            synced_lsn: next_lsn,
            active_synced_bytes,
            cursors,
            buf: Vec::new(),
            reaper: SegmentReaper::inline(Arc::clone(&recycled)),
            recycled,
        };
        Ok((wal, report))
    }

    /// From now on, confirmed segments are released (recycled or deleted) by a thread of their
    /// own (see `reaper`), and spare segments are zero-filled by another (see `spare`).
    pub(crate) fn move_file_work_to_background(&mut self) -> Result<()> {
        self.reaper = SegmentReaper::background(self.config.dir.clone(), Arc::clone(&self.recycled))?;
        if self.config.preallocate {
            self.spares = SpareSegments::background(
                self.config.dir.clone(),
                self.config.segment_bytes,
                Arc::clone(&self.recycled),
            )?;
            let bytes = self.active_info().bytes;
            self.spares.active_filled(bytes, self.config.segment_bytes, self.active_grows());
        }
        Ok(())
    }

    /// Writes `payloads` as consecutive records and returns their LSNs. Nothing is synced: call
    /// [`Wal::sync`] before treating them as durable. Either every payload is accepted or, on a
    /// size error, none is written.
    pub fn append<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<Range<u64>> {
        let lsns = self.stage(&FramedRecords::from_payloads(payloads))?;
        self.write_staged()?;
        Ok(lsns)
    }

    /// As [`Wal::append`], for records framed by the caller, which may stay in memory until
    /// [`Wal::write_staged`] or [`Wal::sync`] writes them, so a group commit writes all its
    /// requests' records with one system call. A roll writes what was staged before it, into
    /// the segment it belongs to.
    pub fn stage(&mut self, records: &FramedRecords) -> Result<Range<u64>> {
        let max = self.config.max_record_bytes;
        if let Some(len) = (0..records.len()).map(|i| records.payload(i).len()).find(|&len| len > max) {
            return Err(WalError::RecordTooLarge { len, max });
        }
        self.move_to_a_ready_spare()?;
        let start = self.next_lsn;
        let bytes = records.bytes();
        // Records are copied to `buf` in runs: each run ends where a roll falls, or at the end.
        let mut copied = 0;
        for index in 0..records.len() {
            let record = records.record(index);
            let active_first = self.active_info().first_lsn;
            let projected = self.active_info().bytes + (self.buf.len() + record.end - copied) as u64;
            if projected > self.config.segment_bytes && self.next_lsn > active_first {
                self.buf.extend_from_slice(&bytes[copied..record.start]);
                copied = record.start;
                self.roll()?;
            }
            self.next_lsn += 1;
        }
        self.buf.extend_from_slice(&bytes[copied..]);
        Ok(start..self.next_lsn)
    }

    /// Writes the staged records to the active segment (not synced).
    pub fn write_staged(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let info = self.segments.last_mut().expect("the active segment always exists");
        self.active
            .write_all_at(&self.buf, info.bytes)
            .map_err(WalError::io_lazily(|| format!("writing {}", info.path.display())))?;
        info.bytes += self.buf.len() as u64;
        let grows = self.active_len <= info.bytes;
        self.active_len = self.active_len.max(info.bytes);
        self.spares.active_filled(info.bytes, self.config.segment_bytes, grows);
        self.buf.clear();
        self.written_lsn = self.next_lsn;
        Ok(())
    }

    /// Makes every appended or staged record durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.synced_lsn == self.next_lsn {
            return Ok(());
        }
        self.write_staged()?;
        let path = &self.active_info().path;
        self.active.sync_data().map_err(WalError::io_lazily(|| format!("syncing {}", path.display())))?;
        self.synced_lsn = self.next_lsn;
        self.active_synced_bytes = self.active_info().bytes;
        Ok(())
    }

    /// Records that `consumer` has made every record before `lsn` durable elsewhere, persists
    /// that, and releases (deletes or recycles) the segments no consumer needs any more. Returns
    /// how many were released.
    pub fn confirm(&mut self, consumer: &str, lsn: u64) -> Result<usize> {
        if !self.cursors.advance(consumer, lsn.min(self.acknowledged_lsn()))? {
            return Ok(0);
        }
        self.cursors.persist(&self.config.dir)?;
        let Some(min) = self.cursors.min_position() else { return Ok(0) };
        let mut released = Vec::new();
        while self.segments.len() > 1 && self.segments[1].first_lsn <= min {
            released.push(self.segments.remove(0).path);
        }
        let count = released.len();
        if count > 0 {
            self.reaper.release(&self.config.dir, released)?;
            tracing::debug!(released = count, oldest_lsn = self.oldest_lsn(), "released confirmed segments");
        }
        Ok(count)
    }

    /// The LSN the next appended record will get.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Every record below this LSN is durable.
    pub fn synced_lsn(&self) -> u64 {
        self.synced_lsn
    }

    /// Every record below this LSN is as durable as the fsync policy promises, so it may be
    /// acknowledged, read by consumers and confirmed: the synced position, except under
    /// [`FsyncPolicy::Never`], which promises nothing beyond the write (staged records are not
    /// written yet).
    pub fn acknowledged_lsn(&self) -> u64 {
        match self.config.fsync {
            FsyncPolicy::Never => self.written_lsn,
            FsyncPolicy::Always | FsyncPolicy::Interval(_) => self.synced_lsn,
        }
    }

    /// The oldest record still on disk.
    pub fn oldest_lsn(&self) -> u64 {
        self.segments[0].first_lsn
    }

    /// Bytes of all segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }

    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    pub fn active_segment(&self) -> ActiveSegment {
        let info = self.active_info();
        ActiveSegment {
            path: info.path.clone(),
            first_lsn: info.first_lsn,
            bytes: info.bytes,
            synced_bytes: self.active_synced_bytes,
        }
    }

    fn active_info(&self) -> &SegmentInfo {
        self.segments.last().expect("the active segment always exists")
    }

    /// Whether the active segment grows as it is written (it did not start as a spare), so
    /// that every sync also writes its inode.
    fn active_grows(&self) -> bool {
        self.active_len <= self.active_info().bytes
    }

    /// Moves a log whose active segment grows onto a spare as soon as one is ready, instead of
    /// paying for the inode on every sync until the segment is full: after a start, and after
    /// a roll that found no spare ready. A segment without records is left alone (the next one
    /// would have the same first LSN, hence the same name).
    fn move_to_a_ready_spare(&mut self) -> Result<()> {
        if !self.active_grows() || self.next_lsn == self.active_info().first_lsn {
            return Ok(());
        }
        self.write_staged()?;
        match self.spares.take_ready() {
            Some(spare) => self.roll_onto(Some(spare)),
            None => Ok(()),
        }
    }

    /// Closes the active segment (synced, and cut to its records, so only the newest segment
    /// can ever be torn) and starts the next one.
    fn roll(&mut self) -> Result<()> {
        self.write_staged()?;
        let spare = self.spares.take();
        self.roll_onto(spare)
    }

    /// [`Wal::roll`] onto `spare`, or onto a new, growing file without one. Nothing may be
    /// staged: writing tells the spare thread how full the active segment is, which may set
    /// it preparing the next spare under the name of the one just taken.
    fn roll_onto(&mut self, spare: Option<PathBuf>) -> Result<()> {
        debug_assert!(self.buf.is_empty(), "staged records are written before a spare is taken");
        let started = Instant::now();
        let onto_spare = spare.is_some();
        self.sync()?;
        self.cut_unused_tail()?;
        let (file, info) = match spare {
            Some(spare) => segment::name_spare(&self.config.dir, &spare, self.next_lsn)?,
            None => segment::create_segment(&self.config.dir, self.next_lsn)?,
        };
        self.active_len = spare::file_len(&file, &info.path)?;
        self.active = file;
        self.active_synced_bytes = info.bytes;
        tracing::debug!(
            first_lsn = info.first_lsn,
            onto_spare,
            ms = started.elapsed().as_millis() as u64,
            "WAL segment started"
        );
        self.segments.push(info);
        Ok(())
    }

    /// Cuts the zeros after the active segment's records (a preallocated segment being closed).
    fn cut_unused_tail(&mut self) -> Result<()> {
        let info = self.active_info();
        if self.active_len > info.bytes {
            self.active
                .set_len(info.bytes)
                .and_then(|()| self.active.sync_all())
                .map_err(WalError::io(format!("cutting the unused tail of {}", info.path.display())))?;
            self.active_len = info.bytes;
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(error) = self.sync().and_then(|()| self.cut_unused_tail()) {
            tracing::error!(%error, "final sync of the write-ahead log failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::WalReader;
    use crate::segment::SEGMENT_HEADER_BYTES;

    fn config(dir: &std::path::Path) -> WalConfig {
        WalConfig { segment_bytes: 256, consumers: vec!["lake".into(), "amplitude".into()], ..WalConfig::new(dir) }
    }

    fn read_all(cfg: &WalConfig, from: u64) -> Vec<(u64, Vec<u8>)> {
        WalReader::open(&cfg.dir, from, u64::MAX, cfg.max_record_bytes)
            .expect("reader opens")
            .map(|r| r.map(|r| (r.lsn, r.payload)).expect("record reads"))
            .collect()
    }

    #[test]
    fn appends_roll_segments_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path());
        let payloads: Vec<Vec<u8>> = (0..50).map(|i| format!("event-{i}").repeat(i % 7 + 1).into_bytes()).collect();
        {
            let (mut wal, report) = Wal::open(cfg.clone()).expect("open");
            assert_eq!(report.next_lsn, 0);
            assert_eq!(wal.append(&payloads[..20]).expect("append"), 0..20);
            assert_eq!(wal.append(&payloads[20..]).expect("append"), 20..50);
            wal.sync().expect("sync");
            assert!(wal.segment_count() > 3, "small segments should roll");
        }
        let (wal, report) = Wal::open(cfg.clone()).expect("reopen");
        assert_eq!(report.next_lsn, 50);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(
            wal.disk_bytes(),
            std::fs::read_dir(dir.path())
                .expect("ls")
                .filter_map(|e| {
                    let e = e.ok()?;
                    e.file_name().to_str()?.ends_with(".wal").then(|| e.metadata().ok().map(|m| m.len())).flatten()
                })
                .sum::<u64>()
        );
        let read = read_all(&cfg, 0);
        assert_eq!(read.len(), 50);
        for (i, (lsn, payload)) in read.iter().enumerate() {
            assert_eq!(*lsn, i as u64);
            assert_eq!(payload, &payloads[i]);
        }
        assert_eq!(read_all(&cfg, 37)[0].0, 37);
    }

    /// A group commit stages many requests and writes them once; rolls in between must put
    /// each staged record in the segment its LSN belongs to, and nothing staged is readable
    /// (or acknowledged, even without fsync) before it is written.
    #[test]
    fn staged_records_are_written_once_into_the_right_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = WalConfig { fsync: FsyncPolicy::Never, ..config(dir.path()) };
        let payloads: Vec<Vec<u8>> = (0..40).map(|i| format!("staged-{i}").repeat(i % 5 + 1).into_bytes()).collect();
        {
            let (mut wal, _) = Wal::open(cfg.clone()).expect("open");
            let mut next = 0;
            for chunk in payloads.chunks(3) {
                assert_eq!(
                    wal.stage(&FramedRecords::from_payloads(chunk)).expect("stage"),
                    next..next + chunk.len() as u64
                );
                next += chunk.len() as u64;
            }
            assert!(wal.segment_count() > 3, "staging rolled the small segments");
            let written = wal.acknowledged_lsn();
            assert!(written < 40, "the records staged since the last roll are not written yet");
            assert_eq!(read_all(&cfg, 0).len() as u64, written, "what is written is readable, no more");
            wal.write_staged().expect("write");
            assert_eq!(wal.acknowledged_lsn(), 40);
            wal.stage(&FramedRecords::from_payloads(&[b"left staged"])).expect("stage");
            // Dropping the log writes and syncs what is staged.
        }
        let (_, report) = Wal::open(cfg.clone()).expect("reopen");
        assert_eq!((report.next_lsn, report.truncated_bytes), (41, 0));
        let read = read_all(&cfg, 0);
        assert_eq!(read.iter().map(|(lsn, _)| *lsn).collect::<Vec<_>>(), (0..41).collect::<Vec<u64>>());
        assert_eq!(read[..40].iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(), payloads);
        assert_eq!(read[40].1, b"left staged");
    }

    #[test]
    fn rolled_segments_are_preallocated_and_cut_to_their_records_when_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path());
        let payloads: Vec<Vec<u8>> = (0..30).map(|i| vec![b'p'; 20 + i]).collect();
        {
            let (mut wal, _) = Wal::open(cfg.clone()).expect("open");
            wal.append(&payloads).expect("append");
            wal.sync().expect("sync");
            let segments = segment::list_segments(dir.path()).expect("list");
            assert!(segments.len() > 2);
            let (active, closed) = segments.split_last().expect("segments");
            assert_eq!(active.bytes, cfg.segment_bytes, "the active segment was a zero-filled spare");
            assert!(wal.active_segment().bytes < cfg.segment_bytes);
            for segment in closed {
                let scan = segment::scan_segment(segment, cfg.max_record_bytes).expect("scan");
                assert_eq!(scan.valid_end, segment.bytes, "closed segments end at their last record");
            }
            assert_eq!(wal.disk_bytes(), closed.iter().map(|s| s.bytes).sum::<u64>() + wal.active_segment().bytes);
        }
        let (_, report) = Wal::open(cfg.clone()).expect("reopen");
        assert_eq!(report.truncated_bytes, 0, "a clean close cut the zeros");
        assert_eq!(read_all(&cfg, 0).into_iter().map(|(_, p)| p).collect::<Vec<_>>(), payloads);
    }

    #[test]
    fn a_crash_in_a_preallocated_segment_keeps_every_synced_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path());
        let payloads: Vec<Vec<u8>> = (0..12).map(|i| vec![b'c'; 30 + i]).collect();
        let (mut wal, _) = Wal::open(cfg.clone()).expect("open");
        wal.append(&payloads).expect("append");
        wal.sync().expect("sync");
        let active = wal.active_segment();
        assert!(active.first_lsn > 0, "the records rolled into a spare");
        std::mem::forget(wal); // dies: no final sync, no cut
        let (mut wal, report) = Wal::open(cfg.clone()).expect("recover");
        assert_eq!(report.next_lsn, 12);
        assert_eq!(report.truncated_bytes, cfg.segment_bytes - active.bytes, "only the zeros are cut");
        assert_eq!(fs::metadata(&active.path).expect("metadata").len(), active.bytes);
        assert_eq!(wal.append(&[b"after"]).expect("append"), 12..13);
        wal.sync().expect("sync");
        assert_eq!(read_all(&cfg, 0).len(), 13);
    }

    #[test]
    fn confirmed_segments_become_the_next_spares_and_their_old_records_never_return() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = WalConfig { recycled_segments: 2, ..config(dir.path()) };
        let inode = |path: &std::path::Path| fs::metadata(path).expect("metadata").ino();
        let (mut wal, _) = Wal::open(cfg.clone()).expect("open");
        let first: Vec<Vec<u8>> = (0..40).map(|i| vec![b'a' + (i % 26) as u8; 30 + i as usize]).collect();
        wal.append(&first).expect("append");
        wal.sync().expect("sync");
        let released: Vec<u64> =
            segment::list_segments(dir.path()).expect("list")[..3].iter().map(|s| inode(&s.path)).collect();
        let fourth = segment::list_segments(dir.path()).expect("list")[3].first_lsn;
        for consumer in ["lake", "amplitude"] {
            wal.confirm(consumer, fourth).expect("confirm");
        }
        let recycled: Vec<PathBuf> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_str().is_some_and(|p| p.contains("recycled-")))
            .collect();
        assert_eq!(recycled.len(), 2, "two kept, the third deleted");
        assert!(recycled.iter().all(|p| released.contains(&inode(p))));

        // The next rolls fill the kept files in place, so their inodes come back as segments.
        let second: Vec<Vec<u8>> = (0..12).map(|i| vec![b'z'; 20 + i]).collect();
        wal.append(&second).expect("append");
        wal.sync().expect("sync");
        let reused: Vec<SegmentInfo> = segment::list_segments(dir.path())
            .expect("list")
            .into_iter()
            .filter(|s| released.contains(&inode(&s.path)))
            .collect();
        assert_eq!(reused.len(), 2, "both kept files are segments again");
        let active = wal.active_segment();
        assert!(reused.iter().any(|s| s.path == active.path), "the active segment is a reused file");

        // Dies in the reused file: what follows its records is zeros, not the old records.
        std::mem::forget(wal);
        let tail = fs::read(&active.path).expect("read")[active.bytes as usize..].to_vec();
        assert_eq!(tail.len() as u64, cfg.segment_bytes - active.bytes);
        assert!(tail.iter().all(|&b| b == 0), "the reused file was zero-filled past its new records");
        let (_, report) = Wal::open(cfg.clone()).expect("recover");
        assert_eq!(report.next_lsn, 52);
        assert_eq!(report.truncated_bytes, tail.len() as u64);
        let read: Vec<Vec<u8>> = read_all(&cfg, fourth).into_iter().map(|(_, p)| p).collect();
        assert_eq!(read, [&first[fourth as usize..], &second[..]].concat());
    }

    #[test]
    fn without_preallocation_nothing_is_recycled_and_leftovers_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("recycled-00000000000000000123.spare"), b"an earlier run's").expect("write");
        let cfg = WalConfig { preallocate: false, ..config(dir.path()) };
        let (mut wal, _) = Wal::open(cfg).expect("open");
        wal.append(&vec![vec![b'n'; 60]; 20]).expect("append");
        wal.sync().expect("sync");
        for consumer in ["lake", "amplitude"] {
            wal.confirm(consumer, 20).expect("confirm");
        }
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        assert!(names.iter().all(|n| !n.contains("recycled")), "{names:?}");
    }

    #[test]
    fn segments_left_by_an_unfinished_deletion_go_at_the_next_confirmation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path());
        let segment_files = || segment::list_segments(dir.path()).expect("list").len();
        let payloads: Vec<Vec<u8>> = (0..40).map(|i| vec![b'x'; 30 + i]).collect();
        let saved: Vec<(PathBuf, Vec<u8>)> = {
            let (mut wal, _) = Wal::open(cfg.clone()).expect("open");
            wal.append(&payloads).expect("append");
            wal.sync().expect("sync");
            let saved = segment::list_segments(dir.path())
                .expect("list")
                .into_iter()
                .map(|s| (s.path.clone(), fs::read(&s.path).expect("read")))
                .collect();
            for consumer in ["lake", "amplitude"] {
                wal.confirm(consumer, 20).expect("confirm");
            }
            saved
        };
        let after_confirm = segment_files();
        // The process died before the deletions reached the disk.
        for (path, bytes) in &saved {
            if !path.exists() {
                fs::write(path, bytes).expect("restore");
            }
        }
        let (mut wal, _) = Wal::open(cfg.clone()).expect("reopen");
        assert!(segment_files() > after_confirm);
        for consumer in ["lake", "amplitude"] {
            wal.confirm(consumer, 21).expect("confirm");
        }
        assert!(segment_files() <= after_confirm, "the leftovers are deleted");
        assert_eq!(read_all(&cfg, 21).len(), 19, "nothing unconfirmed was deleted");
    }

    #[test]
    fn segments_are_deleted_only_after_every_consumer_confirms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path());
        let (mut wal, _) = Wal::open(cfg.clone()).expect("open");
        let payloads: Vec<Vec<u8>> = (0..40).map(|i| vec![b'x'; 30 + i]).collect();
        wal.append(&payloads).expect("append");
        wal.sync().expect("sync");
        let segments = wal.segment_count();
        assert_eq!(wal.confirm("lake", 40).expect("confirm"), 0, "amplitude has not confirmed");
        assert_eq!(wal.segment_count(), segments);
        assert!(wal.confirm("amplitude", 20).expect("confirm") > 0);
        assert!(wal.oldest_lsn() <= 20, "records not confirmed by everyone are kept");
        assert!(wal.oldest_lsn() > 0);
        wal.confirm("amplitude", 40).expect("confirm");
        assert_eq!(wal.segment_count(), 1, "the active segment always stays");
        assert!(matches!(wal.confirm("nobody", 1), Err(WalError::UnknownConsumer(_))));
        drop(wal);
        // LSNs keep counting from where they were, and cursors persist.
        let (mut wal, report) = Wal::open(cfg.clone()).expect("reopen");
        assert_eq!(report.next_lsn, 40);
        assert_eq!(wal.cursors().position("lake"), Some(40));
        assert_eq!(wal.append(&[b"next"]).expect("append"), 40..41);
        let err = WalReader::open(&cfg.dir, 0, u64::MAX, cfg.max_record_bytes).expect_err("truncated");
        assert!(matches!(err, WalError::Truncated { .. }), "{err}");
    }

    #[test]
    fn nothing_is_deleted_without_consumers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = WalConfig { consumers: vec![], ..config(dir.path()) };
        let (mut wal, _) = Wal::open(cfg).expect("open");
        wal.append(&vec![vec![b'y'; 100]; 10]).expect("append");
        let segments = wal.segment_count();
        assert!(matches!(wal.confirm("lake", 10), Err(WalError::UnknownConsumer(_))));
        assert_eq!(wal.segment_count(), segments);
    }

    #[test]
    fn an_oversized_record_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = WalConfig { max_record_bytes: 10, ..config(dir.path()) };
        let (mut wal, _) = Wal::open(cfg).expect("open");
        let err = wal.append(&[&b"ok"[..], &[0u8; 11][..]]).expect_err("too large");
        assert!(matches!(err, WalError::RecordTooLarge { len: 11, max: 10 }));
        assert_eq!(wal.next_lsn(), 0);
        assert_eq!(wal.disk_bytes(), SEGMENT_HEADER_BYTES);
    }
}
