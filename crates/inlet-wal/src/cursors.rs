//! Consumer cursors, persisted as `cursors.json`: `{"consumer": first_unconfirmed_lsn, …}`.
//!
//! Replaced atomically (temporary file, fsync, rename, directory fsync), so a crash leaves
//! either the old or the new cursors, never a mix.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::error::{Result, WalError};
use inlet_durable::durable_replace;

const CURSORS_FILE: &str = "cursors.json";

/// The confirmed position of every configured consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursors {
    positions: BTreeMap<String, u64>,
}

impl Cursors {
    /// Loads the persisted cursors and reconciles them with the configured consumers:
    /// consumers no longer configured are forgotten (so they cannot pin segments forever) and
    /// new ones start at `oldest_retained`.
    pub(crate) fn load(dir: &Path, consumers: &[String], oldest_retained: u64) -> Result<Cursors> {
        let path = dir.join(CURSORS_FILE);
        let stored: BTreeMap<String, u64> = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| WalError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!("cursors are not valid JSON: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(WalError::io(format!("reading {}", path.display()))(e)),
        };
        for forgotten in stored.keys().filter(|name| !consumers.contains(name)) {
            tracing::warn!(consumer = %forgotten, "forgetting the cursor of a consumer that is no longer configured");
        }
        let positions = consumers
            .iter()
            .map(|name| (name.clone(), stored.get(name).copied().unwrap_or(oldest_retained).max(oldest_retained)))
            .collect();
        Ok(Cursors { positions })
    }

    /// The first LSN not yet confirmed by `consumer`.
    pub fn position(&self, consumer: &str) -> Option<u64> {
        self.positions.get(consumer).copied()
    }

    /// The LSN below which every consumer has confirmed; `None` with no consumers.
    pub fn min_position(&self) -> Option<u64> {
        self.positions.values().copied().min()
    }

    /// Every consumer with its position.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.positions.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Moves `consumer` forward to `lsn` (never backward). Returns whether anything changed.
    pub(crate) fn advance(&mut self, consumer: &str, lsn: u64) -> Result<bool> {
        let position =
            self.positions.get_mut(consumer).ok_or_else(|| WalError::UnknownConsumer(consumer.to_owned()))?;
        if lsn <= *position {
            return Ok(false);
        }
        *position = lsn;
        Ok(true)
    }

    pub(crate) fn persist(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CURSORS_FILE);
        let json = serde_json::to_vec_pretty(&self.positions).expect("a map of strings to integers serialises");
        durable_replace(&path, &json).map_err(WalError::io(format!("writing {}", path.display())))
    }
}
