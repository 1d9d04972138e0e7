//! Live delivery: one task per destination, fed from the WAL through its own cursor.
//!
//! ## Invariants
//! - **Nothing acknowledged is skipped.** The destination's WAL consumer (`destination:{name}`)
//!   is confirmed only up to its oldest unresolved record: every record below the cursor was
//!   delivered, dead-lettered (stored first), not for this destination, or of a suppressed id. The WAL keeps
//!   every segment until the lake and every destination are past it.
//! - **A restart resumes exactly where delivery was.** Events resolve out of order (a throttled
//!   event is held while later ones flow), so the positions resolved beyond the cursor are
//!   saved too, in `{data_dir}/destinations/{name}.json`:
//!   `{"cursor": N, "resolved": [[from, to), …], "dead_letters": {reason: count}}` (the last
//!   are the status report's lifetime counts; a file without them reads as zero), replaced
//!   atomically (temporary file, fsync, rename, directory fsync) after every round that
//!   resolved anything, before the WAL cursor moves. On start, resolved positions are not sent again. The only repeat left is an event
//!   whose request succeeded just before a crash, ahead of the save: Amplitude drops it by
//!   `insert_id` (its Identify, Group Identify and User Mapping calls set the same values
//!   again); GA4 has no such key, so it can count twice. With several requests in flight
//!   (`max_concurrent_requests`) a round's state is saved once all of them are answered, so
//!   the window lasts until the slowest is: GA4 therefore defaults to one request in flight.
//! - **A slow destination holds only itself back.** Each destination has its own task, cursor
//!   and HTTP client; the lake and ingestion never wait for it. Its backlog (WAL bytes behind
//!   its cursor) is bounded by `delivery.max_backlog_bytes`: over it, the oldest undelivered
//!   events are moved to the dead letters (`backlog_over_budget`, replayable) so the WAL can
//!   delete segments and ingestion never stops for a vendor outage. The state is in metrics
//!   and in the body of `/readyz`.
//! - **At most `max_in_flight_events` events are in memory**, and reading never runs more than
//!   four times that ahead of the cursor (which bounds the saved `resolved` list).

use inlet_privacy::Suppressions;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use inlet_segment::{StoredEvent, parse_timestamp};
use inlet_wal::{ReadPosition, WalHandle, WalReader};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::dead_letters::{DeadLetter, DeadLetterStore};
use crate::metrics::DestinationMetrics;
use crate::outbox::{Fate, Outbox, Resolved};
use crate::status::DestinationStatus;

/// How often an idle destination looks for new records.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Dead-letter writes that fail are retried this often (the lake store is down).
const STORE_RETRY: Duration = Duration::from_secs(2);
/// Shedding stops once the backlog is back under this share of the budget.
const SHED_UNTIL_PERCENT: u64 = 90;

/// The WAL consumer name of a destination.
pub fn consumer_name(destination: &str) -> String {
    format!("destination:{destination}")
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("write-ahead log: {0}")]
    Wal(#[from] inlet_wal::WalError),
    #[error("destination state {path}: {source}")]
    State { path: PathBuf, source: std::io::Error },
    #[error("the WAL reader task failed: {0}")]
    Task(String),
}

/// Persisted resolution state; see the module documentation.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedState {
    cursor: u64,
    resolved: Vec<(u64, u64)>,
    #[serde(default)]
    dead_letters: BTreeMap<String, u64>,
}

#[derive(Debug)]
pub struct Delivery {
    pub name: String,
    consumer: String,
    sources: Vec<String>,
    outbox: Outbox,
    wal: Arc<WalHandle>,
    dead_letters: DeadLetterStore,
    metrics: DestinationMetrics,
    status: Arc<DestinationStatus>,
    state_path: PathBuf,
    cursor: u64,
    read_lsn: u64,
    /// Where the last read stopped in the WAL's files, so the next starts there instead of
    /// reading its segment from the first record.
    read_position: Option<ReadPosition>,
    /// Positions in `cursor..read_lsn` delivered or dead-lettered (not merely waiting).
    resolved_above: BTreeSet<u64>,
    max_in_flight: usize,
    max_backlog_bytes: u64,
    suppressions: Arc<Suppressions>,
    shedding: bool,
    /// Waiting events given up on by the budget, to settle in the next round.
    pending_shed: Vec<Resolved>,
}

