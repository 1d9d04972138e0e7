//! The live debugger's tap: a bounded sample of each source's stored events, for the page on the
//! admin listener (`/debugger`) to show as they arrive, and per-source rates of what happened
//! to its events over the last minutes.
//!
//! Decisions:
//! - **After the WAL.** Events are tapped once their append is durable, as stored (the WAL
//!   record, with the tracking plan's verdict), so the page shows what the lake and the
//!   destinations will get.
//! - **Bounded, and never in ingestion's way.** Per source, at most [`SAMPLE_PER_SECOND`] events a
//!   second are tapped (beyond it a request pays one atomic read); the last [`RECENT_EVENTS`]
//!   of them are kept for a viewer who opens the page, and each is offered to the open viewers
//!   through a broadcast channel of [`LIVE_BUFFER`] events: a viewer that falls behind loses
//!   the oldest (and is told how many), no request waits for it. At most [`MAX_VIEWERS`]
//!   streams are open at once.
//! - **Rates from counters.** Requests only bump counters (the Prometheus ones, and per-source
//!   rejections here); a task takes a snapshot every [`RATE_INTERVAL`] and keeps
//!   [`RATE_SNAPSHOTS`] of them, so rates cost ingestion nothing and cover the minutes before the
//!   page was opened.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use inlet_segment::RejectReason;
use tokio::sync::broadcast;

use crate::metrics::Metrics;

mod http;

pub use http::{operator_routes, page_routes};

/// Events kept per source for a viewer who opens the page.
pub const RECENT_EVENTS: usize = 500;
/// Events tapped per source and second at most.
pub const SAMPLE_PER_SECOND: u64 = 200;
/// Events a live viewer may be behind before it loses the oldest.
pub const LIVE_BUFFER: usize = 1024;
/// Live streams open at once, over all sources.
pub const MAX_VIEWERS: usize = 16;
pub const RATE_INTERVAL: Duration = Duration::from_secs(5);
/// Five minutes of snapshots.
pub const RATE_SNAPSHOTS: usize = 61;

/// One tapped event: its WAL position and the stored record (JSON).
#[derive(Debug)]
pub struct Tapped {
    pub lsn: u64,
    pub record: Box<str>,
}

#[derive(Debug)]
struct SourceTap {
    recent: Mutex<VecDeque<Arc<Tapped>>>,
    live: broadcast::Sender<Arc<Tapped>>,
    /// The second the sample budget is counted for, and what it has used.
    budget_second: AtomicU64,
    budget_used: AtomicU64,
    /// Events refused, by `RejectReason::ALL` index.
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

/// The tap and the rates of every configured source.
#[derive(Debug)]
pub struct Debugger {
    sources: HashMap<Arc<str>, SourceTap>,
    viewers: Arc<AtomicUsize>,
    snapshots: Mutex<VecDeque<Snapshot>>,
}

/// Cumulative counts of every source at one instant.
#[derive(Debug, Clone)]
struct Snapshot {
    /// Unix seconds.
    at: u64,
    sources: HashMap<Arc<str>, SourceCounts>,
}

#[derive(Debug, Clone, Default)]
struct SourceCounts {
    accepted: u64,
    duplicates: u64,
    suppressed: u64,
    violating: u64,
    blocked: u64,
    rejected: HashMap<&'static str, u64>,
}

/// A live viewer's place: dropped when its stream ends.
#[derive(Debug)]
pub struct ViewerSlot(Arc<AtomicUsize>);

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Debugger {
    pub fn new<'a>(sources: impl Iterator<Item = &'a str>) -> Debugger {
        let sources = sources
            .map(|name| {
                let tap = SourceTap {
                    recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
                    live: broadcast::channel(LIVE_BUFFER).0,
                    budget_second: AtomicU64::new(0),
                    budget_used: AtomicU64::new(0),
                    rejected: std::array::from_fn(|_| AtomicU64::new(0)),
                };
                (Arc::from(name), tap)
            })
            .collect();
        Debugger { sources, viewers: Arc::default(), snapshots: Mutex::new(VecDeque::with_capacity(RATE_SNAPSHOTS)) }
    }

