//! Record framing: `len u32 LE | crc32c(len bytes ++ payload) u32 LE | payload`.

/// Bytes of framing in front of every payload.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload length is checked against max_record_bytes");
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
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
        let mut buf = Vec::new();
        encode_record(&mut buf, b"hello");
        encode_record(&mut buf, b"");
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
    fn zeroed_space_is_not_a_record() {
        // File systems may expose zero-filled blocks after a crash; they must not verify.
        assert!(matches!(decode_record(&[0u8; 64], 1024), Decoded::Invalid(_)));
    }
}
