//! What a run counts: every outcome goes to one `Recorder` (latency histogram, answers by
//! status, acknowledged events), and every acknowledged (2xx) request's id range to the acks
//! file: the first line is the run id, then one `first count` line per request, in the order
//! the answers came.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
}

/// Where every outcome goes, shared by the workers (one short lock per request: cheaper than
/// handing each outcome to another task).
pub struct Recorder {
    pub totals: Totals,
    pub acks: Option<AcksFile>,
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
    recorder.lock().unwrap_or_else(PoisonError::into_inner).record(outcome);
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
        let mut recorder = Recorder { totals, acks: Some(AcksFile::create(&path, "run7").expect("create")) };
        let outcome = |status, first| Outcome { latency: Duration::from_micros(1500), status, first, count: 2 };
        for n in 0..(ACKS_PER_HANDOFF as u64 + 10) {
            recorder.record(&outcome(200, 2 * n));
        }
        recorder.record(&outcome(429, 999_999));
        recorder.record(&outcome(0, 999_999));
        recorder.acks.take().expect("acks").finish().expect("finish");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + ACKS_PER_HANDOFF + 10);
        assert_eq!((lines[0], lines[1], lines[ACKS_PER_HANDOFF + 10]), ("run7", "0 2", "8210 2"));
        let totals = &recorder.totals;
        assert_eq!((totals.requests, totals.acknowledged_requests, totals.transport_errors), (4108, 4106, 1));
        assert_eq!((totals.acknowledged_events, totals.statuses.get(&429)), (8212, Some(&1)));
    }
}
