//! Reading lake files back into stored events (for replay to destinations): the inverse of
//! [`crate::schema::EventColumns::append`]. Id columns come back as strings (a numeric id sent
//! as a number is stored as its text), timestamps in the normaliser's format, `context`,
//! `properties`, `traits` and `integrations` from their JSON text, and `extra` merged back at
//! the top level.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use chrono::DateTime;
use inlet_segment::{StoredEvent, format_timestamp};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use serde_json::{Map, Value};

use crate::schema::{ID_COLUMNS, JSON_COLUMNS, TIME_COLUMNS};

/// The Parquet files of `table` for `source` in the hour partitions overlapping `[from, to)`, in
/// hour order.
pub async fn hour_files(
    store: &crate::LakeStore,
    table: crate::layout::LakeTable,
    source: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, crate::store::StoreError> {
    let mut files = Vec::new();
    let mut hour = crate::layout::Hour::of(from);
    while hour.start() < to {
        let partition = crate::layout::Partition { table, source: source.to_owned(), hour };
        let listed = store.list(&format!("{}/", partition.folder())).await?;
        files.extend(listed.into_iter().filter(|key| key.ends_with(".parquet")));
        let next = hour.start() + chrono::Duration::hours(1);
        hour = crate::layout::Hour::of(next);
    }
    Ok(files)
}

/// Every event of one lake file, in file order.
pub fn read_events(file: Bytes) -> Result<Vec<StoredEvent>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut events = Vec::new();
    for batch in reader {
        events.extend(batch_events(&batch?));
    }
    Ok(events)
}

fn batch_events(batch: &RecordBatch) -> Vec<StoredEvent> {
    let strings = |name: &str| batch.column_by_name(name).map(|c| c.as_string::<i32>().clone());
    let ids: Vec<_> = ID_COLUMNS.iter().map(|(column, field)| (*field, strings(column))).collect();
    let json: Vec<_> = JSON_COLUMNS.iter().map(|column| (*column, strings(column))).collect();
    let times: Vec<_> = TIME_COLUMNS
        .iter()
        .map(|(column, field)| {
            (*field, batch.column_by_name(column).map(|c| c.as_primitive::<TimestampMicrosecondType>().clone()))
        })
        .collect();
    let source = strings("source");
    let extra = strings("extra");
    (0..batch.num_rows())
        .map(|row| {
            let mut event = Map::new();
            for (field, column) in &ids {
                if let Some(column) = column.as_ref().filter(|c| c.is_valid(row)) {
                    event.insert((*field).to_owned(), Value::String(column.value(row).to_owned()));
                }
            }
            for (field, column) in &times {
                if let Some(column) = column.as_ref().filter(|c| c.is_valid(row))
                    && let Some(t) = DateTime::from_timestamp_micros(column.value(row))
                {
                    event.insert((*field).to_owned(), Value::String(format_timestamp(t)));
                }
            }
            for (field, column) in &json {
                if let Some(column) = column.as_ref().filter(|c| c.is_valid(row))
                    && let Ok(value) = serde_json::from_str::<Value>(column.value(row))
                {
                    event.insert((*field).to_owned(), value);
                }
            }
            if let Some(column) = extra.as_ref().filter(|c| c.is_valid(row))
                && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(column.value(row))
            {
                event.extend(fields);
            }
            let source =
                source.as_ref().filter(|c| c.is_valid(row)).map_or_else(String::new, |c| c.value(row).to_owned());
            StoredEvent::new(source, event)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_segment::StoredRecord;

    use crate::parquet_file::{Codec, ParquetFile};
    use crate::schema::EventColumns;

    #[test]
    fn a_written_event_reads_back_as_stored() {
        let stored: StoredEvent = serde_json::from_value(serde_json::json!({
            "source": "web",
            "event": {
                "messageId": "m-1", "type": "track", "event": "Signed Up", "userId": "u-1",
                "anonymousId": "a-1", "timestamp": "2026-01-02T03:04:05.678901Z",
                "receivedAt": "2026-01-02T03:04:06.000000Z", "sentAt": "2026-01-02T03:04:05.900000Z",
                "originalTimestamp": "2026-01-02T03:04:05.600000Z",
                "context": {"page": {"path": "/"}, "library": {"name": "analytics.js"}},
                "properties": {"plan": "pro", "n": 2}, "integrations": {"All": true},
                "channel": "server", "version": 2
            }
        }))
        .expect("event");
        let mut columns = EventColumns::default();
        let record = stored.encode();
        columns.append(&StoredRecord::decode(&record).expect("record"));
        let mut file = ParquetFile::new(Codec::Zstd);
        file.write(&columns.finish()).expect("write");
        let bytes = file.finish().expect("finish");
        let back = read_events(Bytes::from(bytes)).expect("reads");
        assert_eq!(back, vec![stored]);
    }
}
