//! Retention: lake event files, dead letters and blocked events older than their configured age are deleted
//! (`inlet-batch retention`, which the Airflow DAG runs daily). Ages are counted in whole UTC
//! days of the partition (`dt=`): with `events_days = 400`, on 2026-12-05 every `dt` before
//! 2025-10-31 goes. The metrics tables keep their rows for those days: the aggregates were
//! computed and published already, and no run recomputes a day out of its late window unless
//! asked (`--from`, `--full`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use inlet_lake::LakeStore;
use inlet_lake::layout::{BLOCKED_PREFIX, EVENTS_PREFIX};
use inlet_lake::store::StoreError;
use serde::{Deserialize, Serialize};

/// Where the gateway keeps dead letters (`inlet-destinations`).
const DEAD_LETTERS_PREFIX: &str = "dead-letters";

/// `[retention]`: unset ages keep data forever.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days of events kept in the lake, for every source not listed in `events_days_by_source`.
    pub events_days: Option<u32>,
    pub events_days_by_source: BTreeMap<String, u32>,
    /// Days of dead letters kept (every destination, and the events tracking plans blocked).
    pub dead_letters_days: Option<u32>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RetentionReport {
    /// Partition folders (`events/source=…/dt=…`, `dead-letters/destination=…/dt=…`) expired.
    pub folders: Vec<String>,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
}

/// Deletes what is older than the configured ages on `today` (UTC); with `dry_run`, only reports.
pub async fn expire(
    store: &LakeStore,
    config: &RetentionConfig,
    today: NaiveDate,
    dry_run: bool,
) -> Result<RetentionReport, StoreError> {
    let mut report = RetentionReport::default();
    for source_folder in store.list_folders(&format!("{EVENTS_PREFIX}/")).await? {
        let source = source_folder.trim_end_matches('/').rsplit("source=").next().unwrap_or_default();
        let days = config.events_days_by_source.get(source).copied().or(config.events_days);
        if let Some(days) = days {
            expire_days(store, &source_folder, today, days, dry_run, &mut report).await?;
        }
    }
    if let Some(days) = config.dead_letters_days {
        // A tracking plan's blocked events are its dead letters.
        for prefix in [DEAD_LETTERS_PREFIX, BLOCKED_PREFIX] {
            for folder in store.list_folders(&format!("{prefix}/")).await? {
                expire_days(store, &folder, today, days, dry_run, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// Deletes the `dt=` folders under `folder` more than `days` before `today`.
async fn expire_days(
    store: &LakeStore,
    folder: &str,
    today: NaiveDate,
    days: u32,
    dry_run: bool,
    report: &mut RetentionReport,
) -> Result<(), StoreError> {
    let oldest_kept = today - chrono::Duration::days(i64::from(days));
    for day_folder in store.list_folders(&format!("{}/", folder.trim_end_matches('/'))).await? {
        let day = day_folder.trim_end_matches('/').rsplit("dt=").next().unwrap_or_default();
        let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else { continue };
        if day >= oldest_kept {
            continue;
        }
        for object in store.list_objects(&format!("{}/", day_folder.trim_end_matches('/'))).await? {
            if !dry_run {
                store.delete(&object.key).await?;
            }
            report.files_deleted += 1;
            report.bytes_deleted += object.bytes;
        }
        report.folders.push(day_folder.trim_end_matches('/').to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use inlet_lake::{LakeLocation, S3Settings};

    #[tokio::test]
    async fn only_days_older_than_each_age_are_deleted() {
        let dir = tempfile::tempdir().expect("dir");
        let store = LakeStore::open(LakeLocation::Local(dir.path().to_path_buf()), &S3Settings::default()).expect("l");
        let keys = [
            "events/source=web/dt=2026-11-01/hour=00/a.parquet",
            "events/source=web/dt=2026-11-25/hour=00/a.parquet",
            "events/source=app/dt=2026-11-01/hour=00/a.parquet",
            "dead-letters/destination=amp/dt=2026-11-20/x.jsonl",
            "dead-letters/destination=amp/dt=2026-12-01/x.jsonl",
            "blocked/source=web/dt=2026-11-20/hour=00/b.parquet",
        ];
        for key in keys {
            store.put(key, Bytes::from_static(b"x")).await.expect("put");
        }
        let config = RetentionConfig {
            events_days: Some(30),
            events_days_by_source: BTreeMap::from([("app".to_owned(), 60)]),
            dead_letters_days: Some(7),
        };
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).expect("day");
        let planned = expire(&store, &config, today, true).await.expect("dry run");
        assert_eq!(planned.files_deleted, 3);
        assert_eq!(store.list("").await.expect("list").len(), 6, "a dry run deletes nothing");
        let report = expire(&store, &config, today, false).await.expect("expire");
        assert_eq!(
            report.folders,
            vec![
                "events/source=web/dt=2026-11-01",
                "dead-letters/destination=amp/dt=2026-11-20",
                "blocked/source=web/dt=2026-11-20"
            ]
        );
        assert_eq!(store.list("").await.expect("list"), [keys[4], keys[2], keys[1]]);
    }
}
