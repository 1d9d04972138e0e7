//! The lake's table schema (Segment warehouse naming, snake_case) and the conversion of stored
//! events into Arrow columns. Documented column by column in `docs/lake.md`.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{ArrayBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use inlet_segment::{
    Member, ObjectWriter, RawObject, Scalar, StoredRecord, is_null, object_members, parse_timestamp, scalar,
    string_value,
};

pub use crate::field_index::EVENT_NESTED;
use crate::field_index::{CONTEXT, InContext, TOP_LEVEL, TopLevel};

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

/// What the source's tracking plan found wrong with the event: a JSON array of `{kind,
/// property, message}`, null when the event broke no plan (or its source has none).
pub const VIOLATIONS_COLUMN: &str = "violations";

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
    fields.push(Field::new(VIOLATIONS_COLUMN, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// Column builders for one partition's rows.
#[derive(Debug)]
pub struct EventColumns {
    ids: Vec<StringBuilder>,
    times: Vec<TimestampMicrosecondBuilder>,
    source: StringBuilder,
    /// In `CONTEXT_COLUMNS` order.
    context: Vec<ContextBuilder>,
    json: Vec<StringBuilder>,
    extra: StringBuilder,
    violations: StringBuilder,
    rows: usize,
}

#[derive(Debug)]
enum ContextBuilder {
    Text(StringBuilder),
    Integer(Int64Builder),
}

impl Default for EventColumns {
    fn default() -> EventColumns {
        let context = CONTEXT_COLUMNS
            .iter()
            .map(|(column, _)| {
                if INTEGER_CONTEXT_COLUMNS.contains(column) {
                    ContextBuilder::Integer(Int64Builder::new())
                } else {
                    ContextBuilder::Text(StringBuilder::new())
                }
            })
            .collect();
        EventColumns {
            ids: ID_COLUMNS.iter().map(|_| StringBuilder::new()).collect(),
            times: TIME_COLUMNS.iter().map(|_| TimestampMicrosecondBuilder::new().with_timezone("UTC")).collect(),
            source: StringBuilder::new(),
            context,
            json: JSON_COLUMNS.iter().map(|_| StringBuilder::new()).collect(),
            extra: StringBuilder::new(),
            violations: StringBuilder::new(),
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

    /// Appends one stored event as a row. Any record will do; one decoded with
    /// [`EVENT_NESTED`] has its context split already, which saves walking it again.
    pub fn append(&mut self, record: &StoredRecord<'_>) {
        let mut ids = [None; ID_COLUMNS.len()];
        let mut times = [None; TIME_COLUMNS.len()];
        let mut json = [None; JSON_COLUMNS.len()];
        let mut context = None;
        let mut unmapped = 0;
        // Keys are unique (splitting keeps the last of a repeated key), so each slot is set once.
        for member in &record.event.members {
            match TOP_LEVEL.get(&member.key) {
                Some(TopLevel::Id(i)) => ids[i] = Some(member.value),
                Some(TopLevel::Time(i)) => times[i] = Some(member.value),
                Some(TopLevel::Json(i)) => {
                    json[i] = Some(member.value);
                    if i == CONTEXT_JSON_COLUMN {
                        context = Some(member);
                    }
                }
                None => unmapped += 1,
            }
        }
        for (builder, value) in self.ids.iter_mut().zip(ids) {
            builder.append_option(value.and_then(scalar_text));
        }
        for (builder, value) in self.times.iter_mut().zip(times) {
            let micros = value.and_then(string_value).and_then(|t| parse_timestamp(&t)).map(|t| t.timestamp_micros());
            builder.append_option(micros);
        }
        self.source.append_value(&record.source);
        let context = flattened_context(context);
        for (builder, value) in self.context.iter_mut().zip(context) {
            match builder {
                ContextBuilder::Text(b) => b.append_option(value.and_then(scalar_text)),
                ContextBuilder::Integer(b) => b.append_option(value.and_then(integer)),
            }
        }
        for (builder, value) in self.json.iter_mut().zip(json) {
            builder.append_option(value.filter(|v| !is_null(v)));
        }
        if unmapped > 0 {
            let mut extra = Vec::new();
            let mut out = ObjectWriter::new(&mut extra);
            for member in record.event.members.iter().filter(|m| TOP_LEVEL.get(&m.key).is_none()) {
                out.member(member);
            }
            out.finish();
            self.extra.append_value(String::from_utf8_lossy(&extra));
        } else {
            self.extra.append_null();
        }
        self.violations.append_option(record.violations);
        self.rows += 1;
    }

    /// Takes the rows built so far as a record batch, leaving the builders empty.
    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(LAKE_SCHEMA.fields().len());
        columns.extend(self.ids.iter_mut().map(finish_strings));
        columns.extend(self.times.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(finish_strings(&mut self.source));
        columns.extend(self.context.iter_mut().map(|builder| match builder {
            ContextBuilder::Text(b) => finish_strings(b),
            ContextBuilder::Integer(b) => Arc::new(b.finish()) as ArrayRef,
        }));
        columns.extend(self.json.iter_mut().map(finish_strings));
        columns.push(finish_strings(&mut self.extra));
        columns.push(finish_strings(&mut self.violations));
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&LAKE_SCHEMA), columns).expect("columns follow LAKE_SCHEMA")
    }
}

/// Finishes a string column, leaving in its place a builder with room for as many rows and
/// bytes: the next batch of a range is usually alike, and growing a builder from empty copies
/// its bytes again at every doubling (several MiB per batch for `context`).
fn finish_strings(builder: &mut StringBuilder) -> ArrayRef {
    let sized = StringBuilder::with_capacity(builder.len(), builder.values_slice().len());
    Arc::new(std::mem::replace(builder, sized).finish())
}

/// `context`'s place in `JSON_COLUMNS`.
const CONTEXT_JSON_COLUMN: usize = 0;

/// The raw values of the flattened context columns, in `CONTEXT_COLUMNS` order, from one pass
/// over `context` and over each parent object (`page`, `campaign`, …) it has.
fn flattened_context<'a>(context: Option<&Member<'a>>) -> [Option<&'a str>; CONTEXT_COLUMNS.len()] {
    let mut values = [None; CONTEXT_COLUMNS.len()];
    let Some(context) = context.and_then(split_object) else { return values };
    for member in &context.members {
        match CONTEXT.top.get(&member.key) {
            Some(InContext::Column(column)) => values[column] = Some(member.value),
            Some(InContext::Parent(parent)) => {
                let Some(inner) = split_object(member) else { continue };
                for member in &inner.members {
                    if let Some(column) = CONTEXT.inner[parent].get(&member.key) {
                        values[column] = Some(member.value);
                    }
                }
            }
            None => {}
        }
    }
    values
}

/// A member's value as an object: split already when the record was decoded with
/// [`EVENT_NESTED`], split here otherwise. `None` when it is not an object.
fn split_object<'m, 'a>(member: &'m Member<'a>) -> Option<Cow<'m, RawObject<'a>>> {
    match &member.object {
        Some(object) => Some(Cow::Borrowed(object)),
        None => object_members(member.value).map(Cow::Owned),
    }
}

/// Strings as they are; numbers and booleans as their JSON text; objects, arrays and null as
/// absent (they have no single-value reading).
fn scalar_text(raw: &str) -> Option<Cow<'_, str>> {
    match scalar(raw) {
        Scalar::String(s) => Some(s),
        Scalar::Number(n) => Some(n.to_string().into()),
        Scalar::Bool(b) => Some(b.to_string().into()),
        Scalar::Null | Scalar::Other => None,
    }
}

