//! Request bodies: read with a cap while streaming, then decompressed with a cap on the
//! *output*, so neither a huge upload nor a gzip bomb costs more than the limit in memory.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::inflight::Reservation;

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

/// Reads the whole body, refusing more than `limit` bytes on the wire (chunked bodies without
/// `Content-Length` are counted as they stream) and bodies slower than `timeout`. Every byte
/// is reserved from the in-flight budget before it is kept; the reservation already covers
/// the declared length, if any.
pub async fn read_capped(
    body: Body,
    limit: usize,
    timeout: Duration,
    reservation: &mut Reservation<'_>,
) -> Result<Bytes, ApiError> {
    let read = async {
        let mut body = body;
        let mut buf = BytesMut::with_capacity(reservation.bytes().min(limit));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            let total = buf.len() + data.len();
            if total > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            reservation.grow_to(total)?;
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(Err(ApiError::BodyTimeout(timeout.as_secs())))
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
    fn encodings_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(Encoding::from_headers(&headers).expect("none"), Encoding::Identity);
        headers.insert(header::CONTENT_ENCODING, "GZIP".parse().expect("value"));
        assert_eq!(Encoding::from_headers(&headers).expect("gzip"), Encoding::Gzip);
        headers.insert(header::CONTENT_ENCODING, "br".parse().expect("value"));
        assert!(matches!(Encoding::from_headers(&headers), Err(ApiError::UnsupportedEncoding(_))));
    }
}
