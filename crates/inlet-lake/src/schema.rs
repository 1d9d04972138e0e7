//! The lake's table schema (Segment warehouse naming, snake_case) and the conversion of stored
//! events into Arrow columns. Documented column by column in `docs/lake.md`.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use inlet_segment::{StoredEvent, parse_timestamp};
use serde_json::{Map, Value};

/// Top-level string columns taken as they are from the event.
pub(crate) const ID_COLUMNS: [(&str, &str); 9] = [
    ("message_id", "messageId"),
    ("type", "type"),
    ("event", "event"),
    ("name", "name"),
    ("category", "category"),
    ("user_id", "userId"),
    ("anonymous_id", "anonymousId"),
    ("group_id", "groupId"),
    ("previous_id", "previousId"),
];

/// Timestamp columns (UTC, microseconds).
pub(crate) const TIME_COLUMNS: [(&str, &str); 4] = [
    ("timestamp", "timestamp"),
    ("original_timestamp", "originalTimestamp"),
    ("sent_at", "sentAt"),
    ("received_at", "receivedAt"),
];

/// Flattened context fields analysts filter on: column and path inside `context`.
pub const CONTEXT_COLUMNS: [(&str, &[&str]); 27] = [
    ("context_ip", &["ip"]),
    ("context_user_agent", &["userAgent"]),
    ("context_locale", &["locale"]),
    ("context_timezone", &["timezone"]),
    ("context_library_name", &["library", "name"]),
    ("context_library_version", &["library", "version"]),
    ("context_page_url", &["page", "url"]),
    ("context_page_path", &["page", "path"]),
    ("context_page_referrer", &["page", "referrer"]),
    ("context_page_title", &["page", "title"]),
    ("context_page_search", &["page", "search"]),
    ("context_campaign_source", &["campaign", "source"]),
    ("context_campaign_medium", &["campaign", "medium"]),
    ("context_campaign_name", &["campaign", "name"]),
    ("context_campaign_term", &["campaign", "term"]),
    ("context_campaign_content", &["campaign", "content"]),
    ("context_device_id", &["device", "id"]),
    ("context_device_type", &["device", "type"]),
    ("context_device_manufacturer", &["device", "manufacturer"]),
    ("context_device_model", &["device", "model"]),
    ("context_os_name", &["os", "name"]),
    ("context_os_version", &["os", "version"]),
    ("context_app_name", &["app", "name"]),
    ("context_app_version", &["app", "version"]),
    ("context_app_build", &["app", "build"]),
    ("context_screen_width", &["screen", "width"]),
    ("context_screen_height", &["screen", "height"]),
];

/// Integer context columns (the rest are strings).
const INTEGER_CONTEXT_COLUMNS: [&str; 2] = ["context_screen_width", "context_screen_height"];

/// Objects kept whole, as JSON text, so nothing the client sent is lost.
pub(crate) const JSON_COLUMNS: [&str; 4] = ["context", "properties", "traits", "integrations"];

/// Top-level fields with a column of their own; anything else lands in `extra`.
const MAPPED_FIELDS: [&str; 17] = [
    "messageId",
    "type",
    "event",
    "name",
    "category",
    "userId",
    "anonymousId",
    "groupId",
    "previousId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "context",
    "properties",
    "traits",
    "integrations",
];

