//! What one source, or one client address, may take from the others.
//!
//! - **Event rate** (`[[sources]] events_per_sec`, `burst_events`): a GCRA token bucket per
//!   source, charged a request's events after they are normalised and before the WAL; a
//!   request that does not fit whole is refused with `429 source_rate_limited` and a
//!   `Retry-After` of when it would. Nothing of it is stored, so the SDK's retry is exact.
//! - **WAL share** (`limits.source_share` of `wal.max_disk_bytes`, with more than one source):
//!   the bytes each source appended that are still retained in the WAL (not yet confirmed by
//!   every consumer), counted per LSN range; past its share, `429 source_storage_full`, while
//!   the other sources go on until the WAL's own budget (`503 storage_full`).
//! - **Refused requests** (`limits.refused_per_minute` per client address): a client whose
//!   requests keep being refused for their content (`400`, `413`: each cost a parse) is answered
//!   `429 client_throttled` for every request until its rate falls back, before any body is read.
//! - **Failed authentications** (`limits.failed_auth_per_minute` per client address): a client
//!   that guesses write keys is answered `429 auth_throttled` for every request until its rate
//!   of failures falls back, so the settings route and the ingestion routes are no key oracle.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::SourceConfig;
use crate::error::ApiError;

/// Appends of one source are counted together until their bytes pass this, so the ledger of
/// a source holds one entry per this many bytes of WAL (a few hundred for the default budget).
const LEDGER_ENTRY_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct SourceLimits {
    rates: HashMap<Arc<str>, DefaultDirectRateLimiter>,
    ledgers: HashMap<Arc<str>, Mutex<Ledger>>,
    /// `None` with a single source: its share is the whole budget.
    wal_share_bytes: Option<u64>,
    failed_auth: ClientThrottle,
    refusals: ClientThrottle,
}

/// A rate of some failure per client address (GCRA, a burst of a minute's worth); a client past
/// it is blocked until the rate allows one more.
#[derive(Debug)]
struct ClientThrottle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Clients over their rate, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    blocked_count: AtomicUsize,
}

impl ClientThrottle {
    fn new(per_minute: u32) -> ClientThrottle {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        ClientThrottle {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: Mutex::default(),
            blocked_count: AtomicUsize::new(0),
        }
    }

    fn blocked(&self, client: IpAddr) -> bool {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.get(&client).is_some_and(|until| *until > Instant::now())
    }

    /// Counts one failure; past the rate, blocks the client and says so.
    fn record(&self, client: IpAddr) -> bool {
        let Err(not_until) = self.limiter.check_key(&client) else { return false };
        // The limiter's own clock: another clock's instants are not comparable.
        let wait = not_until.wait_time_from(self.limiter.clock().now());
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.insert(client, Instant::now() + wait.max(Duration::from_secs(1)));
        self.blocked_count.store(blocked.len(), Ordering::Relaxed);
        true
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        blocked.retain(|_, until| *until > now);
        self.blocked_count.store(blocked.len(), Ordering::Relaxed);
    }
}

/// A source's appends still in the WAL: `(last LSN, bytes)` per group of appends, oldest first.
#[derive(Debug, Default)]
struct Ledger {
    entries: VecDeque<(u64, u64)>,
    retained: u64,
}

impl Ledger {
    fn forget_before(&mut self, oldest_lsn: u64) {
        while let Some(&(last_lsn, bytes)) = self.entries.front() {
            if last_lsn >= oldest_lsn {
                break;
            }
            self.retained -= bytes;
            self.entries.pop_front();
        }
    }
}

