//! Deduplication by `(source, messageId)` within a time window, in bounded memory.
//!
//! Ids are kept as 128-bit hashes (a false match is astronomically unlikely) in generations:
//! one set per `window / GENERATIONS` of time. A lookup checks every live generation; an
//! insert goes to the newest. Generations older than the window are dropped whole, and when
//! the total passes `max_entries` the oldest generation is dropped early (counted in
//! `inlet_dedupe_evicted_total`), so memory stays bounded whatever the traffic.
//!
//! Ids are remembered only after their events are durable, so a duplicate can never be
//! acknowledged in place of an original that was then lost. The price: two copies sent at the
//! same instant may both be stored (at-least-once, never at-most-once).

use std::collections::VecDeque;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashSet;

/// How many slices the window is cut into (an id lives between `window` and
/// `window × (1 + 1/GENERATIONS)`).
const GENERATIONS: u32 = 24;

#[derive(Debug)]
struct Generation {
    started: Instant,
    ids: DashSet<u128>,
}

#[derive(Debug)]
pub struct Deduplicator {
    window: Duration,
    span: Duration,
    max_entries: usize,
    generations: RwLock<VecDeque<Generation>>,
    /// Ids across all generations, kept alongside so the hot path never walks the sets.
    entries: AtomicUsize,
}

/// The key of one message.
pub fn dedupe_key(source: &str, message_id: &str) -> u128 {
    let mut buf = Vec::with_capacity(source.len() + message_id.len() + 1);
    buf.extend_from_slice(source.as_bytes());
    buf.push(0);
    buf.extend_from_slice(message_id.as_bytes());
    xxhash_rust::xxh3::xxh3_128(&buf)
}

impl Deduplicator {
    pub fn new(window: Duration, max_entries: usize) -> Deduplicator {
        Deduplicator::new_at(window, max_entries, Instant::now())
    }

    fn new_at(window: Duration, max_entries: usize, now: Instant) -> Deduplicator {
        let span = window / GENERATIONS;
        let first = Generation { started: now, ids: DashSet::new() };
        Deduplicator {
            window,
            span,
            max_entries,
            generations: RwLock::new(VecDeque::from([first])),
            entries: AtomicUsize::new(0),
        }
    }

    pub fn contains(&self, key: u128) -> bool {
        let generations = self.generations.read().expect("dedupe lock is never poisoned");
        generations.iter().any(|g| g.ids.contains(&key))
    }

    /// Remembers `keys`; returns how many older ids were forgotten early to stay in bounds.
    pub fn insert_all(&self, keys: impl IntoIterator<Item = u128>) -> u64 {
        self.insert_all_at(keys, Instant::now())
    }

    fn insert_all_at(&self, keys: impl IntoIterator<Item = u128>, now: Instant) -> u64 {
        self.rotate(now);
        let mut evicted = 0;
        {
            let generations = self.generations.read().expect("dedupe lock is never poisoned");
            let newest = generations.back().expect("there is always a generation");
            let added = keys.into_iter().filter(|key| newest.ids.insert(*key)).count();
            self.entries.fetch_add(added, Ordering::Relaxed);
        }
        if self.len() > self.max_entries {
            let mut generations = self.generations.write().expect("dedupe lock is never poisoned");
            while generations.len() > 1 && self.len() > self.max_entries {
                let dropped = generations.pop_front().map_or(0, |g| g.ids.len());
                self.entries.fetch_sub(dropped, Ordering::Relaxed);
                evicted += dropped as u64;
            }
        }
        evicted
    }

    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a new generation when the newest is a span old; drops expired ones.
    fn rotate(&self, now: Instant) {
        {
            let generations = self.generations.read().expect("dedupe lock is never poisoned");
            let newest = generations.back().expect("there is always a generation");
            if now.duration_since(newest.started) < self.span {
                return;
            }
        }
        let mut generations = self.generations.write().expect("dedupe lock is never poisoned");
        if generations.back().is_some_and(|g| now.duration_since(g.started) >= self.span) {
            generations.push_back(Generation { started: now, ids: DashSet::new() });
        }
        while generations.front().is_some_and(|g| now.duration_since(g.started) > self.window + self.span) {
            let dropped = generations.pop_front().map_or(0, |g| g.ids.len());
            self.entries.fetch_sub(dropped, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let start = Instant::now();
        let at = |d: Duration| start + d;
        let dedupe = Deduplicator::new_at(24 * HOUR, 1000, start);
        let a = dedupe_key("web", "m1");
        assert!(!dedupe.contains(a));
        dedupe.insert_all_at([a], at(Duration::ZERO));
        assert!(dedupe.contains(a));
        assert!(!dedupe.contains(dedupe_key("ios", "m1")), "sources are separate");
        // An insert every hour keeps generations rotating.
        for hour in 1..=24 {
            dedupe.insert_all_at([dedupe_key("web", &format!("h{hour}"))], at(hour * HOUR));
            assert!(dedupe.contains(a), "still remembered after {hour} h");
        }
        dedupe.insert_all_at([dedupe_key("web", "late")], at(26 * HOUR));
        assert!(!dedupe.contains(a), "forgotten once the window (plus one slice) has passed");
        assert!(dedupe.contains(dedupe_key("web", "h24")));
        let counted: usize = dedupe.generations.read().expect("lock").iter().map(|g| g.ids.len()).sum();
        assert_eq!(dedupe.len(), counted);
    }

    #[test]
    fn memory_stays_bounded() {
        let start = Instant::now();
        let dedupe = Deduplicator::new_at(24 * HOUR, 100, start);
        let mut evicted = 0;
        for hour in 0..20u32 {
            let now = start + hour * HOUR;
            evicted += dedupe.insert_all_at((0..30).map(|i| dedupe_key("s", &format!("{hour}-{i}"))), now);
            assert!(dedupe.len() <= 100, "{} entries", dedupe.len());
            let counted: usize = dedupe.generations.read().expect("lock").iter().map(|g| g.ids.len()).sum();
            assert_eq!(dedupe.len(), counted);
        }
        assert_eq!(evicted, 20 * 30 - dedupe.len() as u64, "every id forgotten early was counted");
        assert!(dedupe.contains(dedupe_key("s", "19-0")), "the newest ids are kept");
    }
}
