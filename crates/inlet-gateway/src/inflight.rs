//! The in-flight budgets: what requests being handled may hold at once.
//!
//! Every ingestion request takes one of `limits.max_inflight_requests` slots and one of its
//! client address's `limits.max_inflight_requests_per_client`, and reserves from
//! `limits.max_inflight_bytes` the bytes it actually holds: its body as the bytes arrive (never
//! a declared `Content-Length`, which costs an attacker nothing to send), the decompressed body
//! while it is decoded, and the normalised events it builds from it while they await the WAL.
//! Once its source is known (the header's key at once, a body key after parsing), the request
//! also counts against that source's share of both budgets, when more than one source is
//! configured. All is given back when the request is answered.
//!
//! Whatever does not fit is refused at once with `429`: a full global budget is
//! `overloaded`, a client over its slots `client_overloaded`, a source over its share
//! `source_overloaded`. The byte budget bounds memory however many clients connect (a slow
//! client holds only what it has sent); the request budget bounds the queue in front of the
//! CPU and the WAL; the per-client and per-source shares keep one client or one source from
//! taking either from the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::per_client::{ClientSlot, PerClient};

/// Bytes are counted in units of this size (one semaphore permit each).
const UNIT: usize = 1024;

/// What the budgets are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLimits {
    pub bytes: usize,
    pub requests: usize,
    pub requests_per_client: usize,
    /// The share of `bytes` and `requests` one source may hold (1.0: no limit).
    pub source_share: f64,
}

#[derive(Debug)]
pub struct InflightBudget {
    permits: Arc<Semaphore>,
    total_units: usize,
    gauge: IntGauge,
    requests: Arc<Semaphore>,
    requests_gauge: IntGauge,
    per_client: Arc<PerClient>,
    sources: HashMap<Arc<str>, Arc<SourceShare>>,
    source_max_units: usize,
    source_max_requests: usize,
}

/// What one source holds now.
#[derive(Debug, Default)]
struct SourceShare {
    units: AtomicUsize,
    requests: AtomicUsize,
}

impl InflightBudget {
    pub fn new(
        limits: BudgetLimits,
        sources: impl IntoIterator<Item = Arc<str>>,
        gauge: IntGauge,
        requests_gauge: IntGauge,
    ) -> Arc<InflightBudget> {
        let names: Vec<Arc<str>> = sources.into_iter().collect();
        let total_units = limits.bytes / UNIT;
        let share = |total: usize| ((total as f64 * limits.source_share).ceil() as usize).clamp(1, total.max(1));
        Arc::new(InflightBudget {
            permits: Arc::new(Semaphore::new(total_units)),
            total_units,
            gauge,
            requests: Arc::new(Semaphore::new(limits.requests)),
            requests_gauge,
            per_client: PerClient::new(limits.requests_per_client),
            // With one source there is no other to protect: its share is the whole budget.
            sources: if names.len() > 1 {
                names.into_iter().map(|name| (name, Arc::default())).collect()
            } else {
                HashMap::new()
            },
            source_max_units: share(total_units),
            source_max_requests: share(limits.requests),
        })
    }

    /// A request slot for `client` with no bytes yet (to grow as they arrive), or a `429`.
    pub fn reservation(self: &Arc<Self>, client: IpAddr) -> Result<Reservation, ApiError> {
        let slot = Arc::clone(&self.requests).try_acquire_owned().map_err(|_| ApiError::Overloaded)?;
        let client_slot = self.per_client.take(client).ok_or(ApiError::ClientOverloaded)?;
        self.requests_gauge.inc();
        Ok(Reservation { budget: Arc::clone(self), units: 0, source: None, _slot: slot, _client_slot: client_slot })
    }

    /// Bytes currently reserved.
    pub fn reserved_bytes(&self) -> usize {
        (self.total_units - self.permits.available_permits()) * UNIT
    }
}

/// Bytes and slots held by one request; all given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<InflightBudget>,
    units: usize,
    source: Option<Arc<SourceShare>>,
    _slot: OwnedSemaphorePermit,
    _client_slot: ClientSlot,
}

impl Reservation {
    /// Charges the request to `source` from now on: its request and what it holds so far.
    /// With a single source (or one unknown to the budget) nothing is limited.
    pub fn assign_source(&mut self, source: &str) -> Result<(), ApiError> {
        if self.source.is_some() {
            return Ok(());
        }
        let Some(share) = self.budget.sources.get(source) else { return Ok(()) };
        if share.requests.load(Ordering::Relaxed) >= self.budget.source_max_requests
            || share.units.load(Ordering::Relaxed) + self.units > self.budget.source_max_units
        {
            return Err(ApiError::SourceOverloaded);
        }
        share.requests.fetch_add(1, Ordering::Relaxed);
        share.units.fetch_add(self.units, Ordering::Relaxed);
        self.source = Some(Arc::clone(share));
        Ok(())
    }

