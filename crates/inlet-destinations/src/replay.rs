//! Replay: send a time range of events to a destination again, from the lake files or from its
//! dead letters, through the same mapping, limits and retry policy as live delivery. Events
//! are picked by their `timestamp` in `[from, to)` and sent once per `messageId`. What still
//! fails goes to the dead letters again, with its reason.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use inlet_lake::LakeStore;
use inlet_lake::store::StoreError;
use inlet_segment::{StoredEvent, parse_timestamp};
use serde::Serialize;

use crate::Destination;
use crate::dead_letters::{DeadLetter, DeadLetterStore};
use crate::metrics::DestinationMetrics;
use crate::outbox::Fate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The Parquet files under `events/` (everything accepted).
    Lake,
    /// The destination's dead letters.
    DeadLetters,
}

#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Only these sources (default: every source of the destination).
    pub sources: Vec<String>,
    pub origin: ReplayFrom,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Events in the range (after removing repeated `messageId`s).
    pub events: u64,
    pub delivered: u64,
    /// Not sent: message types the destination does not receive.
    pub skipped: u64,
    /// Not sent: the user's consent does not cover the destination's categories.
    pub without_consent: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the lake: {0}")]
    Store(#[from] StoreError),
    #[error("lake file {key}: {message}")]
    File { key: String, message: String },
    #[error("{0}")]
    Request(String),
}

pub async fn replay(
    destination: &Destination,
    store: LakeStore,
    instance: &str,
    request: &ReplayRequest,
) -> Result<ReplayReport, ReplayError> {
    if request.from >= request.to {
        return Err(ReplayError::Request("--from must be before --to".into()));
    }
    let sources: Vec<String> = if request.sources.is_empty() {
        destination.config.sources.clone()
    } else {
        for source in &request.sources {
            if !destination.config.sources.contains(source) {
                return Err(ReplayError::Request(format!(
                    "destination {} does not receive source {source:?}",
                    destination.config.name
                )));
            }
        }
        request.sources.clone()
    };
    let dead_letters = DeadLetterStore::new(store.clone(), &destination.config.name, instance);
    let events = match request.origin {
        ReplayFrom::Lake => lake_events(&store, &sources, request.from, request.to).await?,
        ReplayFrom::DeadLetters => dead_letters
            .read_since(request.from.date_naive())
            .await?
            .into_iter()
            .map(|l| StoredEvent::new(l.source, l.event))
            .collect(),
    };
    let mut seen = HashSet::new();
    let in_range = |e: &StoredEvent| {
        sources.contains(&e.source)
            && e.event
                .get("timestamp")
                .and_then(|t| t.as_str())
                .and_then(parse_timestamp)
                .is_some_and(|t| t >= request.from && t < request.to)
    };
    let events: Vec<StoredEvent> = events
        .into_iter()
        .filter(|e| in_range(e) && seen.insert(e.message_id().unwrap_or_default().to_owned()))
        .collect();
    let mut report = ReplayReport { events: events.len() as u64, ..ReplayReport::default() };
    let metrics = DestinationMetrics::unregistered(&destination.config.name);
    let mut outbox = destination.outbox(metrics, Arc::default());
    let mut resolved = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        resolved.extend(outbox.push(index as u64, Arc::new(event)));
    }
    loop {
        resolved.extend(outbox.send_due().await);
        let letters: Vec<DeadLetter> = resolved
            .iter()
            .filter_map(|r| match &r.fate {
                Fate::DeadLettered(why) => Some(DeadLetter::new(&destination.config.name, r, why, None)),
                _ => None,
            })
            .collect();
        dead_letters.write(&letters).await?;
        for r in resolved.drain(..) {
            match r.fate {
                Fate::Delivered => report.delivered += 1,
                Fate::Skipped => report.skipped += 1,
                Fate::WithoutConsent => report.without_consent += 1,
                Fate::DeadLettered(_) => report.dead_lettered += 1,
            }
        }
        match outbox.next_due() {
            None => return Ok(report),
            Some(due) => tokio::time::sleep_until(due).await,
        }
    }
}

/// The events of `sources` in the hour partitions overlapping `[from, to)`.
async fn lake_events(
    store: &LakeStore,
    sources: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<StoredEvent>, ReplayError> {
    let mut events = Vec::new();
    for source in sources {
        for key in inlet_lake::read::hour_files(store, inlet_lake::layout::LakeTable::Events, source, from, to).await? {
            let Some(bytes) = store.get(&key).await? else { continue };
            let file = inlet_lake::read::read_events(bytes)
                .map_err(|e| ReplayError::File { key: key.clone(), message: e.to_string() })?;
            events.extend(file);
        }
    }
    Ok(events)
}