impl SourceLimits {
    pub fn new(
        sources: &[SourceConfig],
        wal_disk_bytes: u64,
        source_share: f64,
        failed_auth_per_minute: u32,
        refused_per_minute: u32,
    ) -> SourceLimits {
        let rates = sources
            .iter()
            .filter_map(|source| {
                let rate = NonZeroU32::new(source.events_per_sec?)?;
                // At least one full batch fits in the burst, or a batch could never be accepted.
                let burst = source.burst_events.unwrap_or(rate.get().max(2500));
                let burst = NonZeroU32::new(burst).unwrap_or(rate);
                Some((Arc::from(source.name.as_str()), RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))))
            })
            .collect();
        let ledgers = sources.iter().map(|s| (Arc::from(s.name.as_str()), Mutex::default())).collect();
        SourceLimits {
            rates,
            ledgers,
            wal_share_bytes: (sources.len() > 1).then_some((wal_disk_bytes as f64 * source_share) as u64),
            failed_auth: ClientThrottle::new(failed_auth_per_minute),
            refusals: ClientThrottle::new(refused_per_minute),
        }
    }

    /// Charges `events` to the source's rate, or says when to retry.
    pub fn charge_events(&self, source: &str, events: usize) -> Result<(), ApiError> {
        let Some(limiter) = self.rates.get(source) else { return Ok(()) };
        let Some(events) = NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)) else { return Ok(()) };
        match limiter.check_n(events) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                // The limiter's own clock: another clock's instants are not comparable.
                let wait = not_until.wait_time_from(limiter.clock().now());
                Err(ApiError::SourceRateLimited { retry_after_secs: retry_after(wait) })
            }
            // More events than the whole burst: retrying cannot help, but a smaller batch can;
            // `burst_events` is at least a full batch unless configured lower.
            Err(_) => Err(ApiError::SourceRateLimited { retry_after_secs: 1 }),
        }
    }

    /// Whether the source may append more, given the WAL's oldest retained LSN.
    pub fn check_wal_share(&self, source: &str, oldest_lsn: u64) -> Result<(), ApiError> {
        let (Some(share), Some(ledger)) = (self.wal_share_bytes, self.ledgers.get(source)) else { return Ok(()) };
        let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.forget_before(oldest_lsn);
        if ledger.retained >= share { Err(ApiError::SourceStorageFull) } else { Ok(()) }
    }

    /// Records an append of `bytes` by `source` that ended at `last_lsn`.
    pub fn record_append(&self, source: &str, last_lsn: u64, bytes: u64) {
        let Some(ledger) = self.ledgers.get(source) else { return };
        let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.retained += bytes;
        match ledger.entries.back_mut() {
            Some((last, grouped)) if *grouped < LEDGER_ENTRY_BYTES => {
                *last = (*last).max(last_lsn);
                *grouped += bytes;
            }
            _ => ledger.entries.push_back((last_lsn, bytes)),
        }
    }

    /// The bytes of `source` still in the WAL, as last counted.
    pub fn retained_bytes(&self, source: &str) -> u64 {
        self.ledgers.get(source).map_or(0, |l| l.lock().unwrap_or_else(|e| e.into_inner()).retained)
    }

    /// Whether `client` is over its failed-authentication rate (its requests get `429`).
    pub fn auth_throttled(&self, client: IpAddr) -> bool {
        self.failed_auth.blocked(client)
    }

    /// Counts one failed authentication of `client`; past its rate, blocks it and says so: this
    /// failure is then answered as throttled too, so a client gets exactly its rate of `401`s.
    pub fn record_failed_auth(&self, client: IpAddr) -> bool {
        self.failed_auth.record(client)
    }

    /// Whether `client` is over its rate of refused requests (its requests get `429`).
    pub fn refusals_throttled(&self, client: IpAddr) -> bool {
        self.refusals.blocked(client)
    }

    /// Counts one request of `client` refused for its content (`400`, `413`): each cost a
    /// parse, and a client that keeps sending them is spending the gateway's CPU, not sending
    /// events.
    pub fn record_refusal(&self, client: IpAddr) -> bool {
        self.refusals.record(client)
    }

    /// Drops the state of clients that have not failed for a while and the blocks that ended,
    /// so both stay bounded (called every few seconds).
    pub fn forget_idle_clients(&self) {
        self.failed_auth.forget_idle();
        self.refusals.forget_idle();
    }
}

fn retry_after(wait: Duration) -> u32 {
    u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(rate: Option<u32>) -> Vec<SourceConfig> {
        let mut web = SourceConfig::new("web", "k1");
        web.events_per_sec = rate;
        web.burst_events = rate;
        vec![web, SourceConfig::new("ios", "k2")]
    }

    #[test]
    fn a_source_over_its_rate_is_refused_and_the_others_are_not() {
        let limits = SourceLimits::new(&sources(Some(100)), 1 << 30, 0.5, 30, 120);
        limits.charge_events("web", 100).expect("the burst");
        let refused = limits.charge_events("web", 50).expect_err("over the rate");
        assert!(matches!(refused, ApiError::SourceRateLimited { retry_after_secs: 1 }), "{refused:?}");
        limits.charge_events("ios", 100_000).expect("ios has no rate");
        assert!(limits.charge_events("web", 101).is_err(), "more than the burst never fits");
    }

    #[test]
    fn a_source_over_its_wal_share_is_refused_until_the_wal_moves_on() {
        let limits = SourceLimits::new(&sources(None), 1000, 0.5, 30, 120);
        limits.record_append("web", 10, 300);
        limits.check_wal_share("web", 0).expect("under half");
        limits.record_append("web", 20, 300);
        assert!(matches!(limits.check_wal_share("web", 0), Err(ApiError::SourceStorageFull)));
        limits.check_wal_share("ios", 0).expect("ios is untouched");
        // Both appends are in one ledger entry (ending at LSN 20): confirmed once LSN 21 is the oldest.
        limits.check_wal_share("web", 20).expect_err("LSN 20 is still retained");
        limits.check_wal_share("web", 21).expect("confirmed and deleted");
        assert_eq!(limits.retained_bytes("web"), 0);
    }

    #[test]
    fn a_single_source_has_the_whole_wal() {
        let limits = SourceLimits::new(&[SourceConfig::new("web", "k")], 1000, 0.5, 30, 120);
        limits.record_append("web", 10, 900);
        limits.check_wal_share("web", 0).expect("no share with one source");
    }

    #[test]
    fn a_client_guessing_keys_is_blocked_and_others_are_not() {
        let limits = SourceLimits::new(&sources(None), 1000, 0.5, 5, 120);
        let guesser: IpAddr = "192.0.2.66".parse().expect("ip");
        for _ in 0..5 {
            assert!(!limits.auth_throttled(guesser));
            assert!(!limits.record_failed_auth(guesser));
        }
        assert!(!limits.auth_throttled(guesser), "five failures are within the burst");
        assert!(limits.record_failed_auth(guesser), "the sixth is over the rate");
        assert!(limits.auth_throttled(guesser));
        assert!(!limits.auth_throttled("192.0.2.67".parse().expect("ip")));
        limits.forget_idle_clients();
        assert!(limits.auth_throttled(guesser), "a running block is kept");
    }
}