    /// Grows the reservation to cover `bytes`, or answers `429`.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), ApiError> {
        let wanted = bytes.div_ceil(UNIT);
        if wanted <= self.units {
            return Ok(());
        }
        let more = wanted - self.units;
        if let Some(share) = &self.source
            && share.units.load(Ordering::Relaxed) + more > self.budget.source_max_units
        {
            return Err(ApiError::SourceOverloaded);
        }
        let permits = u32::try_from(more).map_err(|_| ApiError::Overloaded)?;
        self.budget.permits.try_acquire_many(permits).map_err(|_| ApiError::Overloaded)?.forget();
        if let Some(share) = &self.source {
            share.units.fetch_add(more, Ordering::Relaxed);
        }
        self.units = wanted;
        self.budget.gauge.add((more * UNIT) as i64);
        Ok(())
    }

    /// Bytes reserved so far.
    pub fn bytes(&self) -> usize {
        self.units * UNIT
    }

    /// Gives back everything beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(UNIT).min(self.units);
        self.release(self.units - keep);
    }

    fn release(&mut self, units: usize) {
        if units > 0 {
            self.budget.permits.add_permits(units);
            if let Some(share) = &self.source {
                share.units.fetch_sub(units, Ordering::Relaxed);
            }
            self.units -= units;
            self.budget.gauge.sub((units * UNIT) as i64);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release(self.units);
        if let Some(share) = &self.source {
            share.requests.fetch_sub(1, Ordering::Relaxed);
        }
        self.budget.requests_gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limits: BudgetLimits, sources: &[&str]) -> (Arc<InflightBudget>, IntGauge, IntGauge) {
        let gauge = IntGauge::new("test_inflight", "test").expect("gauge");
        let requests = IntGauge::new("test_requests", "test").expect("gauge");
        let budget =
            InflightBudget::new(limits, sources.iter().map(|s| Arc::from(*s)), gauge.clone(), requests.clone());
        (budget, gauge, requests)
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn reservations_grow_shrink_and_return_everything() {
        let limits = BudgetLimits { bytes: 10 * UNIT, requests: 2, requests_per_client: 2, source_share: 1.0 };
        let (budget, gauge, requests) = budget(limits, &[]);
        let mut a = budget.reservation(CLIENT).expect("a slot");
        a.grow_to(3 * UNIT + 1).expect("fits");
        assert_eq!(budget.reserved_bytes(), 4 * UNIT);
        let mut b = budget.reservation(CLIENT).expect("a slot");
        assert!(matches!(budget.reservation(CLIENT), Err(ApiError::Overloaded)), "both slots are taken");
        assert_eq!(requests.get(), 2);
        assert!(matches!(b.grow_to(7 * UNIT), Err(ApiError::Overloaded)));
        b.grow_to(6 * UNIT).expect("fits exactly");
        a.shrink_to(UNIT);
        assert_eq!(budget.reserved_bytes(), 7 * UNIT);
        assert_eq!(gauge.get(), 7 * UNIT as i64);
        drop(a);
        drop(b);
        assert_eq!(budget.reserved_bytes(), 0);
        assert_eq!(gauge.get(), 0);
        assert_eq!(requests.get(), 0);
        assert!(budget.reservation(CLIENT).is_ok(), "slots come back");
    }

    #[test]
    fn one_client_cannot_take_every_slot() {
        let limits = BudgetLimits { bytes: 10 * UNIT, requests: 10, requests_per_client: 2, source_share: 1.0 };
        let (budget, _, _) = budget(limits, &[]);
        let held = [budget.reservation(CLIENT).expect("1"), budget.reservation(CLIENT).expect("2")];
        assert!(matches!(budget.reservation(CLIENT), Err(ApiError::ClientOverloaded)));
        let other: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(budget.reservation(other).is_ok(), "another client is untouched");
        drop(held);
        assert!(budget.reservation(CLIENT).is_ok(), "the client's slots come back");
        assert!(budget.per_client.is_empty(), "no entry is left for idle clients");
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let limits = BudgetLimits { bytes: 10 * UNIT, requests: 10, requests_per_client: 10, source_share: 0.5 };
        let (budget, _, _) = budget(limits, &["web", "ios"]);
        let mut a = budget.reservation(CLIENT).expect("slot");
        a.grow_to(3 * UNIT).expect("fits");
        a.assign_source("web").expect("within the share");
        assert!(matches!(a.grow_to(6 * UNIT), Err(ApiError::SourceOverloaded)), "past half the bytes");
        a.grow_to(5 * UNIT).expect("exactly half");
        let mut b = budget.reservation(CLIENT).expect("slot");
        b.grow_to(UNIT).expect("fits globally");
        assert!(matches!(b.assign_source("web"), Err(ApiError::SourceOverloaded)), "web holds its half");
        b.assign_source("ios").expect("ios is untouched");
        b.grow_to(5 * UNIT).expect("ios's half");
        drop(a);
        let mut c = budget.reservation(CLIENT).expect("slot");
        c.assign_source("web").expect("web's bytes came back");
        c.grow_to(5 * UNIT).expect("web's half again");
    }
}
