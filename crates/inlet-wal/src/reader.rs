//! Reading records back by LSN, independently of the writer (own file handles), one record at
//! a time or in chunks of consecutive records.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom};
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

/// Records read back together, their payloads in one buffer: a consumer that takes records by
/// the thousand (the lake writer) then pays one allocation per chunk instead of one per record,
/// and reads each payload from one contiguous buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordChunk {
    payloads: Vec<u8>,
    /// Per record: its LSN and where its payload ends in `payloads`.
    records: Vec<(u64, usize)>,
}

impl RecordChunk {
    pub fn with_capacity(records: usize, payload_bytes: usize) -> RecordChunk {
        RecordChunk { payloads: Vec::with_capacity(payload_bytes), records: Vec::with_capacity(records) }
    }

    /// Appends a record (tests and benchmarks make chunks this way; the reader reads into one).
    pub fn push(&mut self, lsn: u64, payload: &[u8]) {
        self.payloads.extend_from_slice(payload);
        self.records.push((lsn, self.payloads.len()));
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Payload bytes in the chunk.
    pub fn payload_bytes(&self) -> usize {
        self.payloads.len()
    }

    /// The LSN of its last record.
    pub fn last_lsn(&self) -> Option<u64> {
        self.records.last().map(|&(lsn, _)| lsn)
    }

    /// The records in LSN order: each one's LSN and payload.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let starts = std::iter::once(0).chain(self.records.iter().map(|&(_, end)| end));
        self.records.iter().zip(starts).map(|(&(lsn, end), start)| (lsn, &self.payloads[start..end]))
    }
}

