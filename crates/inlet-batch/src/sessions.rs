//! Sessions by one sweep over time-ordered rows. A session is a run of activity with no gap
//! over the timeout; merging the sessions of raw keys stitched together by overlap or a gap of
//! at most the timeout gives exactly the sessions of their merged calls. SQL states the same
//! with two window functions (`LAG`, then a running `SUM`), which DataFusion sorts for twice and
//! which made sessions the job's slowest step; the queries here only order the rows
//! (`sql/day_session_calls.sql`, `sql/sessions.sql`) and the sweep does the rest.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Date32Type, Int64Type, SchemaRef};
use datafusion::arrow::error::ArrowError;

/// One session: first and last call (µs) and the number of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    started: i64,
    ended: i64,
    events: i64,
}

/// Merges rows ordered by (key, start, end): a row continues the current session of its key
/// when it starts at most `timeout` after the latest end so far.
#[derive(Debug)]
struct Sweep<K> {
    timeout: i64,
    current: Option<(K, Session)>,
}

impl<K: PartialEq> Sweep<K> {
    fn new(timeout: i64) -> Sweep<K> {
        Sweep { timeout, current: None }
    }

    /// Adds a row; returns the session it closed, if any.
    #[cfg(test)]
    fn push(&mut self, key: K, started: i64, ended: i64, events: i64) -> Option<(K, Session)> {
        let same = self.current.as_ref().is_some_and(|(current, _)| *current == key);
        self.push_with(|_| same, || key, started, ended, events)
    }

    /// Adds a row of the key `same_key` recognises (built by `key` only when the row starts a
    /// session); returns the session it closed, if any.
    fn push_with(
        &mut self,
        same_key: impl FnOnce(&K) -> bool,
        key: impl FnOnce() -> K,
        started: i64,
        ended: i64,
        events: i64,
    ) -> Option<(K, Session)> {
        if let Some((current_key, session)) = &mut self.current
            && same_key(current_key)
            && started - session.ended <= self.timeout
        {
            session.ended = session.ended.max(ended);
            session.events += events;
            return None;
        }
        self.current.replace((key(), Session { started, ended, events }))
    }

    fn finish(self) -> Option<(K, Session)> {
        self.current
    }
}

/// Each raw key's sessions within a day, from rows `(source, raw_key, micros)` ordered by them;
/// `schema`: the `sessions` day summary's (source, raw_key, started, ended, events).
pub fn day_sessions(schema: &SchemaRef, calls: &[RecordBatch], timeout: i64) -> Result<RecordBatch, ArrowError> {
    let (mut sources, mut keys, mut starts, mut ends, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut emit = |closed: Option<((String, String), Session)>| {
        if let Some(((source, key), session)) = closed {
            sources.push(source);
            keys.push(key);
            starts.push(session.started);
            ends.push(session.ended);
            counts.push(session.events);
        }
    };
    let mut sweep = Sweep::new(timeout);
    for batch in calls {
        let (source, key, micros) = (
            batch.column(0).as_string::<i32>(),
            batch.column(1).as_string::<i32>(),
            batch.column(2).as_primitive::<Int64Type>(),
        );
        for row in 0..batch.num_rows() {
            let (s, k, at) = (source.value(row), key.value(row), micros.value(row));
            emit(sweep.push_with(|(cs, ck)| cs == s && ck == k, || (s.to_owned(), k.to_owned()), at, at, 1));
        }
    }
    emit(sweep.finish());
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(sources)),
            Arc::new(StringArray::from(keys)),
            Arc::new(TimestampMicrosecondArray::from(starts).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(ends).with_timezone("UTC")),
            Arc::new(Int64Array::from(counts)),
        ],
    )
}

