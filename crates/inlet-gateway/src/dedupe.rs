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
        let span = window / GENERATIONS;
        let first = Generation { started: Instant::now(), ids: DashSet::new() };
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
        self.rotate(Instant::now());
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

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let dedupe = Deduplicator::new(Duration::from_millis(240), 1000);
        let a = dedupe_key("web", "m1");
        assert!(!dedupe.contains(a));
        dedupe.insert_all([a]);
        assert!(dedupe.contains(a));
        assert!(!dedupe.contains(dedupe_key("ios", "m1")), "sources are separate");
        std::thread::sleep(Duration::from_millis(120));
        dedupe.insert_all([dedupe_key("web", "m2")]);
        assert!(dedupe.contains(a), "still within the window");
        // Past window + one span, with inserts keeping the rotation going.
        for i in 0..40 {
            std::thread::sleep(Duration::from_millis(10));
            dedupe.insert_all([dedupe_key("web", &format!("later-{i}"))]);
        }
        assert!(!dedupe.contains(a), "forgotten after the window");
    }

    #[test]
    fn memory_stays_bounded() {
        let dedupe = Deduplicator::new(Duration::from_millis(24), 100);
        let mut evicted = 0;
        for round in 0..20 {
            std::thread::sleep(Duration::from_millis(2));
            evicted += dedupe.insert_all((0..30).map(|i| dedupe_key("s", &format!("{round}-{i}"))));
            assert!(dedupe.len() <= 100 || dedupe.generations.read().expect("lock").len() == 1);
            let counted: usize = dedupe.generations.read().expect("lock").iter().map(|g| g.ids.len()).sum();
            assert_eq!(dedupe.len(), counted);
        }
        assert!(evicted > 0);
    }
}