    /// How many of `count` stored events of `source` to tap now (the rest go untapped).
    pub fn sample(&self, source: &str, count: usize) -> usize {
        let Some(tap) = self.sources.get(source) else { return 0 };
        let second = unix_seconds();
        if tap.budget_second.load(Ordering::Relaxed) != second {
            // A race between two requests at the turn of a second costs at most one extra budget.
            tap.budget_second.store(second, Ordering::Relaxed);
            tap.budget_used.store(0, Ordering::Relaxed);
        }
        let used = tap.budget_used.load(Ordering::Relaxed);
        if used >= SAMPLE_PER_SECOND {
            return 0;
        }
        let take = (count as u64).min(SAMPLE_PER_SECOND - used);
        tap.budget_used.fetch_add(take, Ordering::Relaxed);
        take as usize
    }

    /// Keeps stored events of `source` (at most what [`Debugger::sample`] allowed) and offers them
    /// to live viewers.
    pub fn tap(&self, source: &str, events: impl IntoIterator<Item = (u64, Box<str>)>) {
        let Some(tap) = self.sources.get(source) else { return };
        let events: Vec<Arc<Tapped>> =
            events.into_iter().map(|(lsn, record)| Arc::new(Tapped { lsn, record })).collect();
        {
            let mut recent = tap.recent.lock().unwrap_or_else(PoisonError::into_inner);
            for event in &events {
                if recent.len() == RECENT_EVENTS {
                    recent.pop_front();
                }
                recent.push_back(Arc::clone(event));
            }
        }
        if tap.live.receiver_count() > 0 {
            for event in events {
                // No receiver left is not an error: the viewer closed the page.
                let _ = tap.live.send(event);
            }
        }
    }