#[derive(Debug)]
pub struct DeliveryParts {
    pub name: String,
    pub sources: Vec<String>,
    pub outbox: Outbox,
    pub wal: Arc<WalHandle>,
    pub dead_letters: DeadLetterStore,
    pub metrics: DestinationMetrics,
    pub status: Arc<DestinationStatus>,
    pub state_dir: PathBuf,
    pub max_in_flight: usize,
    pub max_backlog_bytes: u64,
    /// Events of these ids still in the WAL are not sent (deleted or suppressed since).
    pub suppressions: Arc<Suppressions>,
}

impl Delivery {
    /// Loads the saved state and lines it up with the WAL cursor.
    pub async fn open(parts: DeliveryParts) -> Result<Delivery, DeliveryError> {
        let consumer = consumer_name(&parts.name);
        let state_path = parts.state_dir.join(format!("{}.json", parts.name));
        let saved = load_state(&state_path)?;
        let wal_cursor = parts.wal.cursor(&consumer).unwrap_or_else(|| parts.wal.oldest_lsn());
        let cursor = wal_cursor.max(saved.cursor).max(parts.wal.oldest_lsn());
        let resolved_above: BTreeSet<u64> =
            saved.resolved.iter().flat_map(|&(from, to)| from..to).filter(|lsn| *lsn >= cursor).collect();
        if cursor > wal_cursor {
            parts.wal.confirm(&consumer, cursor).await?;
        }
        parts.status.set_dead_letters(saved.dead_letters);
        parts.status.cursor.store(cursor, Ordering::Relaxed);
        tracing::info!(destination = %parts.name, cursor, resolved_ahead = resolved_above.len(), "destination starting");
        Ok(Delivery {
            name: parts.name,
            consumer,
            sources: parts.sources,
            outbox: parts.outbox,
            wal: parts.wal,
            dead_letters: parts.dead_letters,
            metrics: parts.metrics,
            status: parts.status,
            state_path,
            cursor,
            read_lsn: cursor,
            read_position: None,
            resolved_above,
            max_in_flight: parts.max_in_flight,
            max_backlog_bytes: parts.max_backlog_bytes,
            suppressions: parts.suppressions,
            shedding: false,
            pending_shed: Vec::new(),
        })
    }

    /// Delivers until `shutdown` turns true. Events in flight at shutdown stay in the WAL.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), DeliveryError> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            self.check_budget();
            let started = std::time::Instant::now();
            let mut resolved = std::mem::take(&mut self.pending_shed);
            resolved.extend(self.refill().await?);
            let read = started.elapsed();
            let round = tokio::select! {
                round = self.outbox.send_due() => round,
                _ = shutdown.changed() => return Ok(()),
            };
            resolved.extend(round);
            let sent = started.elapsed();
            let events = resolved.len();
            // Not cancelled by shutdown: a dead letter stored without its cursor saved would
            // be dead-lettered again at the next start.
            if !resolved.is_empty() {
                self.settle(resolved, &shutdown).await?;
            }
            if events > 0 {
                tracing::debug!(destination = %self.name, events, ?read, ?sent, settled = ?started.elapsed(), "delivery round");
            }
            self.publish_status();
            let caught_up = self.read_lsn >= self.wal.durable_lsn() || self.read_window_full();
            let due_now = self.outbox.next_due().is_some_and(|due| due <= Instant::now());
            if due_now || (!caught_up && !self.read_window_full()) {
                continue;
            }
            let wake = self
                .outbox
                .next_due()
                .map_or(Instant::now() + POLL_INTERVAL, |due| due.min(Instant::now() + POLL_INTERVAL));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn read_window_full(&self) -> bool {
        self.outbox.len() >= self.max_in_flight || self.read_lsn - self.cursor >= 4 * self.max_in_flight as u64
    }

