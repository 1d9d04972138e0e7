//! Deduplication by `(source, messageId)` within a time window, in bounded memory.
//!
//! Ids are kept as 128-bit hashes (a false match is astronomically unlikely) in a set, and
//! listed again by generation: one list per `window / GENERATIONS` of time, or per
//! `max_entries / GENERATIONS` ids when traffic fills that first. A lookup is one
//! probe of the set however long the window (a set per generation made it one probe per
//! generation, each a cache miss once the window was full); an insert goes to the set and to
//! the newest list. A generation older than the window is dropped by taking its ids out of the
//! set, and when the set passes its bound the oldest generation is dropped early (counted in
//! `inlet_dedupe_evicted_total`), so memory stays bounded whatever the traffic.
//!
//! The index is cut into shards by the key's high bits, each with its own lock, set,
//! generations and share of `max_entries` (one shard per 64 Ki ids of the bound, at most 64).
//! Why: with one set, dropping a generation at the 2 M default meant 83,000 removals, and the
//! set's periodic rehash (its deleted slots pile up) moved all 2 M ids, 5–45 ms under a lock
//! that every request takes; both runtime threads waited, and under load such a stall turned
//! into hundreds of milliseconds of queueing and 429s. A shard does a thirty-second of that
//! work, and only requests whose ids fall in it wait. Small bounds get one shard, which is the
//! single-set behaviour exactly.
//!
//! Ids are remembered only after their events are durable, so a duplicate can never be
//! acknowledged in place of an original that was then lost. The price: two copies sent at the
//! same instant may both be stored (at-least-once, never at-most-once).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many slices the window is cut into (an id lives between `window` and
/// `window × (1 + 1/GENERATIONS)`).
const GENERATIONS: u32 = 24;
/// The share of `max_entries` below which the index is not cut further.
const ENTRIES_PER_SHARD: usize = 65_536;
/// A power of two, so rounding the count up never passes it.
const MAX_SHARDS: usize = 64;

/// The keys are xxh3 hashes already: their low 64 bits serve as the set's hash.
#[derive(Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

#[derive(Debug)]
struct Generation {
    started: Instant,
    ids: Vec<u128>,
}

/// A set of keys, hashed by what they already are.
pub type KeySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// One shard.
#[derive(Debug)]
struct Index {
    ids: KeySet,
    /// Oldest first; never empty.
    generations: VecDeque<Generation>,
}

impl Index {
    /// Forgets the oldest generation; returns how many ids went with it.
    fn drop_oldest(&mut self) -> usize {
        let Some(oldest) = self.generations.pop_front() else { return 0 };
        let before = self.ids.len();
        for id in &oldest.ids {
            self.ids.remove(id);
        }
        before - self.ids.len()
    }
}

#[derive(Debug)]
pub struct Deduplicator {
    window: Duration,
    span: Duration,
    /// Each shard's bound: its share of `max_entries`.
    shard_max_entries: usize,
    /// A power of two in number.
    shards: Box<[RwLock<Index>]>,
    /// The sets' total size, kept alongside so metrics never take a lock.
    entries: AtomicUsize,
    /// The keys' hash seed, secret and new at every start.
    seed: u64,
}

impl Deduplicator {
    /// The key of one message. Seeded with a secret chosen at start (the index is rebuilt from
    /// the WAL at every start, so the seed need not persist): message ids are the client's
    /// choice, and with an unseeded hash a client could precompute ids that collide, to pile
    /// them into one shard or to make another client's events look like duplicates.
    pub fn key(&self, source: &str, message_id: &str) -> u128 {
        let mut buf = Vec::with_capacity(source.len() + message_id.len() + 1);
        buf.extend_from_slice(source.as_bytes());
        buf.push(0);
        buf.extend_from_slice(message_id.as_bytes());
        xxhash_rust::xxh3::xxh3_128_with_seed(&buf, self.seed)
    }

    pub fn new(window: Duration, max_entries: usize) -> Deduplicator {
        Deduplicator::new_at(window, max_entries, Instant::now())
    }