    pub fn record_rejection(&self, source: &str, reason: RejectReason) {
        if let (Some(tap), Some(index)) =
            (self.sources.get(source), RejectReason::ALL.iter().position(|r| *r == reason))
        {
            tap.rejected[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The kept events of `source`, oldest first, and a live subscription starting after them;
    /// `None` for an unknown source. Errors when every viewer slot is taken.
    pub fn watch(&self, source: &str) -> Option<Result<Watch, ()>> {
        let tap = self.sources.get(source)?;
        let taken = self.viewers.fetch_add(1, Ordering::AcqRel);
        let slot = ViewerSlot(Arc::clone(&self.viewers));
        if taken >= MAX_VIEWERS {
            return Some(Err(()));
        }
        // Subscribed under the lock, so no event is both in `recent` and received, nor in neither.
        let recent = tap.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let live = tap.live.subscribe();
        let backlog = recent.iter().cloned().collect();
        Some(Ok(Watch { backlog, live, _slot: slot }))
    }

    /// Records the counters' values now (called every [`RATE_INTERVAL`]).
    pub fn snapshot(&self, metrics: &Metrics) {
        let sources = self
            .sources
            .iter()
            .map(|(name, tap)| {
                let outcome = |o: &str| metrics.plan_events.with_label_values(&[name, o]).get();
                let rejected = RejectReason::ALL
                    .iter()
                    .zip(&tap.rejected)
                    .map(|(reason, count)| (reason.code(), count.load(Ordering::Relaxed)))
                    .filter(|(_, count)| *count > 0)
                    .collect();
                let counts = SourceCounts {
                    accepted: metrics.events_accepted.with_label_values(&[name]).get(),
                    duplicates: metrics.events_deduplicated.with_label_values(&[name]).get(),
                    suppressed: metrics.events_suppressed.with_label_values(&[name]).get(),
                    violating: outcome("violating"),
                    blocked: outcome("blocked"),
                    rejected,
                };
                (Arc::clone(name), counts)
            })
            .collect();
        let mut snapshots = self.snapshots.lock().unwrap_or_else(PoisonError::into_inner);
        if snapshots.len() == RATE_SNAPSHOTS {
            snapshots.pop_front();
        }
        snapshots.push_back(Snapshot { at: unix_seconds(), sources });
    }

    /// Per source, the events of each interval between snapshots (oldest first) and the
    /// intervals' ends: what the page draws.
    pub fn rates(&self) -> serde_json::Value {
        let snapshots = self.snapshots.lock().unwrap_or_else(PoisonError::into_inner);
        let pairs: Vec<(&Snapshot, &Snapshot)> = snapshots.iter().zip(snapshots.iter().skip(1)).collect();
        let mut sources = serde_json::Map::new();
        for name in self.sources.keys() {
            let series = |count: &dyn Fn(&SourceCounts) -> u64| -> Vec<u64> {
                pairs
                    .iter()
                    .map(|(before, after)| {
                        let at = |s: &Snapshot| s.sources.get(name).map_or(0, count);
                        at(after).saturating_sub(at(before))
                    })
                    .collect()
            };
            let mut rejected = serde_json::Map::new();
            for reason in RejectReason::ALL {
                let code = reason.code();
                let values = series(&|c| c.rejected.get(code).copied().unwrap_or(0));
                if values.iter().any(|v| *v > 0) {
                    rejected.insert(code.to_owned(), serde_json::json!(values));
                }
            }
            sources.insert(
                name.to_string(),
                serde_json::json!({
                    "accepted": series(&|c| c.accepted),
                    "duplicates": series(&|c| c.duplicates),
                    "suppressed": series(&|c| c.suppressed),
                    "violating": series(&|c| c.violating),
                    "blocked": series(&|c| c.blocked),
                    "rejected": rejected,
                }),
            );
        }
        let ends: Vec<u64> = pairs.iter().map(|(_, after)| after.at).collect();
        serde_json::json!({"interval_secs": RATE_INTERVAL.as_secs(), "ends": ends, "sources": sources})
    }
}

/// What a viewer starts with, and where it goes on from.
#[derive(Debug)]
pub struct Watch {
    pub backlog: Vec<Arc<Tapped>>,
    pub live: broadcast::Receiver<Arc<Tapped>>,
    _slot: ViewerSlot,
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(range: std::ops::Range<u64>) -> Vec<(u64, Box<str>)> {
        range.map(|lsn| (lsn, format!("{{\"lsn\":{lsn}}}").into_boxed_str())).collect()
    }

    #[test]
    fn the_sample_is_bounded_per_source_and_second() {
        let debugger = Debugger::new(["web", "app"].into_iter());
        assert_eq!(debugger.sample("web", 150), 150);
        assert_eq!(debugger.sample("web", 150), (SAMPLE_PER_SECOND - 150) as usize);
        assert_eq!(debugger.sample("web", 1), 0);
        assert_eq!(debugger.sample("app", 10), 10, "each source has its own budget");
        assert_eq!(debugger.sample("unknown", 10), 0);
    }

    #[test]
    fn a_viewer_gets_the_recent_events_then_live_ones_and_a_slow_one_loses_the_oldest() {
        let debugger = Debugger::new(["web"].into_iter());
        debugger.tap("web", events(0..(RECENT_EVENTS as u64 + 20)));
        let mut watch = debugger.watch("web").expect("known").expect("a slot");
        assert_eq!(watch.backlog.len(), RECENT_EVENTS);
        assert_eq!(watch.backlog[0].lsn, 20, "the oldest were let go");
        debugger.tap("web", events(1000..1001));
        assert_eq!(watch.live.try_recv().expect("live").lsn, 1000);
        debugger.tap("web", events(2000..(2000 + LIVE_BUFFER as u64 + 5)));
        match watch.live.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(lost)) => assert_eq!(lost, 5),
            other => panic!("expected to have lagged: {other:?}"),
        }
        assert_eq!(watch.live.try_recv().expect("after the loss").lsn, 2005);
    }

    #[test]
    fn viewers_are_limited_and_their_slots_come_back() {
        let debugger = Debugger::new(["web"].into_iter());
        let watches: Vec<Watch> =
            (0..MAX_VIEWERS).map(|_| debugger.watch("web").expect("known").expect("slot")).collect();
        assert!(debugger.watch("web").expect("known").is_err());
        drop(watches);
        assert!(debugger.watch("web").expect("known").is_ok());
        assert!(debugger.watch("nope").is_none());
    }

    #[test]
    fn rates_are_differences_between_snapshots() {
        let metrics = Metrics::new();
        let debugger = Debugger::new(["web"].into_iter());
        debugger.snapshot(&metrics);
        metrics.events_accepted.with_label_values(&["web"]).inc_by(7);
        debugger.record_rejection("web", RejectReason::MissingId);
        debugger.snapshot(&metrics);
        metrics.plan_events.with_label_values(&["web", "blocked"]).inc_by(2);
        debugger.snapshot(&metrics);
        let rates = debugger.rates();
        assert_eq!(rates["sources"]["web"]["accepted"], serde_json::json!([7, 0]));
        assert_eq!(rates["sources"]["web"]["blocked"], serde_json::json!([0, 2]));
        assert_eq!(rates["sources"]["web"]["rejected"][RejectReason::MissingId.code()], serde_json::json!([1, 0]));
    }
}
