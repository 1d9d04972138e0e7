//! Request bodies as the official SDKs send them:
//! - browser-style single events: `/v1/t` and `/v1/p`, `text/plain`, the write key in the body
//!   (analytics.js standard mode);
//! - server-style batches: `/v1/batch` of `batch_size` events, HTTP Basic, optionally gzip;
//! - identify calls: `/v1/identify`.
//!
//! Message ids are `{run}-{n}`, with `n` from one counter for the whole run, so `verify` can
//! find exactly this run's events in the lake; a request carries the consecutive range
//! `n .. n + count`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;
use rand::rngs::SmallRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Track,
    Page,
    Identify,
    Batch,
}

impl Kind {
    fn parse(name: &str) -> anyhow::Result<Kind> {
        Ok(match name {
            "track" => Kind::Track,
            "page" => Kind::Page,
            "identify" => Kind::Identify,
            "batch" => Kind::Batch,
            other => bail!("unknown request kind {other:?} (track, page, identify, batch)"),
        })
    }
}

/// Weighted request kinds, e.g. `track=6,page=3,identify=1` or `batch=1`.
#[derive(Debug, Clone)]
pub struct Mix {
    weights: Vec<(Kind, u32)>,
    total: u32,
}

impl Mix {
    pub fn parse(text: &str) -> anyhow::Result<Mix> {
        let mut weights = Vec::new();
        for part in text.split(',') {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let weight: u32 = weight.parse().with_context(|| format!("weight of {name:?}"))?;
            weights.push((Kind::parse(name.trim())?, weight));
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            bail!("the mix {text:?} has no weight");
        }
        Ok(Mix { weights, total })
    }

    pub fn pick(&self, rng: &mut SmallRng) -> Kind {
        let mut ticket = rng.random_range(0..self.total);
        for (kind, weight) in &self.weights {
            if ticket < *weight {
                return *kind;
            }
            ticket -= weight;
        }
        self.weights[0].0
    }
}

#[derive(Debug)]
pub struct Request {
    pub path: &'static str,
    pub body: Bytes,
    pub gzip: bool,
    pub basic_auth: bool,
    /// The message ids `first .. first + count`.
    pub first: u64,
    pub count: u64,
}

#[derive(Debug)]
pub struct Generator {
    pub run: String,
    pub write_key: String,
    pub users: u64,
    pub batch_size: u64,
    pub gzip: bool,
    next: AtomicU64,
}

const EVENTS: [&str; 6] = ["Article Read", "Case Viewed", "Comment Posted", "Job Applied", "Search", "Video Played"];
const PATHS: [&str; 5] = ["/", "/articles/implant-failure", "/cases/1042", "/jobs/seoul", "/search"];

impl Generator {
    pub fn new(run: String, write_key: String, users: u64, batch_size: u64, gzip: bool, first_id: u64) -> Generator {
        Generator {
            run,
            write_key,
            users: users.max(1),
            batch_size: batch_size.max(1),
            gzip,
            next: AtomicU64::new(first_id),
        }
    }