    /// Reads the next records into the outbox (or straight to the dead letters while shedding);
    /// returns those whose fate is decided without sending.
    async fn refill(&mut self) -> Result<Vec<Resolved>, DeliveryError> {
        let durable = self.wal.durable_lsn();
        if self.read_lsn >= durable || (!self.shedding && self.read_window_full()) {
            return Ok(Vec::new());
        }
        let room = if self.shedding { self.max_in_flight } else { self.max_in_flight - self.outbox.len() };
        let upto = durable
            .min(self.read_lsn + room as u64)
            .min(self.cursor + 4 * self.max_in_flight as u64)
            .max(self.read_lsn + 1);
        let (dir, from, max) = (self.wal.config().dir.clone(), self.read_lsn, self.wal.config().max_record_bytes);
        let position = self.read_position.take().filter(|p| p.next_lsn == from);
        let (records, stopped_at) = tokio::task::spawn_blocking(move || {
            let mut reader = match position {
                Some(position) => WalReader::open_at(&dir, position, upto, max)?,
                None => WalReader::open(&dir, from, upto, max)?,
            };
            let records: Vec<(u64, Vec<u8>)> =
                reader.by_ref().map(|r| r.map(|r| (r.lsn, r.payload))).collect::<Result<_, _>>()?;
            Ok::<_, inlet_wal::WalError>((records, reader.stopped_at()))
        })
        .await
        .map_err(|e| DeliveryError::Task(e.to_string()))??;
        let mut resolved = Vec::new();
        for (lsn, payload) in records {
            self.read_lsn = lsn + 1;
            if self.resolved_above.contains(&lsn) {
                continue;
            }
            let stored = match StoredEvent::decode(&payload) {
                // Blocked by the source's tracking plan: kept in the lake's `blocked/`, never sent.
                Ok(stored) if stored.is_blocked() => continue,
                Ok(stored) => Arc::new(with_flagged_violations(stored)),
                Err(error) => {
                    tracing::error!(destination = %self.name, lsn, %error, "skipping a WAL record that is not a stored event");
                    continue;
                }
            };
            if !self.sources.contains(&stored.source) {
                continue;
            }
            if self.suppressions.active() {
                let id = |field: &str| stored.event.get(field).and_then(serde_json::Value::as_str);
                if self.suppressions.matches(id("userId"), id("anonymousId")) {
                    continue;
                }
            }
            if self.shedding {
                resolved.push(crate::outbox::shed_one(lsn, stored, "backlog_over_budget", &self.shed_detail()));
                continue;
            }
            resolved.extend(self.outbox.push(lsn, stored));
        }
        self.read_position = stopped_at.filter(|at| at.next_lsn == self.read_lsn);
        Ok(resolved)
    }

    fn shed_detail(&self) -> String {
        format!("the destination's backlog passed max_backlog_bytes ({} bytes)", self.max_backlog_bytes)
    }

    /// Estimates the WAL bytes held for this destination and starts or stops shedding.
    fn check_budget(&mut self) {
        let durable = self.wal.durable_lsn();
        let span = durable.saturating_sub(self.wal.oldest_lsn()).max(1);
        let behind = durable.saturating_sub(self.cursor);
        let bytes = (self.wal.disk_bytes() as u128 * behind as u128 / span as u128) as u64;
        self.metrics.backlog_bytes.set(bytes as i64);
        self.status.backlog_bytes.store(bytes, Ordering::Relaxed);
        let over = bytes > self.max_backlog_bytes;
        if over && !self.shedding {
            tracing::warn!(destination = %self.name, backlog_bytes = bytes, budget = self.max_backlog_bytes, "backlog over budget: dead-lettering the oldest events");
            self.shedding = true;
        } else if self.shedding && bytes * 100 <= self.max_backlog_bytes * SHED_UNTIL_PERCENT {
            tracing::info!(destination = %self.name, backlog_bytes = bytes, "backlog back under budget");
            self.shedding = false;
        }
        if self.shedding && !self.outbox.is_empty() {
            let detail = self.shed_detail();
            // Shed from the oldest: the waiting events go first, then records as they are read.
            let shed = self.outbox.shed("backlog_over_budget", &detail);
            self.pending_shed.extend(shed);
        }
        self.metrics.over_budget.set(i64::from(self.shedding));
        self.status.over_budget.store(self.shedding, Ordering::Relaxed);
    }