fn integer(raw: &str) -> Option<i64> {
    match scalar(raw) {
        Scalar::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
        }
        Scalar::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use serde_json::{Value, json};

    /// A WAL record's bytes.
    fn stored(event: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"source": "web", "event": event})).expect("json")
    }

    fn append(columns: &mut EventColumns, record: &[u8]) {
        columns.append(&StoredRecord::decode(record).expect("record"));
    }

    #[test]
    fn maps_every_column_and_keeps_the_rest_as_json() {
        let mut columns = EventColumns::default();
        append(
            &mut columns,
            &stored(json!({
                "messageId": "m1", "type": "track", "event": "Viewed", "userId": "42",
                "timestamp": "2024-05-01T09:59:59.123456Z", "receivedAt": "2024-05-01T10:00:00.000000Z",
                "context": {"ip": "203.0.113.7", "userAgent": "UA", "page": {"path": "/a"}, "screen": {"width": 1080, "height": "2340"},
                            "app": {"build": 320}, "library": {"name": "analytics.js"}},
                "properties": {"x": 1}, "channel": "server", "version": 2
            })),
        );
        append(
            &mut columns,
            &stored(json!({"messageId": "m2", "type": "identify", "anonymousId": "a",
            "timestamp": "2024-05-01T10:00:00.000000Z", "receivedAt": "2024-05-01T10:00:00.000000Z", "traits": {"t": true}})),
        );
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

    #[test]
    fn context_columns_are_read_at_their_own_depth_only() {
        let mut columns = EventColumns::default();
        let event = |context: Value| {
            json!({"messageId": "m", "type": "track", "timestamp": "2024-05-01T10:00:00.000000Z",
                   "receivedAt": "2024-05-01T10:00:00.000000Z", "context": context})
        };
        // A key at the wrong depth, a parent that is not an object, a nested key no column has.
        append(
            &mut columns,
            &stored(event(
                json!({"name": "n", "page": "/flat", "library": {"ip": "1.2.3.4", "name": "lib", "extra": 1},
                                  "screen": {"width": 800}}),
            )),
        );
        append(&mut columns, &stored(event(json!("not an object"))));
        append(
            &mut columns,
            &stored(json!({"messageId": "m3", "type": "track", "ip": "5.6.7.8",
            "timestamp": "2024-05-01T10:00:00.000000Z", "receivedAt": "2024-05-01T10:00:00.000000Z"})),
        );
        let batch = columns.finish();
        let filled = |row: usize| -> Vec<&str> {
            CONTEXT_COLUMNS
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| batch.column_by_name(name).expect(name).is_valid(row))
                .collect()
        };
        assert_eq!(filled(0), ["context_library_name", "context_screen_width"]);
        assert_eq!(batch.column_by_name("context_library_name").expect("col").as_string::<i32>().value(0), "lib");
        assert!(filled(1).is_empty());
        assert_eq!(batch.column_by_name("context").expect("col").as_string::<i32>().value(1), r#""not an object""#);
        assert!(filled(2).is_empty(), "a top-level `ip` is not the context's");
        assert_eq!(batch.column_by_name("extra").expect("col").as_string::<i32>().value(2), r#"{"ip":"5.6.7.8"}"#);
    }

    #[test]
    fn a_context_split_when_decoded_gives_the_same_rows() {
        let records = [
            stored(json!({"messageId": "m1", "type": "track", "timestamp": "2024-05-01T10:00:00.000000Z",
                "receivedAt": "2024-05-01T10:00:00.000000Z", "ip": "5.6.7.8",
                "context": {"ip": "1.2.3.4", "page": {"path": "/a", "url": "u", "x": {"y": 1}}, "library": {"name": "lib"},
                            "screen": {"width": 800}, "device": "flat", "os": {"name": "iOS"}, "app": {"build": 7}}})),
            stored(json!({"messageId": "m2", "type": "page", "timestamp": "2024-05-01T10:00:00.000000Z",
                "receivedAt": "2024-05-01T10:00:00.000000Z", "context": "not an object"})),
            r#"{"source":"web","event":{"messageId":"m3","type":"track","timestamp":"2024-05-01T10:00:00Z","receivedAt":"2024-05-01T10:00:00Z","context":{"page":{"path":"/old"}},"context":{"page":{"path":"/new"}}}}"#
                .as_bytes()
                .to_vec(),
        ];
        let (mut nested, mut plain) = (EventColumns::default(), EventColumns::default());
        for record in &records {
            let split = StoredRecord::decode_nested(record, &EVENT_NESTED).expect("record");
            let context = split.event.members.iter().find(|m| m.key == "context").expect("context");
            assert_eq!(context.object.is_some(), context.value.starts_with('{'));
            nested.append(&split);
            plain.append(&StoredRecord::decode(record).expect("record"));
        }
        let (nested, plain) = (nested.finish(), plain.finish());
        assert_eq!(nested, plain);
        let paths = nested.column_by_name("context_page_path").expect("col").as_string::<i32>();
        assert_eq!((paths.value(0), paths.is_null(1), paths.value(2)), ("/a", true, "/new"));
        assert_eq!(nested.column_by_name("context_os_name").expect("col").as_string::<i32>().value(0), "iOS");
    }

    #[test]
    fn the_flattened_context_is_read_from_the_context_column() {
        assert_eq!(JSON_COLUMNS[CONTEXT_JSON_COLUMN], "context");
    }
}