/// The lake's Arrow schema, in column order.
pub static LAKE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utc_micros = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields = Vec::new();
    for (column, _) in ID_COLUMNS {
        fields.push(Field::new(
            column,
            DataType::Utf8,
            matches!(column, "event" | "name" | "category" | "user_id" | "anonymous_id" | "group_id" | "previous_id"),
        ));
    }
    for (column, _) in TIME_COLUMNS {
        fields.push(Field::new(column, utc_micros.clone(), !matches!(column, "timestamp" | "received_at")));
    }
    fields.push(Field::new("source", DataType::Utf8, false));
    for (column, _) in CONTEXT_COLUMNS {
        let data_type = if INTEGER_CONTEXT_COLUMNS.contains(&column) { DataType::Int64 } else { DataType::Utf8 };
        fields.push(Field::new(column, data_type, true));
    }
    for column in JSON_COLUMNS {
        fields.push(Field::new(column, DataType::Utf8, true));
    }
    fields.push(Field::new("extra", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// Column builders for one partition's rows.
#[derive(Debug)]
pub struct EventColumns {
    ids: Vec<StringBuilder>,
    times: Vec<TimestampMicrosecondBuilder>,
    source: StringBuilder,
    context_strings: Vec<(usize, StringBuilder)>,
    context_integers: Vec<(usize, Int64Builder)>,
    json: Vec<StringBuilder>,
    extra: StringBuilder,
    rows: usize,
}

impl Default for EventColumns {
    fn default() -> EventColumns {
        let mut context_strings = Vec::new();
        let mut context_integers = Vec::new();
        for (i, (column, _)) in CONTEXT_COLUMNS.iter().enumerate() {
            if INTEGER_CONTEXT_COLUMNS.contains(column) {
                context_integers.push((i, Int64Builder::new()));
            } else {
                context_strings.push((i, StringBuilder::new()));
            }
        }
        EventColumns {
            ids: ID_COLUMNS.iter().map(|_| StringBuilder::new()).collect(),
            times: TIME_COLUMNS.iter().map(|_| TimestampMicrosecondBuilder::new().with_timezone("UTC")).collect(),
            source: StringBuilder::new(),
            context_strings,
            context_integers,
            json: JSON_COLUMNS.iter().map(|_| StringBuilder::new()).collect(),
            extra: StringBuilder::new(),
            rows: 0,
        }
    }
}

impl EventColumns {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one stored event as a row.
    pub fn append(&mut self, stored: &StoredEvent) {
        let event = &stored.event;
        for (builder, (_, field)) in self.ids.iter_mut().zip(ID_COLUMNS) {
            builder.append_option(scalar_text(event.get(field)));
        }
        for (builder, (_, field)) in self.times.iter_mut().zip(TIME_COLUMNS) {
            let micros =
                event.get(field).and_then(Value::as_str).and_then(parse_timestamp).map(|t| t.timestamp_micros());
            builder.append_option(micros);
        }
        self.source.append_value(&stored.source);
        let context = event.get("context").and_then(Value::as_object);
        for (index, builder) in &mut self.context_strings {
            builder.append_option(scalar_text(lookup(context, CONTEXT_COLUMNS[*index].1)));
        }
        for (index, builder) in &mut self.context_integers {
            builder.append_option(lookup(context, CONTEXT_COLUMNS[*index].1).and_then(integer));
        }
        for (builder, field) in self.json.iter_mut().zip(JSON_COLUMNS) {
            builder.append_option(event.get(field).filter(|v| !v.is_null()).map(Value::to_string));
        }
        let extra: Map<String, Value> = event
            .iter()
            .filter(|(k, _)| !MAPPED_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.extra.append_option((!extra.is_empty()).then(|| Value::Object(extra).to_string()));
        self.rows += 1;
    }

    /// Takes the rows built so far as a record batch, leaving the builders empty.
    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(LAKE_SCHEMA.fields().len());
        columns.extend(self.ids.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.times.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(self.source.finish()));
        let mut context: Vec<(usize, ArrayRef)> = self
            .context_strings
            .iter_mut()
            .map(|(i, b)| (*i, Arc::new(b.finish()) as ArrayRef))
            .chain(self.context_integers.iter_mut().map(|(i, b)| (*i, Arc::new(b.finish()) as ArrayRef)))
            .collect();
        context.sort_by_key(|(i, _)| *i);
        columns.extend(context.into_iter().map(|(_, a)| a));
        columns.extend(self.json.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(self.extra.finish()));
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&LAKE_SCHEMA), columns).expect("columns follow LAKE_SCHEMA")
    }
}

fn lookup<'a>(context: Option<&'a Map<String, Value>>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut current = context?;
    for key in parents {
        current = current.get(*key)?.as_object()?;
    }
    current.get(*last)
}

/// Strings as they are; numbers and booleans as their JSON text; objects, arrays and null as
/// absent (they have no single-value reading).
fn scalar_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    fn stored(event: Value) -> StoredEvent {
        StoredEvent { source: "web".into(), event: event.as_object().cloned().expect("object") }
    }

    #[test]
    fn maps_every_column_and_keeps_the_rest_as_json() {
        let mut columns = EventColumns::default();
        columns.append(&stored(json!({
            "messageId": "m1", "type": "track", "event": "Viewed", "userId": "42",
            "timestamp": "2024-05-01T09:59:59.123456Z", "receivedAt": "2024-05-01T10:00:00.000000Z",
            "context": {"ip": "203.0.113.7", "userAgent": "UA", "page": {"path": "/a"}, "screen": {"width": 1080, "height": "2340"},
                        "app": {"build": 320}, "library": {"name": "analytics.js"}},
            "properties": {"x": 1}, "channel": "server", "version": 2
        })));
        columns.append(&stored(json!({"messageId": "m2", "type": "identify", "anonymousId": "a",
            "timestamp": "2024-05-01T10:00:00.000000Z", "receivedAt": "2024-05-01T10:00:00.000000Z", "traits": {"t": true}})));
        let batch = columns.finish();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), *LAKE_SCHEMA);
        let text = |name: &str, row: usize| {
            let column = batch.column_by_name(name).expect(name).as_string::<i32>();
            column.is_valid(row).then(|| column.value(row).to_owned())
        };
        assert_eq!(text("message_id", 0).as_deref(), Some("m1"));
        assert_eq!(text("user_id", 1), None);
        assert_eq!(text("context_page_path", 0).as_deref(), Some("/a"));
        assert_eq!(text("context_app_build", 0).as_deref(), Some("320"));
        assert_eq!(text("context_user_agent", 0).as_deref(), Some("UA"));
        assert_eq!(text("properties", 0).as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(text("traits", 1).as_deref(), Some(r#"{"t":true}"#));
        assert_eq!(text("extra", 0).as_deref(), Some(r#"{"channel":"server","version":2}"#));
        assert_eq!(text("extra", 1), None);
        assert_eq!(text("source", 1).as_deref(), Some("web"));
        let heights = batch.column_by_name("context_screen_height").expect("col").as_primitive::<Int64Type>();
        assert_eq!(heights.value(0), 2340);
        assert!(heights.is_null(1));
        let ts = batch.column_by_name("timestamp").expect("col").as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_714_557_599_123_456);
        assert!(batch.column_by_name("sent_at").expect("col").is_null(0));
        assert!(columns.is_empty(), "finish leaves the builders empty");
    }
}
