//! Segment files: naming, the 24-byte header, listing, and scanning for the last good record.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::record::{Decoded, decode_record};

const MAGIC: &[u8; 8] = b"INLETWAL";
const FORMAT_VERSION: u32 = 1;
/// Bytes of the header at the start of every segment file.
pub const SEGMENT_HEADER_BYTES: u64 = 24;
const SEGMENT_SUFFIX: &str = ".wal";

/// A segment known to exist on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub first_lsn: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

pub(crate) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}{SEGMENT_SUFFIX}"))
}

fn header(first_lsn: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    h
}

/// Creates a new, empty segment, durable (file and directory entry) before it returns.
pub(crate) fn create_segment(dir: &Path, first_lsn: u64) -> Result<(File, SegmentInfo)> {
    let path = segment_path(dir, first_lsn);
    let mut file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(WalError::io(format!("creating segment {}", path.display())))?;
    file.write_all(&header(first_lsn))
        .and_then(|()| file.sync_all())
        .map_err(WalError::io(format!("writing header of {}", path.display())))?;
    sync_dir(dir)?;
    Ok((file, SegmentInfo { first_lsn, path, bytes: SEGMENT_HEADER_BYTES }))
}

/// Turns a zero-filled spare into a new segment: header written and synced first, then the
/// rename and a directory fsync, so a file under a segment's name always has its header.
pub(crate) fn name_spare(dir: &Path, spare: &Path, first_lsn: u64) -> Result<(File, SegmentInfo)> {
    let path = segment_path(dir, first_lsn);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(spare)
        .and_then(|file| file.write_all_at(&header(first_lsn), 0).and_then(|()| file.sync_data()).map(|()| file))
        .and_then(|file| fs::rename(spare, &path).map(|()| file))
        .map_err(WalError::io(format!("making {} from the spare segment", path.display())))?;
    sync_dir(dir)?;
    Ok((file, SegmentInfo { first_lsn, path, bytes: SEGMENT_HEADER_BYTES }))
}

/// Makes directory entries (creations, renames, deletions) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(WalError::io(format!("syncing directory {}", dir.display())))
}

/// Lists the segments in `dir`, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(WalError::io(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(WalError::io(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        let Some(first_lsn) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = match entry.metadata() {
            Ok(metadata) => metadata.len(),
            // Deleted (confirmed by every consumer) since the listing began: no longer there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(WalError::io(format!("reading metadata of {}", entry.path().display()))(e)),
        };
        segments.push(SegmentInfo { first_lsn, path: entry.path(), bytes });
    }
    segments.sort_by_key(|s| s.first_lsn);
    Ok(segments)
}

/// Opens a segment for reading and checks its header against its name.
pub(crate) fn open_and_check_header(segment: &SegmentInfo) -> Result<File> {
    let path = &segment.path;
    let mut file = File::open(path).map_err(WalError::io(format!("opening {}", path.display())))?;
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    file.read_exact(&mut h).map_err(|_| WalError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: "file shorter than the segment header".into(),
    })?;
    let corrupt = |reason: &str| WalError::Corrupt { path: path.clone(), offset: 0, reason: reason.into() };
    if &h[..8] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(corrupt(&format!("unsupported format version {version}")));
    }
    let first_lsn = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    if first_lsn != segment.first_lsn {
        return Err(corrupt("first LSN in the header differs from the file name"));
    }
    Ok(file)
}

/// The result of scanning a segment from its header to its last verifying record.
#[derive(Debug)]
pub(crate) struct ScanResult {
    pub records: u64,
    /// Byte offset just past the last good record.
    pub valid_end: u64,
    /// Why scanning stopped before the end of the file, if it did.
    pub stopped: Option<&'static str>,
    /// Whatever follows the last good record is zeros (unused space of a spare), not a torn write.
    pub tail_is_zeros: bool,
}

/// Counts the good records of a segment and finds where they end.
pub(crate) fn scan_segment(segment: &SegmentInfo, max_record_bytes: usize) -> Result<ScanResult> {
    let mut file = open_and_check_header(segment)?;
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(SEGMENT_HEADER_BYTES))
        .and_then(|_| file.read_to_end(&mut data))
        .map_err(WalError::io(format!("reading {}", segment.path.display())))?;
    let mut offset = 0usize;
    let mut records = 0u64;
    let mut stopped = None;
    while offset < data.len() {
        match decode_record(&data[offset..], max_record_bytes) {
            Decoded::Record { framed_len, .. } => {
                offset += framed_len;
                records += 1;
            }
            Decoded::Incomplete => {
                stopped = Some("incomplete record");
                break;
            }
            Decoded::Invalid(reason) => {
                stopped = Some(reason);
                break;
            }
        }
    }
    let tail_is_zeros = data[offset..].iter().all(|&b| b == 0);
    Ok(ScanResult { records, valid_end: SEGMENT_HEADER_BYTES + offset as u64, stopped, tail_is_zeros })
}
