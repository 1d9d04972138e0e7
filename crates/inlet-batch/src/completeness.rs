//! Whether the lake holds every event of a reporting day, so a scheduler knows when to run.
//!
//! Each gateway instance publishes `_inlet/watermarks/{instance}.json` after every flush
//! (docs/lake.md): every event it acknowledged before `flushed_before` is in the lake. A
//! reporting day is complete once every instance's watermark is at or past the day's end in the
//! reporting time zone. An instance that was retired keeps its last watermark and so holds
//! every later day back; operators delete its file (docs/operations.md).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use inlet_lake::layout::WATERMARK_PREFIX;
use inlet_lake::{LakeStore, Watermark};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CompletenessError {
    #[error("reading the watermarks: {0}")]
    Store(#[from] inlet_lake::store::StoreError),
    #[error("watermark {key} is not valid JSON: {source}")]
    Invalid { key: String, source: serde_json::Error },
    #[error("{0} has no end in time zone {1}")]
    NoDayEnd(NaiveDate, Tz),
}

#[derive(Debug, Serialize)]
pub struct DayStatus {
    pub date: NaiveDate,
    pub time_zone: String,
    /// The day's end in UTC: what every watermark must reach.
    pub ends_at: DateTime<Utc>,
    pub complete: bool,
    pub watermarks: Vec<Watermark>,
    /// Instances still short of `ends_at`.
    pub waiting_for: Vec<String>,
}

/// The first instant after `date` in `zone` (the next local midnight, or the first valid local
/// time after it where a transition skips midnight).
pub fn day_end(date: NaiveDate, zone: Tz) -> Result<DateTime<Utc>, CompletenessError> {
    let next = date.succ_opt().ok_or(CompletenessError::NoDayEnd(date, zone))?;
    (0..=3)
        .filter_map(|hour| next.and_hms_opt(hour, 0, 0))
        .find_map(|local| zone.from_local_datetime(&local).earliest())
        .map(|t| t.with_timezone(&Utc))
        .ok_or(CompletenessError::NoDayEnd(date, zone))
}

pub async fn day_status(store: &LakeStore, date: NaiveDate, zone: Tz) -> Result<DayStatus, CompletenessError> {
    let ends_at = day_end(date, zone)?;
    let mut watermarks = Vec::new();
    for key in store.list(&format!("{WATERMARK_PREFIX}/")).await? {
        if !key.ends_with(".json") {
            continue;
        }
        // A watermark deleted between listing and reading is a retired instance: skip it.
        let Some(bytes) = store.get(&key).await? else { continue };
        let watermark: Watermark =
            serde_json::from_slice(&bytes).map_err(|source| CompletenessError::Invalid { key: key.clone(), source })?;
        watermarks.push(watermark);
    }
    watermarks.sort_by(|a, b| a.instance.cmp(&b.instance));
    let waiting_for: Vec<String> =
        watermarks.iter().filter(|w| w.flushed_before < ends_at).map(|w| w.instance.clone()).collect();
    Ok(DayStatus {
        date,
        time_zone: zone.name().to_owned(),
        ends_at,
        // No watermark at all: no gateway has flushed yet, so nothing can be promised.
        complete: !watermarks.is_empty() && waiting_for.is_empty(),
        watermarks,
        waiting_for,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use inlet_lake::{LakeLocation, S3Settings};

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn a_day_ends_at_the_next_local_midnight() {
        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        assert_eq!(day_end(date("2026-11-20"), seoul).expect("end").to_rfc3339(), "2026-11-20T15:00:00+00:00");
        assert_eq!(day_end(date("2026-11-20"), Tz::UTC).expect("end").to_rfc3339(), "2026-11-21T00:00:00+00:00");
        // Midnight does not exist in Santiago when DST starts (2026-09-06 00:00 → 01:00).
        let santiago: Tz = "America/Santiago".parse().expect("zone");
        assert_eq!(day_end(date("2026-09-05"), santiago).expect("end").to_rfc3339(), "2026-09-06T04:00:00+00:00");
    }

    async fn store_with(watermarks: &[(&str, &str)]) -> (tempfile::TempDir, LakeStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = LakeLocation::parse(dir.path().to_str().expect("utf-8")).expect("location");
        let store = LakeStore::open(location, &S3Settings::default()).expect("open the lake");
        for (instance, flushed_before) in watermarks {
            let body = format!(r#"{{"instance":"{instance}","flushed_before":"{flushed_before}","lsn":7}}"#);
            store.put(&format!("{WATERMARK_PREFIX}/{instance}.json"), Bytes::from(body)).await.expect("put");
        }
        (dir, store)
    }

    #[tokio::test]
    async fn complete_only_when_every_instance_is_past_the_end() {
        let (_dir, store) = store_with(&[("gw-a", "2026-11-21T00:00:00Z"), ("gw-b", "2026-11-20T23:59:59Z")]).await;
        let status = day_status(&store, date("2026-11-20"), Tz::UTC).await.expect("status");
        assert!(!status.complete);
        assert_eq!(status.waiting_for, vec!["gw-b".to_owned()]);
        let status = day_status(&store, date("2026-11-19"), Tz::UTC).await.expect("status");
        assert!(status.complete);
        // The same watermarks in Seoul: the 20th ended at 15:00 UTC.
        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        assert!(day_status(&store, date("2026-11-20"), seoul).await.expect("status").complete);
    }

    #[tokio::test]
    async fn no_watermark_is_not_complete_and_a_broken_one_is_an_error() {
        let (_dir, store) = store_with(&[]).await;
        assert!(!day_status(&store, date("2026-11-20"), Tz::UTC).await.expect("status").complete);
        store.put(&format!("{WATERMARK_PREFIX}/gw-x.json"), Bytes::from_static(b"{")).await.expect("put");
        let error = day_status(&store, date("2026-11-20"), Tz::UTC).await.expect_err("invalid");
        assert!(error.to_string().contains("gw-x.json"), "{error}");
    }
}