    /// Stores dead letters, records what resolved, saves the state and moves the WAL cursor.
    /// While the lake store is down at shutdown, gives up without moving the cursor (the
    /// events stay in the WAL).
    async fn settle(&mut self, resolved: Vec<Resolved>, shutdown: &watch::Receiver<bool>) -> Result<(), DeliveryError> {
        let letters: Vec<DeadLetter> = resolved
            .iter()
            .filter_map(|r| match &r.fate {
                Fate::DeadLettered(why) => Some(DeadLetter::new(&self.name, r, why, Some(r.key))),
                _ => None,
            })
            .collect();
        if !letters.is_empty() {
            while let Err(error) = self.dead_letters.write(&letters).await {
                if *shutdown.borrow() {
                    return Ok(());
                }
                tracing::warn!(destination = %self.name, %error, "storing dead letters failed; retrying");
                tokio::time::sleep(STORE_RETRY).await;
            }
            for letter in &letters {
                self.metrics.dead_lettered(&letter.reason);
            }
            self.status.add_dead_letters(letters.iter().map(|l| l.reason.as_str()));
            tracing::warn!(destination = %self.name, events = letters.len(), reason = %letters[0].reason, "events dead-lettered");
        }
        for r in &resolved {
            self.resolved_above.insert(r.key);
        }
        let cursor = self.outbox.min_key().unwrap_or(self.read_lsn).min(self.read_lsn);
        self.resolved_above = self.resolved_above.split_off(&cursor);
        let state =
            SavedState { cursor, resolved: ranges(&self.resolved_above), dead_letters: self.status.dead_letters() };
        let path = self.state_path.clone();
        tokio::task::spawn_blocking(move || save_state(&path, &state))
            .await
            .map_err(|e| DeliveryError::Task(e.to_string()))??;
        if cursor > self.cursor {
            self.wal.confirm(&self.consumer, cursor).await?;
            self.cursor = cursor;
        }
        Ok(())
    }

    fn publish_status(&self) {
        let durable = self.wal.durable_lsn();
        let waiting = durable.saturating_sub(self.cursor).saturating_sub(self.resolved_above.len() as u64);
        self.metrics.backlog_events.set(waiting as i64);
        self.metrics.cursor.set(self.cursor as i64);
        self.status.backlog_events.store(waiting, Ordering::Relaxed);
        let lag = self
            .outbox
            .oldest()
            .and_then(|e| e.event.get("receivedAt").and_then(serde_json::Value::as_str).and_then(parse_timestamp))
            .map_or(0.0, |received| (chrono::Utc::now() - received).num_milliseconds().max(0) as f64 / 1000.0);
        self.metrics.lag.set(lag);
        self.status.cursor.store(self.cursor, Ordering::Relaxed);
        self.status.lag_millis.store((lag * 1000.0) as u64, Ordering::Relaxed);
        self.status.in_flight.store(self.outbox.len() as u64, Ordering::Relaxed);
    }
}

/// Sorted positions as half-open ranges.
fn ranges(positions: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in positions {
        match out.last_mut() {
            Some((_, to)) if *to == p => *to += 1,
            _ => out.push((p, p + 1)),
        }
    }
    out
}

fn load_state(path: &Path) -> Result<SavedState, DeliveryError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DeliveryError::State {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedState::default()),
        Err(source) => Err(DeliveryError::State { path: path.to_owned(), source }),
    }
}

fn save_state(path: &Path, state: &SavedState) -> Result<(), DeliveryError> {
    let dir = path.parent().expect("state files live in a directory");
    std::fs::create_dir_all(dir)
        .and_then(|()| inlet_durable::durable_replace(path, &serde_json::to_vec(state).expect("state serialises")))
        .map_err(|source| DeliveryError::State { path: path.to_owned(), source })
}

