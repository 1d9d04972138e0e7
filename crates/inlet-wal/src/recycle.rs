//! Recycled segments: confirmed segment files kept to be zero-filled in place as the next
//! spares, instead of being deleted while new files are filled.
//!
//! Both halves of the old cycle cost more than reusing a file. Deleting a confirmed segment
//! frees its blocks, which on a disk mounted with online `discard` holds the log's `fdatasync`s
//! (see `reaper`); filling a new file allocates every block and page again. Measured on our
//! test machine (64 MiB, 1 MiB `pwrite` + `fdatasync` at a time, `docs/bench-log/2026-11-to-12.md`): 17–24 ms
//! of CPU for a new file against 8–9 ms for one overwritten in place, and beside the gateway
//! under load 21–198 ms against 10 ms. PostgreSQL recycles its WAL segments for the same
//! reasons.
//!
//! ## Invariants and on-disk form
//! - A recycled file is `{dir}/recycled-{first LSN, 20 digits}.spare`, named after the segment
//!   it was. The name is not a segment's, so no listing or reader sees it; what it holds is an
//!   old segment's records, wholly below every cursor, so nothing depends on it.
//! - A segment becomes a recycled file only after the cursors that release it are persisted
//!   (the reaper's invariant), and by a rename followed by a directory fsync, done before the
//!   file is handed to the spare thread. So no zero is written into a file that a crash could
//!   leave under a segment's name: after a crash a file is either still the confirmed segment
//!   (released again at the next confirmation) or a recycled file.
//! - The spare thread renames a recycled file to the spare's name before writing to it, then
//!   overwrites it with zeros from offset 0 to `segment_bytes` (and cuts anything beyond): from
//!   then on it is a spare like a new one, zeros only, and follows the spare's invariants
//!   (see `spare`). A crash while it is filled leaves a spare, which the next open deletes.
//! - At most `limit` files are kept; a segment released beyond that is deleted as before. On
//!   open, recycled files left by an earlier run are kept up to the limit (their contents do
//!   not matter, they are filled in full before use) and the rest deleted.
//! - Disk: the kept files take up to `limit × segment_bytes` beyond the records counted in the
//!   WAL's budget.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::error::{Result, WalError};
use crate::segment::sync_dir;

const PREFIX: &str = "recycled-";
const SUFFIX: &str = ".spare";

/// The files kept for reuse, shared by the reaper (which offers them) and the spare thread
/// (which takes them).
#[derive(Debug)]
pub(crate) struct RecycledSegments {
    dir: PathBuf,
    limit: usize,
    files: Mutex<Vec<PathBuf>>,
}

impl RecycledSegments {
    /// Adopts the recycled files an earlier run left, up to `limit`, and deletes the rest.
    pub(crate) fn open(dir: &Path, limit: usize) -> Result<RecycledSegments> {
        let listing = || WalError::io(format!("listing {}", dir.display()));
        let mut leftovers = Vec::new();
        for entry in fs::read_dir(dir).map_err(listing())? {
            let name = entry.map_err(listing())?.file_name();
            if name.to_str().is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX)) {
                leftovers.push(dir.join(name));
            }
        }
        leftovers.sort();
        let extra = leftovers.split_off(limit.min(leftovers.len()));
        for path in &extra {
            fs::remove_file(path).map_err(WalError::io(format!("deleting {}", path.display())))?;
        }
        if !extra.is_empty() {
            sync_dir(dir)?;
        }
        Ok(RecycledSegments { dir: dir.to_owned(), limit, files: Mutex::new(leftovers) })
    }

    /// Keeps a released segment for reuse if there is room: renamed out of the segments'
    /// namespace, durably, before anyone may write to it. `false`: no room, delete it.
    pub(crate) fn offer(&self, segment: &Path) -> Result<bool> {
        if self.files().len() >= self.limit {
            return Ok(false);
        }
        let Some(stem) = segment.file_stem().and_then(|s| s.to_str()) else { return Ok(false) };
        let recycled = self.dir.join(format!("{PREFIX}{stem}{SUFFIX}"));
        fs::rename(segment, &recycled).map_err(WalError::io(format!(
            "recycling {} as {}",
            segment.display(),
            recycled.display()
        )))?;
        sync_dir(&self.dir)?;
        self.files().push(recycled);
        Ok(true)
    }

    /// A kept file to fill as the next spare, if there is one.
    pub(crate) fn take(&self) -> Option<PathBuf> {
        self.files().pop()
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        // The list is a plain Vec whose every update is one push or pop: never half-changed.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn keeps_released_segments_up_to_the_limit_under_names_no_listing_sees() {
        let dir = tempfile::tempdir().expect("dir");
        let recycled = RecycledSegments::open(dir.path(), 2).expect("open");
        let segments: Vec<PathBuf> = (0..3).map(|i| crate::segment::segment_path(dir.path(), i * 10)).collect();
        for segment in &segments {
            fs::write(segment, b"records").expect("write");
        }
        assert!(recycled.offer(&segments[0]).expect("offer"));
        assert!(recycled.offer(&segments[1]).expect("offer"));
        assert!(!recycled.offer(&segments[2]).expect("offer"), "the limit is reached");
        assert_eq!(
            names(dir.path()),
            ["00000000000000000020.wal", "recycled-00000000000000000000.spare", "recycled-00000000000000000010.spare"]
        );
        assert_eq!(crate::segment::list_segments(dir.path()).expect("list").len(), 1);
        let taken = recycled.take().expect("a kept file");
        assert!(taken.exists());
        assert!(recycled.offer(&segments[2]).expect("offer"), "taking one made room");
    }

    #[test]
    fn an_earlier_runs_files_are_adopted_up_to_the_limit_and_the_rest_deleted() {
        let dir = tempfile::tempdir().expect("dir");
        for i in 0..3 {
            fs::write(dir.path().join(format!("recycled-{i:020}.spare")), b"old records").expect("write");
        }
        fs::write(dir.path().join("00000000000000000007.wal"), b"a segment").expect("write");
        let recycled = RecycledSegments::open(dir.path(), 2).expect("open");
        assert_eq!(names(dir.path()).len(), 3, "one recycled file deleted, the segment untouched");
        assert!(recycled.take().is_some() && recycled.take().is_some());
        assert_eq!(recycled.take(), None);

        RecycledSegments::open(dir.path(), 0).expect("open without recycling");
        assert_eq!(names(dir.path()), ["00000000000000000007.wal"]);
    }
}
