//! What a run counts: every outcome goes to one `Recorder` (latency histogram, answers by
//! status, acknowledged events, and the worst latency of each 100 ms of the run, which says
//! when a tail happened and not only how long it was), and every acknowledged (2xx) request's
//! id range to the acks file: the first line is the run id, then one `first count` line per
//! request, in the order the answers came.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

/// One answered (or failed) request.
#[derive(Debug)]
pub struct Outcome {
    pub latency: Duration,
    /// 0 for a transport error.
    pub status: u16,
    pub first: u64,
    pub count: u64,
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
    /// The wall-clock time the run's clock started (to line windows up with the target's logs).
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// One per [`WINDOW`] of the run, by when the answer came.
    pub windows: Vec<Window>,
}

/// The span of a [`Window`].
pub const WINDOW: Duration = Duration::from_millis(100);

/// Answers that came within one [`WINDOW`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub answers: u64,
    pub max_latency_micros: u64,
    /// Answers slower than [`SLOW`].
    pub slow: u64,
}

/// The latency above which an answer counts as slow in its window: the p99 goal.
pub const SLOW: Duration = Duration::from_millis(10);

impl Totals {
    /// The windows with an answer slower than [`SLOW`], as (start since the run's start,
    /// window); the worst `limit` of them, in time order.
    pub fn stalls(&self, limit: usize) -> Vec<(Duration, Window)> {
        let slow = SLOW.as_micros() as u64;
        let mut stalls: Vec<(Duration, Window)> = (0u32..)
            .zip(&self.windows)
            .filter(|(_, w)| w.max_latency_micros > slow)
            .map(|(i, w)| (WINDOW * i, *w))
            .collect();
        if stalls.len() > limit {
            stalls.sort_by_key(|(_, w)| std::cmp::Reverse(w.max_latency_micros));
            stalls.truncate(limit);
            stalls.sort_by_key(|(at, _)| *at);
        }
        stalls
    }
}

/// Where every outcome goes, shared by the workers (one short lock per request: cheaper than
/// handing each outcome to another task).
pub struct Recorder {
    pub totals: Totals,
    pub acks: Option<AcksFile>,
    /// When the run's clock started: where windows are counted from.
    pub started: Instant,
}

impl Recorder {
    fn record(&mut self, outcome: &Outcome, answered: Instant) {
        let totals = &mut self.totals;
        totals.requests += 1;
        let micros = u64::try_from(outcome.latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        if let Some(histogram) = totals.latency.as_mut() {
            histogram.saturating_record(micros);
        }
        let index = (answered.saturating_duration_since(self.started).as_millis() / WINDOW.as_millis()) as usize;
        if totals.windows.len() <= index {
            totals.windows.resize(index + 1, Window::default());
        }
        let window = &mut totals.windows[index];
        window.answers += 1;
        window.max_latency_micros = window.max_latency_micros.max(micros);
        window.slow += u64::from(outcome.latency > SLOW);
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
pub struct AcksFile {
    pending: Vec<(u64, u64)>,
    handoff: std::sync::mpsc::Sender<Vec<(u64, u64)>>,
    writer: std::thread::JoinHandle<std::io::Result<()>>,
}

impl AcksFile {
    /// Creates the file with its first line, the run id.
    pub fn create(path: &std::path::Path, run: &str) -> anyhow::Result<AcksFile> {
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
    pub fn finish(self) -> anyhow::Result<()> {
        let _ = self.handoff.send(self.pending);
        drop(self.handoff);
        match self.writer.join() {
            Ok(result) => result.context("writing the acks file"),
            Err(_) => anyhow::bail!("the acks writer panicked"),
        }
    }
}

pub type SharedRecorder = Arc<Mutex<Recorder>>;

pub fn record(recorder: &SharedRecorder, outcome: &Outcome) {
    let answered = Instant::now();
    recorder.lock().unwrap_or_else(PoisonError::into_inner).record(outcome, answered);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More ranges than one hand-off, so the writer thread gets full chunks and the rest at
    /// `finish`; failures and refusals are counted but not acknowledged.
    #[test]
    fn acknowledged_ranges_reach_the_file_in_order_and_the_rest_is_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("acks");
        let totals = Totals {
            latency: Some(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")),
            ..Totals::default()
        };
        let started = Instant::now();
        let mut recorder = Recorder { totals, acks: Some(AcksFile::create(&path, "run7").expect("create")), started };
        let outcome = |status, first| Outcome { latency: Duration::from_micros(1500), status, first, count: 2 };
        for n in 0..(ACKS_PER_HANDOFF as u64 + 10) {
            recorder.record(&outcome(200, 2 * n), started);
        }
        recorder.record(&outcome(429, 999_999), started);
        recorder.record(&outcome(0, 999_999), started);
        recorder.acks.take().expect("acks").finish().expect("finish");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + ACKS_PER_HANDOFF + 10);
        assert_eq!((lines[0], lines[1], lines[ACKS_PER_HANDOFF + 10]), ("run7", "0 2", "8210 2"));
        let totals = &recorder.totals;
        assert_eq!((totals.requests, totals.acknowledged_requests, totals.transport_errors), (4108, 4106, 1));
        assert_eq!((totals.acknowledged_events, totals.statuses.get(&429)), (8212, Some(&1)));
    }

    /// Answers land in the window of when they came; only windows with a slow answer are
    /// stalls, and past the limit the worst are kept, in time order.
    #[test]
    fn slow_answers_are_placed_in_their_window_and_the_worst_windows_kept() {
        let started = Instant::now();
        let mut recorder = Recorder { totals: Totals::default(), acks: None, started };
        let answer = |recorder: &mut Recorder, at_ms: u64, latency_ms: u64| {
            let outcome = Outcome { latency: Duration::from_millis(latency_ms), status: 200, first: 0, count: 1 };
            recorder.record(&outcome, started + Duration::from_millis(at_ms));
        };
        answer(&mut recorder, 50, 2);
        answer(&mut recorder, 250, 40);
        answer(&mut recorder, 260, 3);
        answer(&mut recorder, 299, 12);
        answer(&mut recorder, 700, 90);
        answer(&mut recorder, 1010, 11);
        let totals = &recorder.totals;
        assert_eq!(totals.windows.len(), 11);
        assert_eq!(totals.windows[2], Window { answers: 3, max_latency_micros: 40_000, slow: 2 });
        assert_eq!(totals.windows[1], Window::default());
        let at = |stalls: Vec<(Duration, Window)>| stalls.iter().map(|(at, _)| at.as_millis()).collect::<Vec<_>>();
        assert_eq!(at(totals.stalls(10)), [200, 700, 1000]);
        assert_eq!(at(totals.stalls(2)), [200, 700], "the two worst, in time order");
        assert_eq!(at(totals.stalls(0)), Vec::<u128>::new());
    }
}