/// Where a reader stopped, to start the next one there without reading the segment from its
/// first record (a consumer that reads a window at a time: the destinations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPosition {
    segment_first_lsn: u64,
    /// Byte offset of the record `next_lsn` in that segment's file.
    offset: u64,
    pub next_lsn: u64,
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
    /// Byte offset of the next record in the current segment's file.
    offset: u64,
    /// The last read met the clean end of the current segment's file.
    clean_end: bool,
    stopped_at: Option<ReadPosition>,
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
        Ok(WalReader {
            segments,
            index,
            file: None,
            next_lsn: 0,
            from_lsn,
            upto_lsn,
            max_record_bytes,
            offset: 0,
            clean_end: false,
            stopped_at: None,
        })
    }

    /// Opens a reader where an earlier one stopped ([`WalReader::stopped_at`]); if that
    /// segment is gone, as [`WalReader::open`] at its LSN (which reports a truncation).
    pub fn open_at(dir: &Path, position: ReadPosition, upto_lsn: u64, max_record_bytes: usize) -> Result<WalReader> {
        let mut reader = WalReader::open(dir, position.next_lsn, upto_lsn, max_record_bytes)?;
        let Some(index) = reader.segments.iter().position(|s| s.first_lsn == position.segment_first_lsn) else {
            return Ok(reader);
        };
        let info = &reader.segments[index];
        let mut file = BufReader::with_capacity(256 * 1024, segment::open_and_check_header(info)?);
        file.seek(SeekFrom::Start(position.offset))
            .map_err(WalError::io(format!("seeking {}", info.path.display())))?;
        reader.index = index;
        reader.file = Some(file);
        reader.offset = position.offset;
        reader.next_lsn = position.next_lsn;
        Ok(reader)
    }

    /// Where this reader stopped, if it stopped cleanly at its bound or at the end of the log:
    /// the next reader can start there with [`WalReader::open_at`].
    pub fn stopped_at(&self) -> Option<ReadPosition> {
        self.stopped_at
    }

    fn open_current(&mut self) -> Result<()> {
        let info = &self.segments[self.index];
        let file = segment::open_and_check_header(info).map_err(|e| match e {
            WalError::Io { source, .. } if source.kind() == ErrorKind::NotFound => {
                WalError::Truncated { requested: info.first_lsn, oldest: info.first_lsn + 1 }
            }
            other => other,
        })?;
        let mut file = BufReader::with_capacity(256 * 1024, file);
        self.offset = file.stream_position().map_err(WalError::io(format!("reading {}", info.path.display())))?;
        self.file = Some(file);
        self.next_lsn = info.first_lsn;
        Ok(())
    }

    /// Reads the next record of the current segment, appending its payload to `out`, and
    /// answers its LSN; `None` at the segment's end or at damage (`out` is then as it was).
    fn read_in_segment(&mut self, out: &mut Vec<u8>) -> Result<Option<u64>> {
        let is_newest = self.index + 1 == self.segments.len();
        let info = &self.segments[self.index];
        let file = self.file.as_mut().expect("segment is open");
        let mut header = [0u8; RECORD_HEADER_BYTES];
        self.clean_end = false;
        match read_full(file, &mut header) {
            Ok(0) => {
                self.clean_end = true;
                return Ok(None);
            }
            Ok(n) if n < RECORD_HEADER_BYTES => return Ok(self.damaged(is_newest, "incomplete record header")),
            Ok(_) => {}
            Err(e) => return Err(WalError::io(format!("reading {}", info.path.display()))(e)),
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if len > self.max_record_bytes {
            return Ok(self.damaged(is_newest, "length over the record limit"));
        }
        let start = out.len();
        match read_appending(file, len, out) {
            Ok(n) if n < len => {
                out.truncate(start);
                return Ok(self.damaged(is_newest, "incomplete record"));
            }
            Ok(_) => {}
            Err(e) => {
                out.truncate(start);
                return Err(WalError::io(format!("reading {}", info.path.display()))(e));
            }
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..4]), &out[start..]);
        if crc != u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) {
            out.truncate(start);
            return Ok(self.damaged(is_newest, "CRC mismatch"));
        }
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.offset += (RECORD_HEADER_BYTES + len) as u64;
        Ok(Some(lsn))
    }

    fn damaged(&self, is_newest: bool, reason: &'static str) -> Option<u64> {
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

impl WalReader {
    /// Reads the next record in range, appending its payload to `out`; answers its LSN, or
    /// `None` at the end of the range or of the log. After an error the reader is done.
    fn next_into(&mut self, out: &mut Vec<u8>) -> Option<Result<u64>> {
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
            let start = out.len();
            match self.read_in_segment(out) {
                Err(e) => {
                    self.index = self.segments.len();
                    return Some(Err(e));
                }
                Ok(Some(lsn)) if lsn >= self.upto_lsn => {
                    let record_bytes = (RECORD_HEADER_BYTES + out.len() - start) as u64;
                    out.truncate(start);
                    self.stopped_at = Some(ReadPosition {
                        segment_first_lsn: self.segments[self.index].first_lsn,
                        offset: self.offset - record_bytes,
                        next_lsn: lsn,
                    });
                    self.index = self.segments.len();
                    return None;
                }
                Ok(Some(lsn)) if lsn < self.from_lsn => out.truncate(start),
                Ok(Some(lsn)) => return Some(Ok(lsn)),
                Ok(None) => {
                    if self.clean_end && self.index + 1 == self.segments.len() {
                        self.stopped_at = Some(ReadPosition {
                            segment_first_lsn: self.segments[self.index].first_lsn,
                            offset: self.offset,
                            next_lsn: self.next_lsn,
                        });
                    }
                    self.file = None;
                    self.index += 1;
                }
            }
        }
    }

    /// The records in chunks of up to `max_records`, and of `max_bytes` of payloads or one
    /// record more (the last one shorter), up to the first read error, which ends the iteration.
    pub fn chunks(mut self, max_records: usize, max_bytes: usize) -> impl Iterator<Item = Result<RecordChunk>> {
        let mut payload_bytes = 0;
        std::iter::from_fn(move || {
            // The next chunk is likely the size of the last, so it starts with room for it.
            let mut chunk = RecordChunk::with_capacity(max_records, payload_bytes);
            while chunk.len() < max_records && chunk.payloads.len() < max_bytes {
                match self.next_into(&mut chunk.payloads) {
                    Some(Ok(lsn)) => chunk.records.push((lsn, chunk.payloads.len())),
                    Some(Err(e)) => return Some(Err(e)),
                    None => break,
                }
            }
            payload_bytes = payload_bytes.max(chunk.payloads.len());
            (!chunk.is_empty()).then_some(Ok(chunk))
        })
    }
}

impl Iterator for WalReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut payload = Vec::new();
        self.next_into(&mut payload).map(|lsn| lsn.map(|lsn| Record { lsn, payload }))
    }
}

