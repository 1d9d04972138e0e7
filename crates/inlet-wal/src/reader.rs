//! Reading records back by LSN, independently of the writer (own file handles).

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use crate::error::{Result, WalError};
use crate::record::RECORD_HEADER_BYTES;
use crate::segment::{self, SegmentInfo};

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: u64,
    pub payload: Vec<u8>,
}

/// Iterates records from an LSN up to (excluding) a bound, across segments.
///
/// Pass the writer's durable LSN as the bound while the log is live, so a record that is still
/// being written is never seen. A damaged record in an older segment (possible only under the
/// weaker fsync policies after a crash) is logged and skipped to the next segment; in the
/// newest segment it ends the iteration.
#[derive(Debug)]
pub struct WalReader {
    segments: Vec<SegmentInfo>,
    index: usize,
    file: Option<BufReader<File>>,
    next_lsn: u64,
    from_lsn: u64,
    upto_lsn: u64,
    max_record_bytes: usize,
}

impl WalReader {
    /// Opens a reader positioned at `from_lsn`.
    pub fn open(dir: &Path, from_lsn: u64, upto_lsn: u64, max_record_bytes: usize) -> Result<WalReader> {
        let segments = segment::list_segments(dir)?;
        let oldest = segments.first().map_or(0, |s| s.first_lsn);
        if from_lsn < oldest {
            return Err(WalError::Truncated { requested: from_lsn, oldest });
        }
        let index = segments.iter().rposition(|s| s.first_lsn <= from_lsn).unwrap_or(0);
        Ok(WalReader { segments, index, file: None, next_lsn: 0, from_lsn, upto_lsn, max_record_bytes })
    }

    fn open_current(&mut self) -> Result<()> {
        let info = &self.segments[self.index];
        let file = segment::open_and_check_header(info).map_err(|e| match e {
            WalError::Io { source, .. } if source.kind() == ErrorKind::NotFound => {
                WalError::Truncated { requested: info.first_lsn, oldest: info.first_lsn + 1 }
            }
            other => other,
        })?;
        self.file = Some(BufReader::with_capacity(256 * 1024, file));
        self.next_lsn = info.first_lsn;
        Ok(())
    }

    /// Reads the next record of the current segment; `None` at its end or at damage.
    fn read_in_segment(&mut self) -> Result<Option<Record>> {
        let is_newest = self.index + 1 == self.segments.len();
        let info = &self.segments[self.index];
        let file = self.file.as_mut().expect("segment is open");
        let mut header = [0u8; RECORD_HEADER_BYTES];
        match read_full(file, &mut header) {
            Ok(0) => return Ok(None),
            Ok(n) if n < RECORD_HEADER_BYTES => return Ok(self.damaged(is_newest, "incomplete record header")),
            Ok(_) => {}
            Err(e) => return Err(WalError::io(format!("reading {}", info.path.display()))(e)),
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len > self.max_record_bytes {
            return Ok(self.damaged(is_newest, "length over the record limit"));
        }
        let mut payload = vec![0u8; len];
        match read_full(file, &mut payload) {
            Ok(n) if n < len => return Ok(self.damaged(is_newest, "incomplete record")),
            Ok(_) => {}
            Err(e) => return Err(WalError::io(format!("reading {}", info.path.display()))(e)),
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..4]), &payload);
        if crc != u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) {
            return Ok(self.damaged(is_newest, "CRC mismatch"));
        }
        let record = Record { lsn: self.next_lsn, payload };
        self.next_lsn += 1;
        Ok(Some(record))
    }

    fn damaged(&self, is_newest: bool, reason: &'static str) -> Option<Record> {
        if !is_newest {
            let info = &self.segments[self.index];
            let next_first = self.segments[self.index + 1].first_lsn;
            tracing::error!(
                segment = %info.path.display(),
                reason,
                lost_records = next_first.saturating_sub(self.next_lsn),
                "damaged record in a closed segment; continuing at the next segment"
            );
        }
        None
    }
}

impl Iterator for WalReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.index >= self.segments.len() {
                return None;
            }
            if self.file.is_none()
                && let Err(e) = self.open_current()
            {
                self.index = self.segments.len();
                return Some(Err(e));
            }
            match self.read_in_segment() {
                Err(e) => {
                    self.index = self.segments.len();
                    return Some(Err(e));
                }
                Ok(Some(record)) if record.lsn >= self.upto_lsn => {
                    self.index = self.segments.len();
                    return None;
                }
                Ok(Some(record)) if record.lsn < self.from_lsn => continue,
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => {
                    self.file = None;
                    self.index += 1;
                }
            }
        }
    }
}

/// Reads until `buf` is full or the end of the file; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
