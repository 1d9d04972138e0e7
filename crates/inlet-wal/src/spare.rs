//! Spare segments: files zero-filled to the full segment size before they are needed.
//!
//! Appending to a file that grows makes every `fdatasync` write the inode as well (the size
//! changed). Measured on our test disk (ext4, virtio), 300-byte append + `fdatasync`: 136 µs
//! and 63 µs of CPU on a growing file, 97 µs and 47 µs on a zero-filled one; 30 KiB appends:
//! 211 → 125 µs. `fallocate` alone helps small writes only: the extents it reserves are
//! "unwritten", and the first write to each block converts one, which is again metadata.
//! So a segment is written with zeros, fsynced (data and size), and only then named.
//!
//! ## Invariants and on-disk form
//! - The spare is `{dir}/next-segment.spare`: zeros only, and never listed as a segment (the
//!   name does not match). A spare left by a crash may be half-written, so opening the log
//!   deletes it rather than trusting it.
//! - A spare becomes a segment only after its header is written and synced, and then by a
//!   rename followed by a directory fsync ([`crate::segment::name_spare`]), so a file with a
//!   segment's name always has a valid header.
//! - A segment made from a spare is longer than its records: the rest is zeros, which never
//!   verify as a record (the CRC of a zero length is not zero). Recovery cuts that tail like a
//!   torn one; a clean close and a roll to the next segment truncate it, so closed segments end
//!   at their last record, as before.
//! - A spare is a recycled segment overwritten with zeros in place when one is kept (see
//!   `recycle`), and a new file otherwise; either way it is zeros only, `segment_bytes` long,
//!   data and size synced, before the writer may take it.
//! - Disk accounting (`disk_bytes`, the budget) counts records, not the zeros ahead of them:
//!   the files take up to two `segment_bytes` more (the active segment's unused part, and the
//!   spare), plus the recycled files kept.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{Result, WalError};
use crate::recycle::RecycledSegments;

const SPARE_NAME: &str = "next-segment.spare";
/// Zeros written and synced at a time. The log's own `fdatasync`s queue behind a chunk's, so
/// the chunk bounds how long one of them waits (1 MiB chunks, back to back, held the log's
/// syncs for long enough to show as 20–120 ms stalls of every request; `docs/bench-log/2026-11-to-12.md`).
const ZEROS_PER_WRITE: usize = 256 * 1024;

/// Where the next segment's file comes from.
#[derive(Debug, Default)]
pub(crate) enum SpareSegments {
    /// New segments start empty and grow.
    #[default]
    Off,
    /// Zero-filled when needed, on the caller's thread (a bare [`crate::Wal`]: tests, tools).
    Inline { dir: PathBuf, segment_bytes: u64, recycled: Arc<RecycledSegments> },
    /// Prepared by a thread of its own once the active segment is half full (at once if it
    /// grows), so a roll does not wait for zero-filling; if the spare is not ready by then, the
    /// segment starts empty and grows until one is.
    Background {
        requests: Option<mpsc::Sender<()>>,
        ready: mpsc::Receiver<Result<PathBuf>>,
        requested: bool,
        thread: Option<JoinHandle<()>>,
    },
}