/// The property a flagged event's violations are forwarded in, on `track`, `page` and `screen`
/// calls (traits are left alone: the vendors would keep it on the user's profile).
pub const VIOLATIONS_PROPERTY: &str = "tracking_plan_violations";
/// GA4 keeps at most 100 characters of a parameter's value; Amplitude takes more, but one
/// summary for both keeps them alike.
const VIOLATIONS_SUMMARY_CHARS: usize = 100;

/// An event whose source's plan is in `flag` mode and found violations gets a short summary of
/// them (`kind property` pairs, `; `-separated) as a property.
fn with_flagged_violations(mut stored: StoredEvent) -> StoredEvent {
    if stored.tracking_plan.as_deref() != Some("flag") {
        return stored;
    }
    let Some(serde_json::Value::Array(violations)) = &stored.violations else { return stored };
    let is_properties_call =
        matches!(stored.event.get("type").and_then(|t| t.as_str()), Some("track" | "page" | "screen"));
    if !is_properties_call {
        return stored;
    }
    let text = |v: &serde_json::Value, key: &str| v.get(key).and_then(|t| t.as_str()).unwrap_or("").to_owned();
    let summary: Vec<String> =
        violations.iter().map(|v| format!("{} {}", text(v, "kind"), text(v, "property")).trim().to_owned()).collect();
    let summary: String = summary.join("; ").chars().take(VIOLATIONS_SUMMARY_CHARS).collect();
    let properties = stored.event.entry("properties").or_insert_with(|| serde_json::json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert(VIOLATIONS_PROPERTY.to_owned(), serde_json::Value::String(summary));
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_positions() {
        let set: BTreeSet<u64> = [3, 4, 5, 9, 11, 12].into_iter().collect();
        assert_eq!(ranges(&set), vec![(3, 6), (9, 10), (11, 13)]);
        assert!(ranges(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn state_round_trips_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d").join("amp.json");
        assert_eq!(load_state(&path).expect("missing is empty"), SavedState::default());
        let state = SavedState {
            cursor: 7,
            resolved: vec![(9, 12)],
            dead_letters: BTreeMap::from([("invalid_ids".to_owned(), 2)]),
        };
        save_state(&path, &state).expect("saves");
        assert_eq!(load_state(&path).expect("loads"), state);
        std::fs::write(&path, b"{not json").expect("write");
        assert!(load_state(&path).is_err(), "a damaged state file refuses the start");
    }

    fn record(mode: &str, event: serde_json::Value) -> StoredEvent {
        let record = serde_json::json!({
            "source": "web",
            "tracking_plan": mode,
            "violations": [
                {"kind": "enum", "property": "/board", "message": "…"},
                {"kind": "unplanned_event", "property": "", "message": "…"},
            ],
            "event": event,
        });
        StoredEvent::decode(record.to_string().as_bytes()).expect("a stored event")
    }

    #[test]
    fn flagged_events_carry_a_summary_of_their_violations_and_others_are_left_alone() {
        let track = serde_json::json!({"type": "track", "event": "Post Viewed", "properties": {"board": "x"}});
        let flagged = with_flagged_violations(record("flag", track.clone()));
        assert_eq!(flagged.event["properties"][VIOLATIONS_PROPERTY], "enum /board; unplanned_event");
        assert_eq!(flagged.event["properties"]["board"], "x");
        let observed = with_flagged_violations(record("observe", track));
        assert!(observed.event["properties"].get(VIOLATIONS_PROPERTY).is_none());
        let identify = serde_json::json!({"type": "identify", "traits": {"profession": "nurse"}});
        let identify = with_flagged_violations(record("flag", identify));
        assert!(identify.event.get("properties").is_none(), "traits are not touched");
        let page = with_flagged_violations(record("flag", serde_json::json!({"type": "page"})));
        assert_eq!(page.event["properties"][VIOLATIONS_PROPERTY], "enum /board; unplanned_event");
        assert!(record("block", serde_json::json!({"type": "track"})).is_blocked());
    }
}