    fn new_at(window: Duration, max_entries: usize, now: Instant) -> Deduplicator {
        let shards = (max_entries / ENTRIES_PER_SHARD).clamp(1, MAX_SHARDS).next_power_of_two();
        let shard = || {
            let first = Generation { started: now, ids: Vec::new() };
            RwLock::new(Index { ids: HashSet::default(), generations: VecDeque::from([first]) })
        };
        Deduplicator {
            window,
            span: window / GENERATIONS,
            shard_max_entries: (max_entries / shards).max(1),
            shards: (0..shards).map(|_| shard()).collect(),
            entries: AtomicUsize::new(0),
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
        }
    }

    /// The set's own hash uses the low bits, so the shard comes from the high ones.
    fn shard(&self, key: u128) -> &RwLock<Index> {
        &self.shards[(key >> 64) as usize & (self.shards.len() - 1)]
    }

    /// One key's `known` (the ingest path asks for a whole request at once).
    #[cfg(test)]
    fn contains(&self, key: u128) -> bool {
        self.known(&[key])[0]
    }

    /// For each key, whether it was seen within the window.
    pub fn known(&self, keys: &[u128]) -> Vec<bool> {
        keys.iter()
            .map(|key| self.shard(*key).read().expect("dedupe lock is never poisoned").ids.contains(key))
            .collect()
    }

    /// Remembers `keys`; returns how many older ids were forgotten early to stay in bounds.
    pub fn insert_all(&self, keys: impl IntoIterator<Item = u128>) -> u64 {
        self.insert_all_at(keys, Instant::now())
    }

    fn insert_all_at(&self, keys: impl IntoIterator<Item = u128>, now: Instant) -> u64 {
        let mut evicted = 0;
        for key in keys {
            let mut shard = self.shard(key).write().expect("dedupe lock is never poisoned");
            let before = shard.ids.len();
            self.rotate(&mut shard, now);
            evicted += self.insert(&mut shard, key, now);
            let after = shard.ids.len();
            drop(shard);
            if after >= before {
                self.entries.fetch_add(after - before, Ordering::Relaxed);
            } else {
                self.entries.fetch_sub(before - after, Ordering::Relaxed);
            }
        }
        evicted
    }

