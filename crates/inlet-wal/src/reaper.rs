//! Releasing confirmed segments: recycled as spares up to a limit (see `recycle`), else deleted.
//!
//! Unlinking a segment frees its cached pages: about 16 ms per 64 MiB segment on our test
//! disk. On the writer thread that stalls every append queued behind it; measured, each lake
//! confirmation (four segments at a time) paused acknowledgements for 50–100 ms and caused
//! 429s at half load. So under a [`crate::WalHandle`] a thread of its own deletes them.
//!
//! Freeing a segment's blocks also competes with the writer's `fdatasync` for the disk: on a
//! virtio disk mounted with online `discard`, unlinking 64 MiB took 16–27 ms and the log's
//! syncs meanwhile took 11–17 ms; deleting 2 GiB at once held some syncs for 50–90 ms. So the
//! reaper thread first shrinks each segment [`SHRINK_STEP_BYTES`] at a time, pausing
//! [`SHRINK_PAUSE`] between steps, and unlinks it once only its header is left: the disk sees
//! many small frees with room for the log's syncs between them (`docs/bench-log/2026-11-to-12.md`).
//!
//! Invariant: a segment is handed over only once the cursors that release it are persisted,
//! so deleting it later (or never, if the process dies first) loses nothing. After a crash the
//! leftover segments lie wholly below every cursor and the next confirmation deletes them. A
//! leftover may have been cut short, but never below its header: like any segment but the
//! newest it is not scanned at open, and a consumer configured for the first time at that
//! restart (which starts at the oldest retained record) reads it up to the cut and reports
//! the rest as a gap, which is what that consumer's start would have skipped a moment later.
//! A bare [`crate::Wal`] deletes inline and at once, so its callers see the directory they
//! expect.
//!
//! With spare segments on, a released segment is first offered to the recycled files (see
//! `recycle`), up to their limit, and only the rest are shrunk and deleted: in steady state the
//! confirmed segments become the next spares and no block is freed at all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Result, WalError};
use crate::recycle::RecycledSegments;
use crate::segment::{SEGMENT_HEADER_BYTES, sync_dir};

/// How much of a segment one step frees. With 2 GiB deleted this way beside a loop of 16 KiB
/// appends and `fdatasync`s, the slowest sync took 10.7 ms, against 90 ms beside a plain
/// unlink of the same file.
pub(crate) const SHRINK_STEP_BYTES: u64 = 8 << 20;

/// The pause after each step, which leaves the disk to the log's syncs. A 64 MiB segment takes
/// eight steps, so a lake flush's four segments are gone in well under a second.
pub(crate) const SHRINK_PAUSE: Duration = Duration::from_millis(2);

#[derive(Debug)]
pub(crate) struct SegmentReaper {
    sender: Option<mpsc::Sender<Vec<PathBuf>>>,
    thread: Option<JoinHandle<()>>,
    recycled: Arc<RecycledSegments>,
}

impl SegmentReaper {
    /// Deletes (or recycles) inline, at once: a bare [`crate::Wal`].
    pub(crate) fn inline(recycled: Arc<RecycledSegments>) -> SegmentReaper {
        SegmentReaper { sender: None, thread: None, recycled }
    }

    /// Deletes on a thread of its own, which finishes its queue when the reaper is dropped.
    pub(crate) fn background(dir: PathBuf, recycled: Arc<RecycledSegments>) -> Result<SegmentReaper> {
        let (sender, receiver) = mpsc::channel::<Vec<PathBuf>>();
        let thread_recycled = recycled.clone();
        let thread = std::thread::Builder::new()
            .name("inlet-wal-reaper".into())
            .spawn(move || {
                for paths in receiver {
                    let paths = keep_for_reuse(&thread_recycled, paths);
                    for path in &paths {
                        if let Err(error) = shrink_gradually(path) {
                            tracing::warn!(%error, path = %path.display(), "shrinking a confirmed WAL segment failed; deleting it at once");
                        }
                    }
                    if let Err(error) = delete_now(&dir, &paths) {
                        tracing::error!(%error, "deleting confirmed WAL segments failed; the next confirmation after a restart retries");
                    }
                }
            })
            .map_err(WalError::io("starting the WAL segment reaper thread"))?;
        Ok(SegmentReaper { sender: Some(sender), thread: Some(thread), recycled })
    }

    /// Releases confirmed segments: recycled up to the limit, the rest deleted.
    pub(crate) fn release(&self, dir: &Path, paths: Vec<PathBuf>) -> Result<()> {
        let paths = match &self.sender {
            Some(sender) => match sender.send(paths) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(paths)) => paths,
            },
            None => paths,
        };
        delete_now(dir, &keep_for_reuse(&self.recycled, paths))
    }
}

/// Offers each segment for reuse and returns those that were not kept, to be deleted. A
/// failed offer is not fatal: that segment is deleted instead.
fn keep_for_reuse(recycled: &RecycledSegments, paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths
        .into_iter()
        .filter(|path| match recycled.offer(path) {
            Ok(kept) => !kept,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "recycling a confirmed WAL segment failed; deleting it");
                path.exists()
            }
        })
        .collect()
}

impl Drop for SegmentReaper {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Cuts the segment down to its header a step at a time (see the module doc).
fn shrink_gradually(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut length = file.metadata()?.len();
    while length > SEGMENT_HEADER_BYTES {
        length = length.saturating_sub(SHRINK_STEP_BYTES).max(SEGMENT_HEADER_BYTES);
        file.set_len(length)?;
        std::thread::sleep(SHRINK_PAUSE);
    }
    Ok(())
}

fn delete_now(dir: &Path, paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    for path in paths {
        std::fs::remove_file(path).map_err(WalError::io(format!("deleting {}", path.display())))?;
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_shrinks_in_steps_down_to_its_header_and_keeps_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("00000000000000000000.wal");
        let header: Vec<u8> = (0..SEGMENT_HEADER_BYTES as u8).collect();
        let mut contents = header.clone();
        contents.resize((2 * SHRINK_STEP_BYTES + 12_345) as usize, 7);
        std::fs::write(&path, &contents).expect("write");

        let started = std::time::Instant::now();
        shrink_gradually(&path).expect("shrink");

        assert_eq!(std::fs::read(&path).expect("read"), header, "only the header is left");
        assert!(started.elapsed() >= 3 * SHRINK_PAUSE, "three steps, each followed by a pause");
        shrink_gradually(&path).expect("a header-only segment is left as it is");
        assert_eq!(std::fs::read(&path).expect("read"), header);
    }
}
