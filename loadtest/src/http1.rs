//! The generator's HTTP/1.1 client: one keep-alive connection, one request at a time.
//!
//! Why not hyper's pooled client: on this 2-core machine the generator shares the CPU with the
//! target it measures, and the pooled client spent about 30 µs of CPU per request (a task per
//! connection, a channel hop and a thread wake-up per request, URI parsing), which left the
//! target less than half of the machine. Here a request is one `write` of head and body, and
//! the answer is read into a buffer kept for the connection's life.
//!
//! What it accepts is what the gateway and the baseline send: a status line, headers, and a
//! body framed by `Content-Length` (or none for 1xx/204/304, or up to the end of the stream
//! with `Connection: close`). A chunked answer is an error. `Connection: close` in the answer,
//! or any error, ends the connection; the caller opens a new one.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most headers an answer may carry.
const MAX_HEADERS: usize = 32;
/// Largest head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Where requests go: `http://host:port`, split once.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, for connecting.
    pub address: String,
    /// The `Host` header's value.
    pub host: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("http://") else {
            anyhow::bail!("the target {url:?} must be an http:// URL (the generator does not speak TLS)");
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            anyhow::bail!("the target {url:?} has no host");
        }
        let address = if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Target { address, host: authority.to_owned() })
    }
}

/// What one request carries besides its path and body.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    pub content_type: &'a str,
    pub authorization: Option<&'a str>,
    pub gzip: bool,
}

pub struct Connection {
    stream: TcpStream,
    /// The request being written: head and body, reused.
    outgoing: Vec<u8>,
    /// Bytes read and not yet consumed.
    incoming: Vec<u8>,
}

impl Connection {
    pub async fn open(target: &Target) -> io::Result<Connection> {
        let stream = TcpStream::connect(&target.address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, outgoing: Vec::with_capacity(4096), incoming: Vec::with_capacity(4096) })
    }

    /// Whether the target has not closed this idle connection (say, by restarting): sending on
    /// a closed one would fail a request that a fresh connection would carry.
    pub fn is_open(&self) -> bool {
        matches!(self.stream.try_read(&mut [0u8; 1]), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends one POST and reads its whole answer; returns the status and whether the connection
    /// may carry another request.
    pub async fn post(
        &mut self,
        target: &Target,
        path: &str,
        headers: Headers<'_>,
        body: &[u8],
    ) -> io::Result<(u16, bool)> {
        self.outgoing.clear();
        write_head(&mut self.outgoing, target, path, headers, body.len());
        self.outgoing.extend_from_slice(body);
        self.stream.write_all(&self.outgoing).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> io::Result<(u16, bool)> {
        let head = loop {
            if let Some(head) = parse_head(&self.incoming)? {
                break head;
            }
            if self.incoming.len() > MAX_HEAD_BYTES {
                return Err(invalid("the answer's head is too large"));
            }
            self.fill().await?;
        };
        let body_end = match head.body {
            Framing::Length(length) => head.length + length,
            Framing::UntilClose => {
                while self.fill().await.is_ok() {}
                self.incoming.len()
            }
        };
        while self.incoming.len() < body_end {
            self.fill().await?;
        }
        self.incoming.drain(..body_end);
        Ok((head.status, head.keep_alive && head.body != Framing::UntilClose))
    }

    /// Reads more bytes; the end of the stream is an error.
    async fn fill(&mut self) -> io::Result<()> {
        if self.incoming.capacity() - self.incoming.len() < 1024 {
            self.incoming.reserve(4096);
        }
        let read = self.stream.read_buf(&mut self.incoming).await?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the target closed the connection"));
        }
        Ok(())
    }
}

fn write_head(out: &mut Vec<u8>, target: &Target, path: &str, headers: Headers<'_>, body_len: usize) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: {}\r\ncontent-length: {body_len}\r\n",
        target.host, headers.content_type
    );
    if let Some(authorization) = headers.authorization {
        let _ = write!(out, "authorization: {authorization}\r\n");
    }
    if headers.gzip {
        out.extend_from_slice(b"content-encoding: gzip\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    UntilClose,
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes of the status line and headers.
    length: usize,
    body: Framing,
    keep_alive: bool,
}

/// The answer's head once it is all in `bytes`; `None` while more is needed.
fn parse_head(bytes: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(invalid(&format!("unreadable answer: {error}"))),
    };
    let status = response.code.unwrap_or_default();
    let mut keep_alive = response.version == Some(1);
    let mut content_length = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
            content_length = Some(value.ok_or_else(|| invalid("unreadable content-length"))?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked answers are not supported"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let body = match content_length {
        Some(length) => Framing::Length(length),
        None if status < 200 || status == 204 || status == 304 => Framing::Length(0),
        None => Framing::UntilClose,
    };
    Ok(Some(Head { status, length, body, keep_alive }))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn targets_are_host_and_port() {
        let target = Target::parse("http://127.0.0.1:8080").expect("target");
        assert_eq!((target.address.as_str(), target.host.as_str()), ("127.0.0.1:8080", "127.0.0.1:8080"));
        assert_eq!(Target::parse("http://gateway/").expect("target").address, "gateway:80");
        assert!(Target::parse("https://gateway").is_err() && Target::parse("http://").is_err());
    }

    #[test]
    fn heads_give_status_framing_and_keep_alive() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"success\":true}";
        assert_eq!(
            parse_head(ok).expect("parse"),
            Some(Head { status: 200, length: ok.len() - 16, body: Framing::Length(16), keep_alive: true })
        );
        assert_eq!(parse_head(&ok[..20]).expect("partial"), None);
        let closing = b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\n\r\n";
        let head = parse_head(closing).expect("parse").expect("complete");
        assert_eq!((head.status, head.body, head.keep_alive), (429, Framing::UntilClose, false));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    /// A server that answers in pieces, to check the client reads across partial reads and
    /// keeps the connection for the next request.
    #[tokio::test]
    async fn answers_split_across_reads_are_read_whole_and_the_connection_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = Target::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("target");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            for answer in [&b"HTTP/1.1 200 OK\r\nContent-Le"[..], b"ngth: 4\r\n\r\nab", b"cd"] {
                let mut buffer = [0u8; 4096];
                if seen.is_empty() {
                    let read = socket.read(&mut buffer).await.expect("read");
                    seen.extend_from_slice(&buffer[..read]);
                }
                socket.write_all(answer).await.expect("write");
                socket.flush().await.expect("flush");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let mut buffer = [0u8; 4096];
            let read = socket.read(&mut buffer).await.expect("read");
            seen.extend_from_slice(&buffer[..read]);
            socket.write_all(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\nbye").await.expect("write");
            drop(socket);
            String::from_utf8(seen).expect("text")
        });
        let mut connection = Connection::open(&target).await.expect("open");
        let headers = Headers { content_type: "text/plain", authorization: Some("Basic eDo="), gzip: true };
        assert_eq!(connection.post(&target, "/v1/t", headers, b"{}").await.expect("first"), (200, true));
        assert!(connection.is_open());
        assert_eq!(connection.post(&target, "/v1/p", headers, b"[]").await.expect("second"), (503, false));
        let seen = server.await.expect("server");
        assert!(!connection.is_open(), "the server closed it");
        assert!(seen.starts_with("POST /v1/t HTTP/1.1\r\nhost: 127.0.0.1:"), "{seen}");
        for expected in [
            "content-length: 2\r\n",
            "authorization: Basic eDo=\r\n",
            "content-encoding: gzip\r\n",
            "\r\n\r\n{}POST /v1/p",
        ] {
            assert!(seen.contains(expected), "{expected:?} in {seen}");
        }
    }
}
