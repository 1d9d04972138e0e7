//! Request bodies: read with a cap while streaming, then decompressed with a cap on the
//! *output*, so neither a huge upload nor a gzip bomb costs more than the limit in memory.

use std::io::Read;
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::inflight::Reservation;

/// The largest buffer allocated for a body before its bytes arrive.
const INITIAL_BUFFER_BYTES: usize = 64 * 1024;

/// How a body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

impl Encoding {
    pub fn from_headers(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
        match value.as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            _ => Err(ApiError::UnsupportedEncoding(value)),
        }
    }
}

/// The declared `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// How fast a body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// The whole body within this time.
    pub timeout: Duration,
    /// After `grace`, on average at least this many bytes a second since the body began.
    pub min_bytes_per_sec: u64,
    pub grace: Duration,
}

impl BodyPace {
    /// When the next bytes must have arrived, `received` having come by now: the later of the
    /// grace and the time the minimum rate allows for them, never past the whole timeout.
    fn next_deadline(&self, started: Instant, received: usize) -> Instant {
        let rate = self.min_bytes_per_sec.max(1);
        let earned = Duration::from_secs_f64(received as f64 / rate as f64);
        started + (self.grace + earned).min(self.timeout)
    }
}

/// Reads the whole body, refusing more than `limit` bytes on the wire (chunked bodies without
/// `Content-Length` are counted as they stream) and bodies slower than `pace`. Every byte is
/// reserved from the in-flight budget as it arrives; a declared length only sizes the first
/// buffer, up to [`INITIAL_BUFFER_BYTES`], since declaring costs a client nothing.
pub async fn read_capped(
    body: Body,
    limit: usize,
    declared: Option<usize>,
    pace: BodyPace,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let started = Instant::now();
    let mut body = body;
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit).min(INITIAL_BUFFER_BYTES));
    loop {
        let deadline = pace.next_deadline(started, buf.len());
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(buf.freeze()),
            Err(_) if started.elapsed() >= pace.timeout => return Err(ApiError::BodyTimeout(pace.timeout.as_secs())),
            Err(_) => return Err(ApiError::BodyTooSlow { min_bytes_per_sec: pace.min_bytes_per_sec }),
        };
        let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        let total = buf.len() + data.len();
        if total > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        reservation.grow_to(total)?;
        buf.extend_from_slice(&data);
    }
}

/// Reads and drops up to `limit` bytes of a refused request's body, on a task of its own so
/// that the answer goes out first. The connection carries another request once the body has
/// been read to its end; if it is longer or slower than allowed, dropping it makes the server
/// close the connection instead.
pub fn discard_after_answer(body: Body, limit: usize, timeout: Duration) {
    tokio::spawn(async move {
        let discard = async {
            let mut body = body;
            let mut seen = 0;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > limit {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, discard).await;
    });
}

/// Decodes `raw`, producing at most `limit` bytes; one byte more is a 413.
pub fn decode(raw: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, ApiError> {
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), "gzip", limit),
        Encoding::Deflate => inflate(flate2::read::ZlibDecoder::new(&raw[..]), "deflate", limit),
    }
}

fn inflate(decoder: impl Read, encoding: &'static str, limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::InvalidEncoding { encoding, detail: e.to_string() })?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("compress");
        Bytes::from(encoder.finish().expect("finish"))
    }

    #[test]
    fn decodes_within_the_limit_and_stops_at_it() {
        let data = vec![b'a'; 1000];
        assert_eq!(decode(gzip(&data), Encoding::Gzip, 1000).expect("fits"), data);
        assert!(matches!(decode(gzip(&data), Encoding::Gzip, 999), Err(ApiError::PayloadTooLarge { limit: 999 })));
    }

    #[test]
    fn a_gzip_bomb_costs_no_more_than_the_limit() {
        // 256 MiB of zeros compress to about 250 KiB; decoding must stop at the limit.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            encoder.write_all(&zeros).expect("compress");
        }
        let bomb = Bytes::from(encoder.finish().expect("finish"));
        let started = std::time::Instant::now();
        assert!(matches!(decode(bomb, Encoding::Gzip, 500 * 1024), Err(ApiError::PayloadTooLarge { .. })));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn truncated_and_fake_gzip_are_invalid_encoding() {
        let data = gzip(b"{\"batch\":[]}");
        let truncated = data.slice(..data.len() - 6);
        assert!(matches!(decode(truncated, Encoding::Gzip, 1000), Err(ApiError::InvalidEncoding { .. })));
        let fake = Bytes::from_static(b"{\"not\":\"gzip\"}");
        assert!(matches!(decode(fake, Encoding::Gzip, 1000), Err(ApiError::InvalidEncoding { .. })));
    }

    #[test]
    fn a_body_must_keep_its_pace_after_the_grace() {
        let pace =
            BodyPace { timeout: Duration::from_secs(30), min_bytes_per_sec: 1000, grace: Duration::from_secs(5) };
        let start = Instant::now();
        assert_eq!(pace.next_deadline(start, 0), start + Duration::from_secs(5));
        assert_eq!(pace.next_deadline(start, 10_000), start + Duration::from_secs(15), "10 s earned by 10 KB");
        assert_eq!(pace.next_deadline(start, 1_000_000), start + Duration::from_secs(30), "never past the timeout");
    }

    #[test]
    fn encodings_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(Encoding::from_headers(&headers).expect("none"), Encoding::Identity);
        headers.insert(header::CONTENT_ENCODING, "GZIP".parse().expect("value"));
        assert_eq!(Encoding::from_headers(&headers).expect("gzip"), Encoding::Gzip);
        headers.insert(header::CONTENT_ENCODING, "br".parse().expect("value"));
        assert!(matches!(Encoding::from_headers(&headers), Err(ApiError::UnsupportedEncoding(_))));
    }
}
