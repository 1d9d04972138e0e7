//! Sends the load and measures it.
//!
//! - Closed loop: `concurrency` workers, each sending its next request when the last one is
//!   answered: the highest rate the target sustains at that concurrency.
//! - Open loop: requests start on a fixed schedule (`rate` per second) whatever the answers, and
//!   latency counts from the scheduled start, so a stalled target shows up as latency instead of
//!   silently lowering the rate (coordinated omission). At most `max_in_flight` requests are
//!   outstanding; a start that finds none free is counted as `skipped`.
//!
//! Before the clock starts, `warm_connections` keep-alive connections are opened (concurrent
//! `GET /healthz`), so the first seconds do not measure TCP handshakes that a client in steady
//! state would not make.
//!
//! Every acknowledged (2xx) request's id range goes to the acks file: the first line is the run
//! id, then one `first count` line per request.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request as HttpRequest;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{Semaphore, mpsc};

use crate::payload::{Generator, Mix, Request};

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed { concurrency: usize },
    Open { rate: f64, max_in_flight: usize },
}

#[derive(Debug)]
pub struct Settings {
    pub target: String,
    pub mode: Mode,
    pub duration: Duration,
    pub mix: Mix,
    pub acks: Option<PathBuf>,
    pub warm_connections: usize,
}

/// One answered (or failed) request.
#[derive(Debug)]
struct Outcome {
    latency: Duration,
    /// 0 for a transport error.
    status: u16,
    first: u64,
    count: u64,
}

#[derive(Debug, Default)]
pub struct Totals {
    pub latency: Option<Histogram<u64>>,
    pub requests: u64,
    pub acknowledged_requests: u64,
    pub acknowledged_events: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub skipped: u64,
    pub elapsed: Duration,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(usize::MAX).build(connector)
}

async fn send(client: &HttpClient, target: &str, write_key: &str, request: &Request) -> u16 {
    let mut builder = HttpRequest::post(format!("{target}{}", request.path));
    builder = if request.basic_auth {
        let token = base64_basic(write_key);
        builder.header(CONTENT_TYPE, "application/json").header(AUTHORIZATION, token)
    } else {
        builder.header(CONTENT_TYPE, "text/plain")
    };
    if request.gzip {
        builder = builder.header(CONTENT_ENCODING, "gzip");
    }
    let Ok(http_request) = builder.body(Full::new(request.body.clone())) else { return 0 };
    match client.request(http_request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the answer to the end so the connection goes back to the pool.
            match response.into_body().collect().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}

/// Opens `connections` pooled connections to the target (their answers do not matter).
async fn warm_up(client: &HttpClient, target: &str, connections: usize) {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, uri) = (client.clone(), format!("{target}/healthz"));
        requests.spawn(async move {
            let Ok(request) = HttpRequest::get(uri).body(Full::new(Bytes::new())) else { return };
            if let Ok(response) = client.request(request).await {
                let _ = response.into_body().collect().await;
            }
        });
    }
    while requests.join_next().await.is_some() {}
}

fn base64_basic(write_key: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{write_key}:");
    let mut out = String::from("Basic ");
    for chunk in raw.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub async fn run(settings: Settings, generator: Arc<Generator>) -> anyhow::Result<Totals> {
    let (outcomes, mut received) = mpsc::unbounded_channel::<Outcome>();
    let mut acks = match &settings.acks {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            writeln!(writer, "{}", generator.run)?;
            Some(writer)
        }
        None => None,
    };
    let client = client();
    warm_up(&client, &settings.target, settings.warm_connections).await;
    let started = Instant::now();
    let deadline = started + settings.duration;
    let sender = tokio::spawn(drive(
        settings.mode,
        settings.mix.clone(),
        settings.target.clone(),
        client,
        generator,
        outcomes,
        deadline,
    ));

    let mut totals = Totals { latency: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?), ..Totals::default() };
    while let Some(outcome) = received.recv().await {
        totals.requests += 1;
        let micros = u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        if let Some(histogram) = totals.latency.as_mut() {
            histogram.record(micros)?;
        }
        if outcome.status == 0 {
            totals.transport_errors += 1;
            continue;
        }
        *totals.statuses.entry(outcome.status).or_default() += 1;
        if (200..300).contains(&outcome.status) {
            totals.acknowledged_requests += 1;
            totals.acknowledged_events += outcome.count;
            if let Some(writer) = acks.as_mut() {
                writeln!(writer, "{} {}", outcome.first, outcome.count)?;
            }
        }
    }
    totals.skipped = sender.await?;
    totals.elapsed = started.elapsed();
    if let Some(mut writer) = acks {
        writer.flush()?;
        writer.get_ref().sync_all()?;
    }
    Ok(totals)
}

/// Runs the mode until the deadline; returns the open loop's skipped starts.
async fn drive(
    mode: Mode,
    mix: Mix,
    target: String,
    client: HttpClient,
    generator: Arc<Generator>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    deadline: Instant,
) -> u64 {
    let target: Arc<str> = target.into();
    match mode {
        Mode::Closed { concurrency } => {
            let mut workers = Vec::new();
            for worker in 0..concurrency {
                let (client, generator, outcomes, target, mix) =
                    (client.clone(), Arc::clone(&generator), outcomes.clone(), Arc::clone(&target), mix.clone());
                workers.push(tokio::spawn(async move {
                    let mut rng = SmallRng::seed_from_u64(worker as u64);
                    while Instant::now() < deadline {
                        let request = generator.request(mix.pick(&mut rng), &mut rng);
                        let start = Instant::now();
                        let status = send(&client, &target, &generator.write_key, &request).await;
                        let outcome =
                            Outcome { latency: start.elapsed(), status, first: request.first, count: request.count };
                        if outcomes.send(outcome).is_err() {
                            return;
                        }
                    }
                }));
            }
            for worker in workers {
                let _ = worker.await;
            }
            0
        }
        Mode::Open { rate, max_in_flight } => {
            let slots = Arc::new(Semaphore::new(max_in_flight));
            let period = Duration::from_secs_f64(1.0 / rate);
            let begin = tokio::time::Instant::now();
            let mut rng = SmallRng::seed_from_u64(0);
            let mut skipped = 0;
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0u32.. {
                let due = begin + period * n;
                if due.into_std() >= deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    skipped += 1;
                    continue;
                };
                let request = generator.request(mix.pick(&mut rng), &mut rng);
                let (client, outcomes, target, write_key) =
                    (client.clone(), outcomes.clone(), Arc::clone(&target), generator.write_key.clone());
                tasks.spawn(async move {
                    let status = send(&client, &target, &write_key, &request).await;
                    let outcome =
                        Outcome { latency: due.elapsed(), status, first: request.first, count: request.count };
                    let _ = outcomes.send(outcome);
                    drop(slot);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            skipped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_the_key_and_an_empty_password() {
        assert_eq!(base64_basic("abc"), "Basic YWJjOg==");
        assert_eq!(base64_basic("key1"), "Basic a2V5MTo=");
        assert_eq!(base64_basic("ab"), "Basic YWI6");
    }
}
