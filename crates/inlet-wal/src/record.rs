//! Record framing: `len u32 LE | crc32c(len bytes ++ payload) u32 LE | payload`.

use std::ops::Range;

/// Bytes of framing in front of every payload.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Records framed, back to back, by the task that appends them, on its own thread: the bytes
/// it has just written are still in that core's cache, so the checksum is cheap there, and
/// the log's single writer thread is left to copy whole runs of records into a segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FramedRecords {
    bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    ends: Vec<usize>,
}

impl FramedRecords {
    pub fn with_capacity(records: usize, payload_bytes: usize) -> FramedRecords {
        FramedRecords {
            bytes: Vec::with_capacity(payload_bytes + records * RECORD_HEADER_BYTES),
            ends: Vec::with_capacity(records),
        }
    }

    pub fn from_payloads<P: AsRef<[u8]>>(payloads: &[P]) -> FramedRecords {
        let bytes = payloads.iter().map(|p| p.as_ref().len()).sum();
        let mut records = FramedRecords::with_capacity(payloads.len(), bytes);
        for payload in payloads {
            records.push(payload.as_ref());
        }
        records
    }

    /// Frames one record. Panics on a payload of 4 GiB or more, which no length field can
    /// hold (callers bound their payloads far below; the log refuses those over its limit).
    pub fn push(&mut self, payload: &[u8]) {
        self.push_with(|out| out.extend_from_slice(payload));
    }