/// The `sessions` table from rows `(day, source, user_key, started µs, ended µs, events)`
/// ordered by them: per day and source, the number of merged sessions, their mean length in
/// seconds and the share with a single call.
pub fn session_totals(schema: &SchemaRef, rows: &[RecordBatch], timeout: i64) -> Result<RecordBatch, ArrowError> {
    #[derive(Default)]
    struct Totals {
        sessions: i64,
        micros: i64,
        single: i64,
    }
    let mut totals: BTreeMap<(i32, String), Totals> = BTreeMap::new();
    let mut add = |closed: Option<((i32, String, String), Session)>| {
        if let Some(((day, source, _), session)) = closed {
            let entry = totals.entry((day, source)).or_default();
            entry.sessions += 1;
            entry.micros += session.ended - session.started;
            entry.single += i64::from(session.events == 1);
        }
    };
    let mut sweep = Sweep::new(timeout);
    for batch in rows {
        let day = batch.column(0).as_primitive::<Date32Type>();
        let (source, user) = (batch.column(1).as_string::<i32>(), batch.column(2).as_string::<i32>());
        let (started, ended, events) = (
            batch.column(3).as_primitive::<Int64Type>(),
            batch.column(4).as_primitive::<Int64Type>(),
            batch.column(5).as_primitive::<Int64Type>(),
        );
        for row in 0..batch.num_rows() {
            let (d, s, u) = (day.value(row), source.value(row), user.value(row));
            add(sweep.push_with(
                |(cd, cs, cu)| *cd == d && cs == s && cu == u,
                || (d, s.to_owned(), u.to_owned()),
                started.value(row),
                ended.value(row),
                events.value(row),
            ));
        }
    }
    add(sweep.finish());
    let days: Date32Array = totals.keys().map(|(day, _)| Some(*day)).collect();
    let sources = StringArray::from_iter_values(totals.keys().map(|(_, source)| source.as_str()));
    let count = Int64Array::from_iter_values(totals.values().map(|t| t.sessions));
    let seconds: Float64Array =
        totals.values().map(|t| Some(t.micros as f64 / 1_000_000.0 / t.sessions as f64)).collect();
    let bounce: Float64Array = totals.values().map(|t| Some(t.single as f64 / t.sessions as f64)).collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(days), Arc::new(sources), Arc::new(count), Arc::new(seconds), Arc::new(bounce)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn sessions(rows: &[(&'static str, i64, i64, i64)]) -> Vec<(&'static str, Session)> {
        let mut sweep = Sweep::new(30 * MINUTE);
        let mut out: Vec<(&'static str, Session)> =
            rows.iter().filter_map(|(key, start, end, events)| sweep.push(*key, *start, *end, *events)).collect();
        out.extend(sweep.finish());
        out
    }

    #[test]
    fn a_gap_of_exactly_the_timeout_continues_and_a_longer_one_splits() {
        let calls = [("a", 0, 0, 1), ("a", 30 * MINUTE, 30 * MINUTE, 1), ("a", 61 * MINUTE, 61 * MINUTE, 1)];
        assert_eq!(
            sessions(&calls),
            vec![
                ("a", Session { started: 0, ended: 30 * MINUTE, events: 2 }),
                ("a", Session { started: 61 * MINUTE, ended: 61 * MINUTE, events: 1 })
            ]
        );
        assert_eq!(sessions(&[("a", 0, 0, 1), ("b", MINUTE, MINUTE, 1)]).len(), 2, "keys never merge");
    }

    #[test]
    fn merging_sessions_equals_splitting_their_merged_calls() {
        // Two raw keys of one user: their sessions interleave and one contains the other.
        let merged = [("u", 0, 40 * MINUTE, 5), ("u", 10 * MINUTE, 20 * MINUTE, 2), ("u", 55 * MINUTE, 60 * MINUTE, 2)];
        assert_eq!(
            sessions(&merged),
            vec![("u", Session { started: 0, ended: 60 * MINUTE, events: 9 })],
            "the gap is measured from the latest end so far (40 min), not the previous row's (20 min)"
        );
        let apart = [("u", 0, 40 * MINUTE, 5), ("u", 71 * MINUTE, 80 * MINUTE, 2)];
        assert_eq!(sessions(&apart).len(), 2);
    }
}