/// Appends up to `len` bytes to `out`, straight from the reader's buffer (so without zeroing
/// room for them first); answers how many, fewer only at the end of the file.
fn read_appending(reader: &mut impl BufRead, len: usize, out: &mut Vec<u8>) -> std::io::Result<usize> {
    out.reserve(len);
    let mut copied = 0;
    while copied < len {
        let available = match reader.fill_buf() {
            Ok([]) => break,
            Ok(available) => available,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let take = available.len().min(len - copied);
        out.extend_from_slice(&available[..take]);
        reader.consume(take);
        copied += take;
    }
    Ok(copied)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::segment::SEGMENT_HEADER_BYTES;
    use crate::{Wal, WalConfig};

    fn one_by_one(dir: &Path, from: u64, upto: u64) -> Vec<(u64, Vec<u8>)> {
        let reader = WalReader::open(dir, from, upto, 1 << 20).expect("reader");
        reader.map(|r| r.map(|r| (r.lsn, r.payload)).expect("record")).collect()
    }

    fn in_chunks(dir: &Path, from: u64, upto: u64, max_records: usize) -> Vec<(u64, Vec<u8>)> {
        let chunks: Vec<RecordChunk> = WalReader::open(dir, from, upto, 1 << 20)
            .expect("reader")
            .chunks(max_records, usize::MAX)
            .collect::<Result<_>>()
            .expect("chunks");
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= max_records), "chunks of 1..={max_records}");
        chunks.iter().flat_map(|c| c.iter().map(|(lsn, payload)| (lsn, payload.to_vec()))).collect()
    }

    #[test]
    fn chunks_hold_the_records_one_at_a_time_reading_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WalConfig { segment_bytes: 300, preallocate: false, ..WalConfig::new(dir.path()) };
        let payloads: Vec<Vec<u8>> = (0..60).map(|i| format!("record {i} ").repeat(i % 5 + 1).into_bytes()).collect();
        let (mut wal, _) = Wal::open(config).expect("open");
        wal.append(&payloads).expect("append");
        drop(wal);
        let segments = segment::list_segments(dir.path()).expect("segments");
        assert!(segments.len() > 4, "the records span several segments");
        // A damaged record in a closed segment: the rest of that segment is skipped.
        let damaged = &segments[1];
        let file = std::fs::OpenOptions::new().write(true).open(&damaged.path).expect("segment");
        file.write_all_at(b"X", SEGMENT_HEADER_BYTES + 8 + 2).expect("damage");

        let all = one_by_one(dir.path(), 0, u64::MAX);
        let lsns: Vec<u64> = all.iter().map(|(lsn, _)| *lsn).collect();
        assert!(!lsns.contains(&damaged.first_lsn) && lsns.contains(&segments[2].first_lsn));
        for (lsn, payload) in &all {
            assert_eq!(payload, &payloads[*lsn as usize]);
        }
        for (from, upto) in
            [(0, u64::MAX), (3, 41), (segments[2].first_lsn, segments[2].first_lsn + 1), (59, 60), (60, 70)]
        {
            let expected = one_by_one(dir.path(), from, upto);
            let in_range: Vec<(u64, Vec<u8>)> =
                all.iter().filter(|(lsn, _)| (from..upto).contains(lsn)).cloned().collect();
            assert_eq!(expected, in_range, "{from}..{upto} one at a time");
            for max_records in [1, 4, 1000] {
                assert_eq!(in_chunks(dir.path(), from, upto, max_records), expected, "{from}..{upto} by {max_records}");
            }
        }
    }

    #[test]
    fn a_reader_resumes_where_the_last_stopped_across_windows_segments_and_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WalConfig { segment_bytes: 300, preallocate: false, ..WalConfig::new(dir.path()) };
        let payloads: Vec<Vec<u8>> = (0..80).map(|i| format!("record {i} ").repeat(i % 4 + 1).into_bytes()).collect();
        let (mut wal, _) = Wal::open(config.clone()).expect("open");
        wal.append(&payloads[..50]).expect("append");
        let mut read = Vec::new();
        let mut position = None;
        // Windows of 7 up to the end of what is written, then more is appended and read on.
        for upto in (7..=56).step_by(7).chain([80]) {
            if upto == 56 {
                wal.append(&payloads[50..]).expect("append more");
            }
            let mut reader = match position {
                Some(at) => WalReader::open_at(dir.path(), at, upto, 1 << 20).expect("resume"),
                None => WalReader::open(dir.path(), 0, upto, 1 << 20).expect("open"),
            };
            for record in reader.by_ref() {
                let record = record.expect("record");
                read.push(record.lsn);
                assert_eq!(record.payload, payloads[record.lsn as usize]);
            }
            position = reader.stopped_at();
            let at = position.expect("a clean stop has a position");
            let written = if upto < 56 { 50 } else { 80 };
            assert_eq!(at.next_lsn, upto.min(written), "stopped at the bound or the end of the log");
        }
        assert_eq!(read, (0..80).collect::<Vec<u64>>(), "every record once, in order");
    }
}
