//! What operators see of a running destination without Prometheus: `/readyz`'s body,
//! `GET /admin/destinations` and `inlet destinations status` read it. Delivery and its engine
//! write it; nothing here is durable except the dead-letter counts, which delivery keeps in
//! its state file.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Failed requests kept for the status report.
const KEPT_ERRORS: usize = 10;

/// One failed request, as the status report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentError {
    pub at: DateTime<Utc>,
    /// The vendor API the request went to (`events`, `identify`, `group_identify`, `user_mapping`).
    pub api: &'static str,
    /// The HTTP status, or none when no answer came (refused, timed out, cut).
    pub status: Option<u16>,
    pub events: usize,
    /// The vendor's answer or the transport error, cut to 300 characters.
    pub message: String,
}

#[derive(Debug, Default)]
pub struct DestinationStatus {
    /// Every WAL record below it is resolved for the destination.
    pub cursor: AtomicU64,
    pub backlog_events: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub over_budget: AtomicBool,
    /// Age of the oldest event waiting, in milliseconds since its receipt.
    pub lag_millis: AtomicU64,
    /// Events held in memory for delivery.
    pub in_flight: AtomicU64,
    /// Why the task stopped, if it did.
    pub failed: OnceLock<String>,
    recent_errors: Mutex<VecDeque<RecentError>>,
    /// Dead letters written, by reason, over the destination's life (kept in its state file).
    dead_letters: Mutex<BTreeMap<String, u64>>,
}

/// The status report of one destination.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub cursor: u64,
    pub backlog_events: u64,
    pub backlog_bytes: u64,
    pub over_budget: bool,
    pub lag_seconds: f64,
    pub in_flight_events: u64,
    pub dead_letters: BTreeMap<String, u64>,
    pub recent_errors: Vec<RecentError>,
    pub failed: Option<String>,
}

impl DestinationStatus {
    pub fn record_error(&self, error: RecentError) {
        let mut errors = self.recent_errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.len() == KEPT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(error);
    }

    /// Sets the lifetime counts (at start, from the state file).
    pub fn set_dead_letters(&self, counts: BTreeMap<String, u64>) {
        *self.dead_letters.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = counts;
    }

    /// Adds dead letters just stored.
    pub fn add_dead_letters<'a>(&self, reasons: impl IntoIterator<Item = &'a str>) {
        let mut counts = self.dead_letters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for reason in reasons {
            *counts.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// Dead letters written, by reason, over the destination's life.
    pub fn dead_letters(&self) -> BTreeMap<String, u64> {
        self.dead_letters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn report(&self) -> StatusReport {
        let relaxed = Ordering::Relaxed;
        StatusReport {
            cursor: self.cursor.load(relaxed),
            backlog_events: self.backlog_events.load(relaxed),
            backlog_bytes: self.backlog_bytes.load(relaxed),
            over_budget: self.over_budget.load(relaxed),
            lag_seconds: self.lag_millis.load(relaxed) as f64 / 1000.0,
            in_flight_events: self.in_flight.load(relaxed),
            dead_letters: self.dead_letters(),
            recent_errors: self
                .recent_errors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .rev()
                .cloned()
                .collect(),
            failed: self.failed.get().cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_errors_newest_first_and_counts_dead_letters() {
        let status = DestinationStatus::default();
        for i in 0..(KEPT_ERRORS + 3) {
            status.record_error(RecentError {
                at: Utc::now(),
                api: "events",
                status: Some(500),
                events: i,
                message: String::new(),
            });
        }
        let report = status.report();
        assert_eq!(report.recent_errors.len(), KEPT_ERRORS);
        assert_eq!(report.recent_errors[0].events, KEPT_ERRORS + 2);
        status.set_dead_letters(BTreeMap::from([("invalid_ids".to_owned(), 2)]));
        status.add_dead_letters(["invalid_ids", "too_large"]);
        assert_eq!(status.dead_letters(), BTreeMap::from([("invalid_ids".to_owned(), 3), ("too_large".to_owned(), 1)]));
    }
}