    /// Frames one record whose payload `write` appends to the buffer it is given, so a caller
    /// that builds the payload need not build it apart first.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
        write(&mut self.bytes);
        let payload = &self.bytes[start + RECORD_HEADER_BYTES..];
        let len = u32::try_from(payload.len()).expect("a record payload is under 4 GiB");
        let len_bytes = len.to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
        self.bytes[start..start + 4].copy_from_slice(&len_bytes);
        self.bytes[start + 4..start + RECORD_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        self.ends.push(self.bytes.len());
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `index`th record's payload.
    pub fn payload(&self, index: usize) -> &[u8] {
        let range = self.record(index);
        &self.bytes[range.start + RECORD_HEADER_BYTES..range.end]
    }

    /// Payload bytes in all, framing left out.
    pub fn payload_bytes(&self) -> usize {
        self.bytes.len() - self.ends.len() * RECORD_HEADER_BYTES
    }

    /// Bytes in all, framing included.
    pub fn framed_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where the `index`th framed record lies in [`FramedRecords::bytes`].
    pub(crate) fn record(&self, index: usize) -> Range<usize> {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        start..self.ends[index]
    }
}

/// What decoding the bytes at some offset found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A verified record and the total bytes it occupies (header + payload).
    Record { payload: &'a [u8], framed_len: usize },
    /// Fewer bytes than a whole record: the end of the data, or a torn write.
    Incomplete,
    /// A record whose length is over the limit or whose CRC does not match.
    Invalid(&'static str),
}

/// Decodes the record at the start of `buf`.
pub(crate) fn decode_record(buf: &[u8], max_record_bytes: usize) -> Decoded<'_> {
    let Some(header) = buf.get(..RECORD_HEADER_BYTES) else {
        return Decoded::Incomplete;
    };
    let len_bytes: [u8; 4] = header[..4].try_into().expect("slice of 4");
    let stored_crc = u32::from_le_bytes(header[4..8].try_into().expect("slice of 4"));
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max_record_bytes {
        return Decoded::Invalid("length over the record limit");
    }
    let Some(payload) = buf.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len) else {
        return Decoded::Incomplete;
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    if crc != stored_crc {
        return Decoded::Invalid("CRC mismatch");
    }
    Decoded::Record { payload, framed_len: RECORD_HEADER_BYTES + len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let buf = FramedRecords::from_payloads(&[&b"hello"[..], b""]).bytes;
        let Decoded::Record { payload, framed_len } = decode_record(&buf, 1024) else {
            panic!("first record should decode");
        };
        assert_eq!(payload, b"hello");
        assert_eq!(framed_len, 13);
        assert_eq!(decode_record(&buf[13..], 1024), Decoded::Record { payload: b"", framed_len: 8 });
        // Every truncation of the first record is incomplete, never a wrong record.
        for cut in 0..13 {
            assert_eq!(decode_record(&buf[..cut], 1024), Decoded::Incomplete, "cut at {cut}");
        }
        // Any single flipped bit is caught.
        for bit in 0..13 * 8 {
            let mut damaged = buf[..13].to_vec();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_record(&damaged, 1024), Decoded::Record { payload: b"hello", .. }),
                "bit {bit} flipped went unnoticed"
            );
        }
        assert_eq!(decode_record(&buf, 4), Decoded::Invalid("length over the record limit"));
    }

    #[test]
    fn framed_records_keep_each_payload_and_its_place() {
        let payloads: [&[u8]; 4] = [b"first", b"", b"third record", b"4"];
        let mut built = FramedRecords::with_capacity(1, 1);
        for payload in payloads {
            built.push_with(|out| out.extend_from_slice(payload));
        }
        assert_eq!(built, FramedRecords::from_payloads(&payloads));
        assert_eq!((built.len(), built.payload_bytes(), built.framed_bytes()), (4, 18, 18 + 4 * RECORD_HEADER_BYTES));
        let mut offset = 0;
        for (index, payload) in payloads.iter().enumerate() {
            assert_eq!(built.payload(index), *payload);
            assert_eq!(built.record(index).start, offset);
            let Decoded::Record { payload: decoded, framed_len } = decode_record(&built.bytes()[offset..], 1024) else {
                panic!("record {index} should decode");
            };
            assert_eq!(decoded, *payload);
            offset += framed_len;
        }
        assert_eq!(offset, built.framed_bytes());
    }

    #[test]
    fn zeroed_space_is_not_a_record() {
        // File systems may expose zero-filled blocks after a crash; they must not verify.
        assert!(matches!(decode_record(&[0u8; 64], 1024), Decoded::Invalid(_)));
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        /// Cases per property: the decoder is cheap, so many.
        const CASES: u32 = 10_000;

        proptest! {
            #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

            /// Whatever bytes a segment holds (a torn write, disk damage, another file), decoding
            /// answers without panicking, and a record it accepts lies within the buffer and the limit.
            #[test]
            fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..64), limit in 0usize..48) {
                if let Decoded::Record { payload, framed_len } = decode_record(&bytes, limit) {
                    prop_assert!(framed_len <= bytes.len() && payload.len() <= limit);
                    prop_assert_eq!(framed_len, RECORD_HEADER_BYTES + payload.len());
                }
            }

            /// Framed records read back exactly, and any damage to one byte of a record is never
            /// read as a different record.
            #[test]
            fn damaged_records_are_never_misread(
                payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
                at in any::<prop::sample::Index>(),
                flip in 1u8..=255,
            ) {
                let framed = FramedRecords::from_payloads(&payloads);
                let mut offset = 0;
                for payload in &payloads {
                    let Decoded::Record { payload: read, framed_len } = decode_record(&framed.bytes()[offset..], 64) else {
                        return Err(TestCaseError::fail("an intact record must decode"));
                    };
                    prop_assert_eq!(read, payload.as_slice());
                    offset += framed_len;
                }
                let mut damaged = framed.bytes().to_vec();
                let position = at.index(damaged.len());
                damaged[position] ^= flip;
                let first = framed.record(0);
                if position < first.end {
                    // The damaged record is refused, or incomplete if its length grew; it is
                    // never read back as a record.
                    let decoded = decode_record(&damaged, 64);
                    prop_assert!(!matches!(decoded, Decoded::Record { .. }), "damage at {} went unnoticed", position);
                }
            }
        }
    }
}
