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
//! Every acknowledged (2xx) request's id range goes to the acks file: the first line is the run
//! id, then one `first count` line per request.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Semaphore;

use crate::http1::{Connection, Headers, Target};
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

/// Where every outcome goes, shared by the workers (one short lock per request: cheaper than
/// handing each outcome to another task).
struct Recorder {
    totals: Totals,
    acks: Option<AcksFile>,
}

impl Recorder {
    fn record(&mut self, outcome: &Outcome) {
        let totals = &mut self.totals;
        totals.requests += 1;
        let micros = u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        if let Some(histogram) = totals.latency.as_mut() {
            histogram.saturating_record(micros);
        }
        if outcome.status == 0 {
            totals.transport_errors += 1;
            return;
        }
        *totals.statuses.entry(outcome.status).or_default() += 1;
        if (200..300).contains(&outcome.status) {
            totals.acknowledged_requests += 1;
            totals.acknowledged_events += outcome.count;
            if let Some(acks) = self.acks.as_mut() {
                acks.push(outcome.first, outcome.count);
            }
        }
    }
}

/// Ranges handed to the writer thread at a time.
const ACKS_PER_HANDOFF: usize = 4096;

/// The acks file, written by a thread of its own. The workers must never wait for the disk:
/// after the target's bursts the kernel throttles writers while it writes back dirty pages,
/// and a worker stalled there would show as the target's latency (and, in open loop, as a
/// burst of new connections once it resumes).
struct AcksFile {
    pending: Vec<(u64, u64)>,
    handoff: std::sync::mpsc::Sender<Vec<(u64, u64)>>,
    writer: std::thread::JoinHandle<std::io::Result<()>>,
}

impl AcksFile {
    /// Creates the file with its first line, the run id.
    fn create(path: &std::path::Path, run: &str) -> anyhow::Result<AcksFile> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        writeln!(out, "{run}")?;
        let (handoff, ranges) = std::sync::mpsc::channel::<Vec<(u64, u64)>>();
        let writer = std::thread::Builder::new().name("acks-writer".into()).spawn(move || {
            for chunk in ranges {
                for (first, count) in chunk {
                    writeln!(out, "{first} {count}")?;
                }
            }
            out.flush()?;
            out.get_ref().sync_all()
        })?;
        Ok(AcksFile { pending: Vec::with_capacity(ACKS_PER_HANDOFF), handoff, writer })
    }

    fn push(&mut self, first: u64, count: u64) {
        self.pending.push((first, count));
        if self.pending.len() >= ACKS_PER_HANDOFF {
            let full = std::mem::replace(&mut self.pending, Vec::with_capacity(ACKS_PER_HANDOFF));
            // The writer only goes away after an error, which `finish` reports.
            let _ = self.handoff.send(full);
        }
    }

    /// Writes what is left and syncs the file.
    fn finish(self) -> anyhow::Result<()> {
        let _ = self.handoff.send(self.pending);
        drop(self.handoff);
        match self.writer.join() {
            Ok(result) => result.context("writing the acks file"),
            Err(_) => anyhow::bail!("the acks writer panicked"),
        }
    }
}

type SharedRecorder = Arc<Mutex<Recorder>>;

fn record(recorder: &SharedRecorder, outcome: &Outcome) {
    recorder.lock().unwrap_or_else(PoisonError::into_inner).record(outcome);
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
    let totals = Totals { latency: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?), ..Totals::default() };
    let recorder = Arc::new(Mutex::new(Recorder { totals, acks }));
    let client = Arc::new(Client {
        target: Target::parse(&settings.target)?,
        authorization: base64_basic(&generator.write_key),
    });
    let warm = match settings.mode {
        Mode::Closed { concurrency } => concurrency,
        Mode::Open { .. } => settings.warm_connections,
    };
    let connections = open_connections(&client.target, warm).await;
    let started = Instant::now();
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
