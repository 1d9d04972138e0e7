//! Sends the load and measures it.
//!
//! - Closed loop: `concurrency` workers, each sending its next request when the last one is
//!   answered: the highest rate the target sustains at that concurrency.
//! - Open loop: requests start on a fixed schedule (`rate` per second) whatever the answers, and
//!   latency counts from the scheduled start, so a stalled target shows up as latency instead of
//!   silently lowering the rate (coordinated omission). At most `max_in_flight` requests are
//!   outstanding; a start that finds none free is counted as `skipped`.
//!
//! Before the clock starts the connections are opened (closed loop: one per worker; open loop:
//! `warm_connections` in the pool), so the first seconds do not measure TCP handshakes that a
//! client in steady state would not make. Requests go over the minimal client in `http1`.
//!
//! Outcomes are counted in `record`, which also writes the acks file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Semaphore;

use crate::http1::{Connection, Headers, Target};
use crate::payload::{Generator, Mix, Request};
use crate::record::{AcksFile, Outcome, Recorder, SharedRecorder, Totals, record};

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

/// What every request needs besides its body.
struct Client {
    target: Target,
    authorization: String,
}

impl Client {
    /// Sends on `connection` (opening one if there is none); a transport error is status 0 and
    /// leaves no connection behind.
    async fn send(&self, connection: &mut Option<Connection>, request: &Request) -> u16 {
        if connection.is_none() {
            *connection = Connection::open(&self.target).await.ok();
        }
        let Some(open) = connection.as_mut() else { return 0 };
        let headers = if request.basic_auth {
            Headers { content_type: "application/json", authorization: Some(&self.authorization), gzip: request.gzip }
        } else {
            Headers { content_type: "text/plain", authorization: None, gzip: request.gzip }
        };
        match open.post(&self.target, request.path, headers, &request.body).await {
            Ok((status, reusable)) => {
                if !reusable {
                    *connection = None;
                }
                status
            }
            Err(_) => {
                *connection = None;
                0
            }
        }
    }
}

/// Opens `count` connections at once; those that fail are opened later, when first used.
async fn open_connections(target: &Target, count: usize) -> Vec<Option<Connection>> {
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..count {
        let target = target.clone();
        opening.spawn(async move { Connection::open(&target).await.ok() });
    }
    let mut connections = Vec::with_capacity(count);
    while let Some(connection) = opening.join_next().await {
        connections.push(connection.ok().flatten());
    }
    connections
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
    let acks = match &settings.acks {
        Some(path) => Some(AcksFile::create(path, &generator.run)?),
        None => None,
    };
    let client = Arc::new(Client {
        target: Target::parse(&settings.target)?,
        authorization: base64_basic(&generator.write_key),
    });
    let warm = match settings.mode {
        Mode::Closed { concurrency } => concurrency,
        Mode::Open { .. } => settings.warm_connections,
    };
    let connections = open_connections(&client.target, warm).await;
    let totals = Totals {
        latency: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        started_at: Some(chrono::Utc::now()),
        ..Totals::default()
    };
    let started = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder { totals, acks, started }));
    let deadline = started + settings.duration;
    let skipped = match settings.mode {
        Mode::Closed { .. } => {
            closed_loop(connections, &settings.mix, &client, &generator, &recorder, deadline).await;
            0
        }
        Mode::Open { rate, max_in_flight } => {
            let load = OpenLoad { rate, max_in_flight, mix: settings.mix.clone(), deadline };
            open_loop(load, connections, &client, &generator, &recorder).await
        }
    };
    let elapsed = started.elapsed();
    let Ok(recorder) = Arc::try_unwrap(recorder) else { anyhow::bail!("a request outlived the run") };
    let mut recorder = recorder.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(acks) = recorder.acks.take() {
        acks.finish()?;
    }
    recorder.totals.skipped = skipped;
    recorder.totals.elapsed = elapsed;
    Ok(recorder.totals)
}

/// One worker per connection, each sending its next request when the last one is answered.
async fn closed_loop(
    connections: Vec<Option<Connection>>,
    mix: &Mix,
    client: &Arc<Client>,
    generator: &Arc<Generator>,
    recorder: &SharedRecorder,
    deadline: Instant,
) {
    let mut workers = tokio::task::JoinSet::new();
    for (worker, mut connection) in connections.into_iter().enumerate() {
        let (client, generator, recorder, mix) =
            (Arc::clone(client), Arc::clone(generator), Arc::clone(recorder), mix.clone());
        workers.spawn(async move {
            let mut rng = SmallRng::seed_from_u64(worker as u64);
            while Instant::now() < deadline {
                let request = generator.request(mix.pick(&mut rng), &mut rng);
                let start = Instant::now();
                let status = client.send(&mut connection, &request).await;
                let outcome = Outcome { latency: start.elapsed(), status, first: request.first, count: request.count };
                record(&recorder, &outcome);
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

struct OpenLoad {
    rate: f64,
    max_in_flight: usize,
    mix: Mix,
    deadline: Instant,
}

/// An idle connection the target has not closed meanwhile, if there is one.
fn take_idle(idle: &Mutex<Vec<Connection>>) -> Option<Connection> {
    let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
    while let Some(connection) = idle.pop() {
        if connection.is_open() {
            return Some(connection);
        }
    }
    None
}

/// Starts requests on the schedule, each on an idle pooled connection (or a new one); returns
/// the starts skipped because `max_in_flight` were outstanding.
async fn open_loop(
    load: OpenLoad,
    connections: Vec<Option<Connection>>,
    client: &Arc<Client>,
    generator: &Arc<Generator>,
    recorder: &SharedRecorder,
) -> u64 {
    let idle: Arc<Mutex<Vec<Connection>>> = Arc::new(Mutex::new(connections.into_iter().flatten().collect()));
    let slots = Arc::new(Semaphore::new(load.max_in_flight));
    let period = Duration::from_secs_f64(1.0 / load.rate);
    let begin = tokio::time::Instant::now();
    let mut rng = SmallRng::seed_from_u64(0);
    let mut skipped = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0u32.. {
        let due = begin + period * n;
        if due.into_std() >= load.deadline {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let request = generator.request(load.mix.pick(&mut rng), &mut rng);
        let (client, recorder, idle) = (Arc::clone(client), Arc::clone(recorder), Arc::clone(&idle));
        tasks.spawn(async move {
            let mut connection = take_idle(&idle);
            let status = client.send(&mut connection, &request).await;
            if let Some(connection) = connection {
                idle.lock().unwrap_or_else(PoisonError::into_inner).push(connection);
            }
            let outcome = Outcome { latency: due.elapsed(), status, first: request.first, count: request.count };
            record(&recorder, &outcome);
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    skipped
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