    /// Inserts into one shard; returns the ids dropped early to keep the shard in its bound.
    fn insert(&self, shard: &mut Index, key: u128, now: Instant) -> u64 {
        let Index { ids, generations } = &mut *shard;
        if !ids.insert(key) {
            return 0;
        }
        // A generation also ends when it holds its share of the bound, so there is always an
        // older one to drop when traffic outruns the budget within a span.
        let full = (self.shard_max_entries / GENERATIONS as usize).max(1);
        if generations.back().is_none_or(|g| g.ids.len() >= full) {
            generations.push_back(Generation { started: now, ids: Vec::with_capacity(full) });
        }
        generations.back_mut().expect("just ensured").ids.push(key);
        let mut evicted = 0;
        while shard.generations.len() > 1 && shard.ids.len() > self.shard_max_entries {
            evicted += shard.drop_oldest() as u64;
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
    fn rotate(&self, index: &mut Index, now: Instant) {
        if index.generations.back().is_some_and(|g| now.duration_since(g.started) >= self.span) {
            index.generations.push_back(Generation { started: now, ids: Vec::new() });
        }
        while index.generations.front().is_some_and(|g| now.duration_since(g.started) > self.window + self.span) {
            index.drop_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Ids in the generation lists, each of which must be in the set.
    fn listed(dedupe: &Deduplicator) -> usize {
        let mut total = 0;
        for shard in &dedupe.shards {
            let index = shard.read().expect("lock");
            let listed: Vec<u128> = index.generations.iter().flat_map(|g| g.ids.iter().copied()).collect();
            assert!(listed.iter().all(|id| index.ids.contains(id)));
            assert_eq!(listed.len(), index.ids.len(), "every id in the set is listed once");
            total += listed.len();
        }
        total
    }

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let start = Instant::now();
        let at = |d: Duration| start + d;
        let dedupe = Deduplicator::new_at(24 * HOUR, 1000, start);
        let a = dedupe.key("web", "m1");
        assert!(!dedupe.contains(a));
        dedupe.insert_all_at([a], at(Duration::ZERO));
        assert!(dedupe.contains(a));
        assert!(!dedupe.contains(dedupe.key("ios", "m1")), "sources are separate");
        // An insert every hour keeps generations rotating.
        for hour in 1..=24 {
            dedupe.insert_all_at([dedupe.key("web", &format!("h{hour}"))], at(hour * HOUR));
            assert!(dedupe.contains(a), "still remembered after {hour} h");
        }
        dedupe.insert_all_at([dedupe.key("web", "late")], at(26 * HOUR));
        assert!(!dedupe.contains(a), "forgotten once the window (plus one slice) has passed");
        assert!(dedupe.contains(dedupe.key("web", "h24")));
        assert_eq!(dedupe.len(), listed(&dedupe));
    }

    #[test]
    fn memory_stays_bounded() {
        let start = Instant::now();
        let dedupe = Deduplicator::new_at(24 * HOUR, 100, start);
        let mut evicted = 0;
        for hour in 0..20u32 {
            let now = start + hour * HOUR;
            evicted += dedupe.insert_all_at((0..30).map(|i| dedupe.key("s", &format!("{hour}-{i}"))), now);
            assert!(dedupe.len() <= 100, "{} entries", dedupe.len());
            assert_eq!(dedupe.len(), listed(&dedupe));
        }
        assert_eq!(evicted, 20 * 30 - dedupe.len() as u64, "every id forgotten early was counted");
        assert!(dedupe.contains(dedupe.key("s", "19-0")), "the newest ids are kept");
    }

    #[test]
    fn memory_stays_bounded_within_one_time_slice() {
        let start = Instant::now();
        let dedupe = Deduplicator::new_at(24 * HOUR, 240, start);
        let mut evicted = 0;
        for batch in 0..50u32 {
            evicted += dedupe.insert_all_at((0..100).map(|i| dedupe.key("s", &format!("{batch}-{i}"))), start);
            assert!(dedupe.len() <= 240, "{} entries", dedupe.len());
            assert_eq!(dedupe.len(), listed(&dedupe));
        }
        assert_eq!(evicted, 50 * 100 - dedupe.len() as u64);
        assert!(dedupe.len() >= 240 - 240 / GENERATIONS as usize, "only what the bound requires is dropped");
        assert!(dedupe.contains(dedupe.key("s", "49-99")));
        assert!(!dedupe.contains(dedupe.key("s", "0-0")));
    }

    /// At the default bound the index is cut into 32 shards: the bound holds in total, ids
    /// spread over every shard, and dropping a generation early takes out a shard's small
    /// share, never a twenty-fourth of the whole index at once.
    #[test]
    fn large_bounds_are_sharded_and_evict_a_shards_share_at_a_time() {
        let start = Instant::now();
        let max_entries = 2_000_000;
        let dedupe = Deduplicator::new_at(24 * HOUR, max_entries, start);
        assert_eq!(dedupe.shards.len(), 32);
        let per_generation = (max_entries / 32 / GENERATIONS as usize) as u64;
        let mut evicted = 0;
        for n in 0..2_300_000u64 {
            let forgotten = dedupe.insert_all_at([xxhash_rust::xxh3::xxh3_128(&n.to_le_bytes())], start);
            assert!(forgotten <= per_generation, "{forgotten} ids dropped at once");
            evicted += forgotten;
        }
        assert!(dedupe.len() <= max_entries && dedupe.len() >= max_entries - 32 * per_generation as usize);
        assert_eq!(dedupe.len(), listed(&dedupe));
        assert_eq!(evicted, 2_300_000 - dedupe.len() as u64);
        for shard in &dedupe.shards {
            let ids = shard.read().expect("lock").ids.len();
            assert!(ids > max_entries / 32 * 9 / 10 && ids <= max_entries / 32, "{ids} ids in one shard");
        }
        assert!(dedupe.contains(xxhash_rust::xxh3::xxh3_128(&2_299_999u64.to_le_bytes())));
    }

    #[test]
    fn looks_up_a_request_at_once_and_ignores_repeats_within_it() {
        let dedupe = Deduplicator::new(24 * HOUR, 100);
        let (a, b) = (dedupe.key("s", "a"), dedupe.key("s", "b"));
        dedupe.insert_all([a, a]);
        assert_eq!(dedupe.len(), 1);
        assert_eq!(dedupe.known(&[b, a, b]), [false, true, false]);
        assert_eq!(listed(&dedupe), 1);
    }
}
