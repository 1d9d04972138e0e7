//! Where things go in the lake: `events/source={source}/dt={YYYY-MM-DD}/hour={HH}/{file}.parquet`.

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use inlet_segment::{StoredRecord, parse_timestamp};
use serde::{Deserialize, Serialize};

/// Events whose corrected timestamp lies further than this after they were received are
/// partitioned by `receivedAt` instead (a clock set years ahead must not create far-future
/// partitions); their `timestamp` column keeps the value sent.
pub const MAX_FUTURE_SKEW: Duration = Duration::days(1);

/// The top folder of event files; watermarks live under [`WATERMARK_PREFIX`], beside it, so a
/// crawler of `events/` never sees them.
pub const EVENTS_PREFIX: &str = "events";
/// Events a tracking plan in `block` mode kept out of `events/`: the same schema and layout, the
/// violations in their column. The tracking plan's dead letters.
pub const BLOCKED_PREFIX: &str = "blocked";
pub const WATERMARK_PREFIX: &str = "_inlet/watermarks";

/// What `{WATERMARK_PREFIX}/{instance}.json` holds, written by the lake writer after each flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub instance: String,
    /// Every event this instance acknowledged before this instant is in the lake.
    pub flushed_before: DateTime<Utc>,
    pub lsn: u64,
}

/// Whether `name` may become a folder or file name in the lake (a source, an instance id, a
/// destination's dead-letter folder): 1-64 lowercase letters, digits, `-`, `_`. No escaping is
/// ever needed, and no name can climb out of its folder.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// What [`is_safe_name`] accepts, for error messages.
pub const SAFE_NAME_RULE: &str = "1-64 lowercase letters, digits, '-' or '_'";

/// One hour of one source: the unit a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hour {
    pub date: NaiveDate,
    pub hour: u32,
}

impl Hour {
    pub fn of(t: DateTime<Utc>) -> Hour {
        Hour { date: t.date_naive(), hour: t.hour() }
    }

    pub fn start(self) -> DateTime<Utc> {
        self.date.and_hms_opt(self.hour, 0, 0).expect("valid hour").and_utc()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub table: LakeTable,
    pub source: String,
    pub hour: Hour,
}

/// The lake's tables of events, by their top folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LakeTable {
    Events,
    Blocked,
}

impl LakeTable {
    pub fn prefix(self) -> &'static str {
        match self {
            LakeTable::Events => EVENTS_PREFIX,
            LakeTable::Blocked => BLOCKED_PREFIX,
        }
    }
}

impl Partition {
    /// The partition of a stored event: the UTC hour of its corrected `timestamp`, or of its
    /// `receivedAt` when the timestamp is before `min_time` or too far in the future.
    pub fn of(stored: &StoredRecord<'_>, min_time: DateTime<Utc>) -> Partition {
        let field = |name| stored.text(name).and_then(|t| parse_timestamp(&t));
        let received = field("receivedAt").unwrap_or_else(Utc::now);
        let time = match field("timestamp") {
            Some(t) if t >= min_time && t <= received + MAX_FUTURE_SKEW => t,
            _ => received,
        };
        let table = if stored.is_blocked() { LakeTable::Blocked } else { LakeTable::Events };
        Partition { table, source: stored.source.to_string(), hour: Hour::of(time) }
    }

    /// The folder of this partition, relative to the lake root.
    pub fn folder(&self) -> String {
        format!(
            "{}/source={}/dt={}/hour={:02}",
            self.table.prefix(),
            self.source,
            self.hour.date.format("%Y-%m-%d"),
            self.hour.hour
        )
    }

    /// The object key of the file holding this partition's records of WAL range `from..to`,
    /// written by `instance`: unique across instances, and the same every time the same range
    /// is flushed, so a retried or repeated upload replaces instead of duplicating.
    pub fn file_key(&self, instance: &str, from: u64, to: u64) -> String {
        format!("{}/{instance}-{from:020}-{to:020}.parquet", self.folder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn partition(timestamp: &str, min: DateTime<Utc>) -> Partition {
        let event = json!({"timestamp": timestamp, "receivedAt": "2024-05-01T10:00:00.000000Z"});
        let bytes = serde_json::to_vec(&json!({"source": "web", "event": event})).expect("json");
        Partition::of(&StoredRecord::decode(&bytes).expect("record"), min)
    }

    #[test]
    fn partitions_by_corrected_hour_with_a_fallback_for_absurd_times() {
        let min = parse_timestamp("2015-01-01T00:00:00Z").expect("ts");
        let p = partition("2024-04-30T23:59:59.999999Z", min);
        assert_eq!(p.folder(), "events/source=web/dt=2024-04-30/hour=23");
        assert_eq!(
            p.file_key("gw-1", 5, 17),
            "events/source=web/dt=2024-04-30/hour=23/gw-1-00000000000000000005-00000000000000000017.parquet"
        );
        assert_eq!(partition("2031-01-01T00:00:00Z", min).folder(), "events/source=web/dt=2024-05-01/hour=10");
        assert_eq!(partition("1970-01-01T00:00:00Z", min).folder(), "events/source=web/dt=2024-05-01/hour=10");
        assert_eq!(partition("2024-05-02T09:00:00Z", min).folder(), "events/source=web/dt=2024-05-02/hour=09");
    }
}
