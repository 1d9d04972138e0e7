//! The in-flight budgets: every ingestion request takes one of `limits.max_inflight_requests`
//! slots and reserves the bytes it actually holds (its body as it streams in, then the
//! decompressed body while it is decoded and awaits the WAL) from `limits.max_inflight_bytes`,
//! and gives both back when it is answered. A request that finds no room is answered `429` at
//! once. The byte budget bounds memory however many clients connect (a slow client holds only
//! what it has sent); the request budget bounds the queue in front of the CPU and the WAL, so
//! under overload the excess is refused in microseconds instead of every request waiting
//! seconds for its turn.

use prometheus::IntGauge;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;

/// Bytes are counted in units of this size (one semaphore permit each).
const UNIT: usize = 1024;

#[derive(Debug)]
pub struct InflightBudget {
    permits: Semaphore,
    total_units: usize,
    gauge: IntGauge,
    requests: Semaphore,
    requests_gauge: IntGauge,
}

impl InflightBudget {
    pub fn new(bytes: usize, requests: usize, gauge: IntGauge, requests_gauge: IntGauge) -> InflightBudget {
        let total_units = bytes / UNIT;
        InflightBudget {
            permits: Semaphore::new(total_units),
            total_units,
            gauge,
            requests: Semaphore::new(requests),
            requests_gauge,
        }
    }

    /// A request slot with no bytes yet (to grow as they arrive), or `Overloaded`.
    pub fn reservation(&self) -> Result<Reservation<'_>, ApiError> {
        let slot = self.requests.try_acquire().map_err(|_| ApiError::Overloaded)?;
        self.requests_gauge.inc();
        Ok(Reservation { budget: self, units: 0, _slot: slot })
    }

    /// Whether a request of `bytes` could be reserved now.
    pub fn has_room_for(&self, bytes: usize) -> bool {
        self.permits.available_permits() >= bytes.div_ceil(UNIT)
    }

    /// Bytes currently reserved.
    pub fn reserved_bytes(&self) -> usize {
        (self.total_units - self.permits.available_permits()) * UNIT
    }
}

/// Bytes held by one request; released when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a InflightBudget,
    units: usize,
    _slot: SemaphorePermit<'a>,
}

impl Reservation<'_> {
    /// Grows the reservation to cover `bytes`, or answers `Overloaded`.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), ApiError> {
        let wanted = bytes.div_ceil(UNIT);
        if wanted <= self.units {
            return Ok(());
        }
        let more = u32::try_from(wanted - self.units).map_err(|_| ApiError::Overloaded)?;
        self.budget.permits.try_acquire_many(more).map_err(|_| ApiError::Overloaded)?.forget();
        self.units = wanted;
        self.budget.gauge.add((more as usize * UNIT) as i64);
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
            self.units -= units;
            self.budget.gauge.sub((units * UNIT) as i64);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.release(self.units);
        self.budget.requests_gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_grow_shrink_and_return_everything() {
        let gauge = IntGauge::new("test_inflight", "test").expect("gauge");
        let requests = IntGauge::new("test_requests", "test").expect("gauge");
        let budget = InflightBudget::new(10 * UNIT, 2, gauge.clone(), requests.clone());
        let mut a = budget.reservation().expect("a slot");
        a.grow_to(3 * UNIT + 1).expect("fits");
        assert_eq!(budget.reserved_bytes(), 4 * UNIT);
        let mut b = budget.reservation().expect("a slot");
        assert!(matches!(budget.reservation(), Err(ApiError::Overloaded)), "both slots are taken");
        assert_eq!(requests.get(), 2);
        assert!(matches!(b.grow_to(7 * UNIT), Err(ApiError::Overloaded)));
        b.grow_to(6 * UNIT).expect("fits exactly");
        assert!(!budget.has_room_for(1));
        a.shrink_to(UNIT);
        assert!(budget.has_room_for(3 * UNIT));
        assert_eq!(gauge.get(), 7 * UNIT as i64);
        drop(a);
        drop(b);
        assert_eq!(budget.reserved_bytes(), 0);
        assert_eq!(gauge.get(), 0);
        assert_eq!(requests.get(), 0);
        assert!(budget.reservation().is_ok(), "slots come back");
    }
}
