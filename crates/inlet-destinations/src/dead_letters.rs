//! The dead-letter store: events a destination gave up on, with why, kept in the lake.
//!
//! ## On-disk format
//! JSON lines, one file per resolution round that dead-lettered anything:
//! ```text
//! {lake}/dead-letters/destination={name}/dt={YYYY-MM-DD}/{instance}-{unix µs}-{first lsn}.jsonl
//! ```
//! `dt` is the UTC day the events were given up on. Each line is a [`DeadLetter`]: destination,
//! reason code, detail, last HTTP status and response body (cut to 4 KiB), attempts, first
//! attempt and give-up times, the WAL position, the source and the original event exactly as
//! stored.
//!
//! ## Invariants
//! - A dead letter is stored (S3 answered, or the local file was fsynced and renamed) before
//!   the destination's cursor moves past its event, so an event is always in exactly one of:
//!   the WAL behind the cursor, the vendor, or here.
//! - A crash after a file is stored but before the cursor is saved dead-letters the events
//!   again on restart (a second file): at least once, never lost. Replay sends each
//!   `messageId` once.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use inlet_lake::LakeStore;
use inlet_lake::store::StoreError;
use inlet_privacy::Targets;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::outbox::{DeadLetterReason, Resolved};

pub const DEAD_LETTER_PREFIX: &str = "dead-letters";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub destination: String,
    pub reason: String,
    pub detail: String,
    pub status: Option<u16>,
    pub response: String,
    pub attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub dead_lettered_at: DateTime<Utc>,
    pub lsn: Option<u64>,
    pub source: String,
    pub event: Map<String, Value>,
}

impl DeadLetter {
    pub fn new(destination: &str, resolved: &Resolved, why: &DeadLetterReason, lsn: Option<u64>) -> DeadLetter {
        DeadLetter {
            destination: destination.to_owned(),
            reason: why.reason.to_owned(),
            detail: why.detail.clone(),
            status: why.status,
            response: why.response.clone(),
            attempts: why.attempts,
            first_attempt_at: why.first_attempt,
            dead_lettered_at: Utc::now(),
            lsn,
            source: resolved.stored.source.clone(),
            event: resolved.stored.event.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeadLetterStore {
    store: LakeStore,
    destination: String,
    instance: String,
}

impl DeadLetterStore {
    pub fn new(store: LakeStore, destination: &str, instance: &str) -> DeadLetterStore {
        DeadLetterStore { store, destination: destination.to_owned(), instance: instance.to_owned() }
    }

    fn folder(&self) -> String {
        format!("{DEAD_LETTER_PREFIX}/destination={}/", self.destination)
    }

    /// Stores `letters` as one file; returns once it is durable.
    pub async fn write(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        let Some(first) = letters.first() else { return Ok(()) };
        let mut body = Vec::new();
        for letter in letters {
            serde_json::to_writer(&mut body, letter).expect("a dead letter serialises");
            body.push(b'\n');
        }
        let key = format!(
            "{}dt={}/{}-{}-{:020}.jsonl",
            self.folder(),
            first.dead_lettered_at.format("%Y-%m-%d"),
            self.instance,
            first.dead_lettered_at.timestamp_micros(),
            first.lsn.unwrap_or(0)
        );
        self.store.put(&key, Bytes::from(body)).await
    }

    /// Every dead letter stored on or after `since` (UTC day granularity), oldest file first.
    pub async fn read_since(&self, since: NaiveDate) -> Result<Vec<DeadLetter>, StoreError> {
        let mut keys = self.store.list(&self.folder()).await?;
        keys.retain(|key| day_of(key).is_some_and(|day| day >= since) && key.ends_with(".jsonl"));
        keys.sort();
        let mut letters = Vec::new();
        for key in keys {
            let Some(bytes) = self.store.get(&key).await? else { continue };
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match serde_json::from_slice::<DeadLetter>(line) {
                    Ok(letter) => letters.push(letter),
                    Err(error) => tracing::warn!(%key, %error, "skipping an unreadable dead-letter line"),
                }
            }
        }
        Ok(letters)
    }
}

/// What [`erase_dead_letters`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeadLetterErasure {
    pub files: u64,
    pub files_rewritten: u64,
    pub files_deleted: u64,
    pub letters_deleted: u64,
}

impl DeadLetterErasure {
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        std::collections::BTreeMap::from([
            ("files".to_owned(), self.files),
            ("files_rewritten".to_owned(), self.files_rewritten),
            ("files_deleted".to_owned(), self.files_deleted),
            ("letters_deleted".to_owned(), self.letters_deleted),
        ])
    }
}

/// Removes the dead letters of `targets`, every destination's: a file holding one is written
/// again without it (deleted if nothing else is left), by one atomic put, so a crash leaves the
/// old file or the new one. Lines that do not parse are kept as they are.
pub async fn erase_dead_letters(store: &LakeStore, targets: &Targets) -> Result<DeadLetterErasure, StoreError> {
    let mut erasure = DeadLetterErasure::default();
    let keys = store.list(&format!("{DEAD_LETTER_PREFIX}/")).await?;
    for key in keys.iter().filter(|key| key.ends_with(".jsonl")) {
        erasure.files += 1;
        let Some(bytes) = store.get(key).await? else { continue };
        let mut kept = Vec::with_capacity(bytes.len());
        let mut deleted = 0;
        for line in bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
            let erased = serde_json::from_slice::<DeadLetter>(line).is_ok_and(|letter| {
                let id = |field: &str| letter.event.get(field).and_then(Value::as_str);
                targets.matches(id("userId"), id("anonymousId"))
            });
            if erased {
                deleted += 1;
            } else {
                kept.extend_from_slice(line);
                kept.push(b'\n');
            }
        }
        if deleted == 0 {
            continue;
        }
        erasure.letters_deleted += deleted;
        if kept.is_empty() {
            store.delete(key).await?;
            erasure.files_deleted += 1;
        } else {
            store.put(key, Bytes::from(kept)).await?;
            erasure.files_rewritten += 1;
        }
    }
    Ok(erasure)
}

fn day_of(key: &str) -> Option<NaiveDate> {
    let start = key.find("/dt=")? + 4;
    NaiveDate::parse_from_str(key.get(start..start + 10)?, "%Y-%m-%d").ok()
}