impl SpareSegments {
    /// Deletes a spare left by an earlier run.
    pub(crate) fn discard_leftover(dir: &Path) -> Result<()> {
        match fs::remove_file(dir.join(SPARE_NAME)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(WalError::io("deleting the leftover spare segment")(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn background(
        dir: PathBuf,
        segment_bytes: u64,
        recycled: Arc<RecycledSegments>,
    ) -> Result<SpareSegments> {
        let (requests, wanted) = mpsc::channel::<()>();
        let (done, ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("inlet-wal-spare".into())
            .spawn(move || {
                for () in wanted {
                    let started = Instant::now();
                    let prepared = zero_fill(&dir, segment_bytes, &recycled);
                    tracing::debug!(ms = started.elapsed().as_millis() as u64, "spare WAL segment prepared");
                    if done.send(prepared).is_err() {
                        return;
                    }
                }
            })
            .map_err(WalError::io("starting the WAL spare segment thread"))?;
        Ok(SpareSegments::Background { requests: Some(requests), ready, requested: false, thread: Some(thread) })
    }

    /// Called as the active segment fills: from half full on, the next spare is prepared. An
    /// active segment that `grows` (it did not start as a spare: the first one, or one started
    /// when no spare was ready) wants a spare at once, to move onto it early.
    pub(crate) fn active_filled(&mut self, bytes: u64, segment_bytes: u64, grows: bool) {
        if let SpareSegments::Background { requests: Some(requests), requested: requested @ false, .. } = self
            && (grows || bytes >= segment_bytes / 2)
        {
            *requested = requests.send(()).is_ok();
        }
    }

    /// A zero-filled, synced file to name as the next segment, if one is ready.
    pub(crate) fn take(&mut self) -> Option<PathBuf> {
        match self {
            SpareSegments::Off => None,
            SpareSegments::Inline { dir, segment_bytes, recycled } => usable(zero_fill(dir, *segment_bytes, recycled)),
            SpareSegments::Background { .. } => self.take_ready(),
        }
    }

    /// The spare prepared in the background, if it is ready; never waits, never zero-fills here.
    pub(crate) fn take_ready(&mut self) -> Option<PathBuf> {
        let SpareSegments::Background { ready, requested, .. } = self else { return None };
        let prepared = ready.try_recv().ok()?;
        *requested = false;
        usable(prepared)
    }
}

/// A spare that failed to be prepared is not fatal: the next segment grows as written.
fn usable(prepared: Result<PathBuf>) -> Option<PathBuf> {
    prepared.inspect_err(|error| tracing::warn!(%error, "no spare WAL segment; the next one grows as written")).ok()
}

impl Drop for SpareSegments {
    fn drop(&mut self) {
        if let SpareSegments::Background { requests, thread, .. } = self {
            requests.take();
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Writes the spare: `segment_bytes` of zeros, data and size synced, over a recycled file if
/// one is kept (renamed first, so a crash meanwhile leaves a spare, deleted at the next open).
fn zero_fill(dir: &Path, segment_bytes: u64, recycled: &RecycledSegments) -> Result<PathBuf> {
    let path = dir.join(SPARE_NAME);
    let failed = |source| WalError::Io { context: format!("preparing {}", path.display()), source };
    let reused = recycled.take();
    if let Some(old) = &reused {
        fs::rename(old, &path).map_err(failed)?;
    }
    let mut file =
        OpenOptions::new().create(true).write(true).truncate(reused.is_none()).open(&path).map_err(failed)?;
    let zeros = vec![0u8; ZEROS_PER_WRITE];
    let mut left = segment_bytes;
    while left > 0 {
        let n = left.min(ZEROS_PER_WRITE as u64) as usize;
        // Synced a chunk at a time: one sync of the whole segment at the end would hold the
        // disk for tens of milliseconds, and the log's own syncs would queue behind it. Then
        // idle for as long as the chunk took, so the log has the disk at least half the time
        // however slow the disk is right now (on the test machine a new file took 90–1,240 ms
        // to fill, a recycled one 40–50 ms).
        let started = Instant::now();
        file.write_all(&zeros[..n]).and_then(|()| file.sync_data()).map_err(failed)?;
        left -= n as u64;
        std::thread::sleep(started.elapsed());
    }
    // A recycled segment may have been longer (a record larger than the rest of a segment).
    file.set_len(segment_bytes).and_then(|()| file.sync_all()).map_err(failed)?;
    Ok(path)
}

/// The physical length of an open file.
pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file.metadata().map_err(WalError::io(format!("reading metadata of {}", path.display())))?.len())
}
