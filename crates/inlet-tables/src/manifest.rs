//! Where copied tables live in the lake, and the manifest that commits a day.
//!
//! ```text
//! tables/{database}/{table}/dt=YYYY-MM-DD/part-{run}-{n:05}.parquet     the rows
//! tables/{database}/{table}/_manifests/dt=YYYY-MM-DD.json              the commit (JSON below)
//! tables/{database}/{table}/_symlink_format_manifest/dt=YYYY-MM-DD/manifest
//!                                                                       the day's files, one URL
//!                                                                       per line (Spectrum, Athena)
//! ```
//!
//! Invariants:
//! - A day exists when its JSON manifest does, and holds exactly the files the manifest lists.
//!   Parts are uploaded first under a name unique to the run, the manifest written last (one
//!   atomic PUT or rename): a reader that follows manifests sees the previous copy of the day
//!   or the new one, never a mix. Parts no manifest lists (a run that died before its commit,
//!   the copy a re-run replaced) are deleted after the next commit of that day.
//! - Incremental watermarks live in the manifests: a day copies the rows whose cursor is in
//!   `(watermark_from, watermark]`. A new day starts from the latest day's `watermark`; a re-run
//!   of the latest day from its own `watermark_from`, so it replaces exactly that day. The
//!   watermark therefore advances only when a manifest is committed.
//! - Each manifest records the columns and their lake types; the next run compares against
//!   the latest one (docs/tables.md: added and dropped columns pass, a retype is refused unless
//!   allowed).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Mode;

pub const FORMAT: u32 = 1;

pub fn table_prefix(database: &str, table: &str) -> String {
    format!("tables/{database}/{table}")
}

pub fn day_prefix(database: &str, table: &str, date: NaiveDate) -> String {
    format!("{}/dt={date}", table_prefix(database, table))
}

pub fn manifests_prefix(database: &str, table: &str) -> String {
    format!("{}/_manifests", table_prefix(database, table))
}

pub fn manifest_key(database: &str, table: &str, date: NaiveDate) -> String {
    format!("{}/dt={date}.json", manifests_prefix(database, table))
}

pub fn symlink_prefix(database: &str, table: &str) -> String {
    format!("{}/_symlink_format_manifest", table_prefix(database, table))
}

pub fn symlink_key(database: &str, table: &str, date: NaiveDate) -> String {
    format!("{}/dt={date}/manifest", symlink_prefix(database, table))
}

/// The date of a manifest's key (`…/_manifests/dt=2026-12-04.json`).
pub fn date_of_manifest_key(key: &str) -> Option<NaiveDate> {
    let name = key.rsplit('/').next()?;
    name.strip_prefix("dt=")?.strip_suffix(".json")?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnEntry {
    pub name: String,
    /// The lake type (`int64`, `decimal(38,10)`, `timestamp`, …).
    #[serde(rename = "type")]
    pub lake_type: String,
    /// The type in the database (or the configured cast).
    pub source_type: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hashed: bool,
    /// Values stored as NULL because the lake cannot hold them (zero dates, infinities).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nulled: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub database: String,
    pub table: String,
    pub date: NaiveDate,
    pub mode: Mode,
    pub run_id: String,
    /// When the database snapshot was taken.
    pub snapshot_at: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<FileEntry>,
    pub columns: Vec<ColumnEntry>,
    pub schema_hash: String,
    pub cursor: Option<String>,
    /// Incremental: the rows copied have `watermark_from < cursor <= watermark` (`None`: from
    /// the first row). The values are the database's text of the cursor.
    pub watermark_from: Option<String>,
    pub watermark: Option<String>,
}

/// A stable hash of the columns' names and lake types, in order.
pub fn schema_hash(columns: &[ColumnEntry]) -> String {
    let mut hasher = Sha256::new();
    for column in columns {
        hasher.update(column.name.as_bytes());
        hasher.update([0]);
        hasher.update(column.lake_type.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What changed in the columns since the previous manifest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaChange {
    pub added: Vec<String>,
    pub dropped: Vec<String>,
    /// `(column, old type, new type)`.
    pub retyped: Vec<(String, String, String)>,
}

pub fn schema_change(previous: &[ColumnEntry], current: &[ColumnEntry]) -> SchemaChange {
    let mut change = SchemaChange::default();
    for column in current {
        match previous.iter().find(|p| p.name == column.name) {
            None => change.added.push(column.name.clone()),
            Some(p) if p.lake_type != column.lake_type => {
                change.retyped.push((column.name.clone(), p.lake_type.clone(), column.lake_type.clone()))
            }
            Some(_) => {}
        }
    }
    change.dropped =
        previous.iter().filter(|p| !current.iter().any(|c| c.name == p.name)).map(|p| p.name.clone()).collect();
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, lake_type: &str) -> ColumnEntry {
        ColumnEntry {
            name: name.into(),
            lake_type: lake_type.into(),
            source_type: String::new(),
            hashed: false,
            nulled: 0,
        }
    }

    #[test]
    fn detects_added_dropped_and_retyped_columns() {
        let before = [column("id", "int64"), column("name", "text"), column("age", "int16")];
        let after = [column("id", "int64"), column("age", "int32"), column("email", "text")];
        let change = schema_change(&before, &after);
        assert_eq!(change.added, ["email"]);
        assert_eq!(change.dropped, ["name"]);
        assert_eq!(change.retyped, [("age".to_string(), "int16".to_string(), "int32".to_string())]);
        assert_ne!(schema_hash(&before), schema_hash(&after));
        assert_eq!(
            date_of_manifest_key("tables/app/m/_manifests/dt=2026-12-04.json"),
            NaiveDate::from_ymd_opt(2026, 12, 4)
        );
    }
}