    /// The next id to hand out.
    pub fn issued(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    pub fn request(&self, kind: Kind, rng: &mut SmallRng) -> Request {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let count = if kind == Kind::Batch { self.batch_size } else { 1 };
        let first = self.next.fetch_add(count, Ordering::Relaxed);
        let (path, body, basic_auth) = match kind {
            Kind::Batch => {
                let mut body = String::with_capacity(count as usize * 800 + 64);
                body.push_str("{\"batch\":[");
                for n in first..first + count {
                    if n > first {
                        body.push(',');
                    }
                    let event = if rng.random_ratio(1, 10) { Kind::Page } else { Kind::Track };
                    self.message(&mut body, event, n, &now, rng, true);
                }
                body.push_str("],\"sentAt\":\"");
                body.push_str(&now);
                body.push_str("\"}");
                ("/v1/batch", body, true)
            }
            single => {
                let mut body = String::with_capacity(900);
                self.message(&mut body, single, first, &now, rng, false);
                let path = match single {
                    Kind::Page => "/v1/p",
                    Kind::Identify => "/v1/identify",
                    _ => "/v1/t",
                };
                (path, body, single == Kind::Identify)
            }
        };
        let gzip = self.gzip && kind == Kind::Batch;
        let body = if gzip { gzip_bytes(body.as_bytes()) } else { Bytes::from(body) };
        Request { path, body, gzip, basic_auth, first, count }
    }

    /// One message in the shape and size the SDKs produce (about 700 bytes). Written piece by
    /// piece rather than through `format!`: the generator shares the machine with the target,
    /// so its cost per event is kept small.
    fn message(&self, out: &mut String, kind: Kind, n: u64, now: &str, rng: &mut SmallRng, in_batch: bool) {
        let user = rng.random_range(0..self.users);
        let path = PATHS[rng.random_range(0..PATHS.len())];
        push_all(out, &["{\"messageId\":\"", &self.run, "-"]);
        push_number(out, n);
        if rng.random_ratio(7, 10) {
            out.push_str("\",\"userId\":\"user-");
            push_number(out, user);
            out.push('"');
        } else {
            out.push('"');
        }
        out.push_str(",\"anonymousId\":\"anon-");
        push_number(out, user);
        match kind {
            Kind::Page => push_all(
                out,
                &[
                    "\",\"type\":\"page\",\"name\":\"",
                    path,
                    "\",\"properties\":{\"path\":\"",
                    path,
                    "\",\"title\":\"Inlet load test\"}",
                ],
            ),
            Kind::Identify => {
                out.push_str("\",\"type\":\"identify\",\"traits\":{\"profession\":\"dentist\",\"specialty\":\"implants\",\"createdAt\":\"2024-03-0");
                push_number(out, 1 + user % 9);
                out.push_str("\"}");
            }
            _ => {
                let event = EVENTS[rng.random_range(0..EVENTS.len())];
                push_all(
                    out,
                    &[
                        "\",\"type\":\"track\",\"event\":\"",
                        event,
                        "\",\"properties\":{\"path\":\"",
                        path,
                        "\",\"position\":",
                    ],
                );
                push_number(out, rng.random_range(0..50));
                out.push_str(",\"category\":\"clinical\"}");
            }
        }
        push_all(
            out,
            &[
                ",\"timestamp\":\"",
                now,
                "\",\"context\":{\"library\":{\"name\":\"analytics.js\",\"version\":\"next-1.84.3\"},\"page\":{\"path\":\"",
                path,
                "\",\"url\":\"https://www.example.com",
                path,
                "\",\"referrer\":\"https://search.example.org/\",\"title\":\"Inlet load test\"},\
                 \"userAgent\":\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\",\
                 \"locale\":\"ko-KR\",\"timezone\":\"Asia/Seoul\",\"screen\":{\"width\":1440,\"height\":900}}",
            ],
        );
        if !in_batch {
            push_all(out, &[",\"writeKey\":\"", &self.write_key, "\",\"sentAt\":\"", now, "\""]);
        }
        out.push('}');
    }
}

fn push_all(out: &mut String, pieces: &[&str]) {
    for piece in pieces {
        out.push_str(piece);
    }
}

fn push_number(out: &mut String, number: u64) {
    let _ = std::fmt::Write::write_fmt(out, format_args!("{number}"));
}

fn gzip_bytes(raw: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4), Compression::fast());
    encoder.write_all(raw).expect("writing to memory");
    Bytes::from(encoder.finish().expect("writing to memory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bodies_are_valid_json_with_consecutive_unique_ids() {
        let generator = Generator::new("run1".into(), "key".into(), 100, 5, false, 0);
        let mut rng = SmallRng::seed_from_u64(1);
        let single = generator.request(Kind::Track, &mut rng);
        let value: serde_json::Value = serde_json::from_slice(&single.body).expect("json");
        assert_eq!(value["messageId"], "run1-0");
        assert_eq!(value["writeKey"], "key");
        let batch = generator.request(Kind::Batch, &mut rng);
        let value: serde_json::Value = serde_json::from_slice(&batch.body).expect("json");
        let ids: Vec<&str> =
            value["batch"].as_array().expect("batch").iter().map(|m| m["messageId"].as_str().expect("id")).collect();
        assert_eq!(ids, ["run1-1", "run1-2", "run1-3", "run1-4", "run1-5"]);
        assert_eq!((batch.first, batch.count, generator.issued()), (1, 5, 6));
        assert!(single.body.len() > 500 && single.body.len() < 1200, "{} bytes", single.body.len());
        for (kind, type_name, path) in [
            (Kind::Page, "page", "/v1/p"),
            (Kind::Identify, "identify", "/v1/identify"),
            (Kind::Track, "track", "/v1/t"),
        ] {
            let request = generator.request(kind, &mut rng);
            let value: serde_json::Value = serde_json::from_slice(&request.body).expect("json");
            assert_eq!((value["type"].as_str(), request.path), (Some(type_name), path));
            let user = value["anonymousId"].as_str().expect("anonymousId").trim_start_matches("anon-");
            assert!(value["userId"].is_null() || value["userId"] == format!("user-{user}"), "{value}");
            assert_eq!(
                value["context"]["page"]["url"],
                format!("https://www.example.com{}", value["context"]["page"]["path"].as_str().expect("path"))
            );
            assert_eq!((value["sentAt"].as_str(), value["timestamp"].as_str()).0, value["timestamp"].as_str());
        }
    }

    #[test]
    fn the_mix_follows_its_weights() {
        let mix = Mix::parse("track=3,batch=1").expect("mix");
        let mut rng = SmallRng::seed_from_u64(2);
        let batches = (0..10_000).filter(|_| mix.pick(&mut rng) == Kind::Batch).count();
        assert!((2_200..2_800).contains(&batches), "{batches}");
        assert!(Mix::parse("track=0").is_err() && Mix::parse("video=1").is_err());
    }
}
