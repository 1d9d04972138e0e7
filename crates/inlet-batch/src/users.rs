//! The `users` table's traits: every identify call's traits merged over time, later values
//! replacing earlier ones key by key (as Segment's warehouse `users` table), plus the configured
//! traits copied into columns of their own. The state keeps, per trait, when it was set, so
//! days and stitched keys merge in any order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use serde_json::{Map, Value};

/// When a trait value was set: event time and receipt (µs).
pub type SetAt = (i64, i64);

/// Whether a setting replaces the `current` one: set later, or at the same instant with the
/// greater value text, so the latest setter wins whatever order the calls are folded in.
pub fn replaces(at: SetAt, value: &Value, current: Option<&(SetAt, Value)>) -> bool {
    match current {
        None => true,
        Some((current_at, _)) if at != *current_at => at > *current_at,
        Some((_, current_value)) => {
            let (text, current_text) = (value.to_string(), current_value.to_string());
            text > current_text
        }
    }
}

/// A stored trait setting `[event µs, received µs, value]` (the state's format).
pub fn parse_setting(setting: Value) -> Option<(SetAt, Value)> {
    let Value::Array(mut parts) = setting else { return None };
    let value = parts.pop()?;
    let [Value::Number(at), Value::Number(received)] = parts.as_slice() else { return None };
    Some(((at.as_i64()?, received.as_i64()?), value))
}

pub fn setting_json(at: &SetAt, value: &Value) -> Value {
    Value::from(vec![Value::from(at.0), Value::from(at.1), value.clone()])
}

/// Merged traits by (source, user id).
#[derive(Debug, Default)]
pub struct MergedTraits(HashMap<String, HashMap<String, Map<String, Value>>>);

impl MergedTraits {
    /// Merges rows of `(user_key, source, stored traits)`: per trait the latest value set,
    /// removed when that value is `null` (an explicit null clears a trait, as a later identify
    /// does in Segment).
    pub fn from_stored(batches: &[RecordBatch]) -> MergedTraits {
        let mut latest: HashMap<(String, String), BTreeMap<String, (SetAt, Value)>> = HashMap::new();
        for batch in batches {
            let (users, sources, traits) = (
                batch.column(0).as_string::<i32>(),
                batch.column(1).as_string::<i32>(),
                batch.column(2).as_string::<i32>(),
            );
            for row in 0..batch.num_rows() {
                let Ok(Value::Object(stored)) = serde_json::from_str::<Value>(traits.value(row)) else { continue };
                let entry = latest.entry((sources.value(row).to_owned(), users.value(row).to_owned())).or_default();
                for (name, setting) in stored {
                    let Some((at, value)) = parse_setting(setting) else { continue };
                    if replaces(at, &value, entry.get(&name)) {
                        entry.insert(name, (at, value));
                    }
                }
            }
        }
        let mut merged = MergedTraits::default();
        for ((source, user), set) in latest {
            let traits = set.into_iter().filter(|(_, (_, v))| !v.is_null()).map(|(k, (_, v))| (k, v)).collect();
            merged.0.entry(source).or_default().insert(user, traits);
        }
        merged
    }
}

/// Builds the `users` rows from `(user_id, source, first_seen, last_seen)` and the traits.
pub fn users_rows(
    schema: &SchemaRef,
    spans: &[RecordBatch],
    merged: &MergedTraits,
    trait_names: &[String],
) -> Result<RecordBatch, ArrowError> {
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, None);
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut spans_batches = Vec::new();
    for batch in spans {
        let casted = batch
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| cast(c, if i < 2 { &DataType::Utf8 } else { &timestamp }))
            .collect::<Result<Vec<_>, _>>()?;
        spans_batches.push(RecordBatch::try_new(Arc::new(schema.project(&[0, 1, 2, 3])?), casted)?);
    }
    let spans = concat_batches(&Arc::new(schema.project(&[0, 1, 2, 3])?), &spans_batches)?;
    columns.extend(spans.columns().iter().cloned());
    let (users, sources) = (spans.column(0).as_string::<i32>(), spans.column(1).as_string::<i32>());
    let mut traits_json = StringBuilder::new();
    let mut trait_columns: Vec<StringBuilder> = trait_names.iter().map(|_| StringBuilder::new()).collect();
    for row in 0..spans.num_rows() {
        let traits = merged.0.get(sources.value(row)).and_then(|by_user| by_user.get(users.value(row)));
        traits_json.append_option(traits.and_then(|t| serde_json::to_string(t).ok()));
        for (builder, name) in trait_columns.iter_mut().zip(trait_names) {
            builder.append_option(traits.and_then(|t| t.get(name)).and_then(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }));
        }
    }
    columns.push(Arc::new(traits_json.finish()));
    columns.extend(trait_columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn the_latest_setting_of_each_trait_wins_and_null_removes_it() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_key", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("traits", DataType::Utf8, false),
        ]));
        // Two raw keys of one user, folded in an order unrelated to time.
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["u1", "u1", "u1"])),
                Arc::new(StringArray::from(vec!["web", "web", "web"])),
                Arc::new(StringArray::from(vec![
                    r#"{"profession":[20,1,"dental hygienist"],"plan":[20,1,null]}"#,
                    r#"{"name":[10,1,"Ann"],"profession":[10,1,"dentist"],"plan":[10,1,"free"]}"#,
                    "not json",
                ])),
            ],
        )
        .expect("batch");
        let merged = MergedTraits::from_stored(&[rows]);
        let traits = &merged.0["web"]["u1"];
        assert_eq!(Value::Object(traits.clone()), serde_json::json!({"name": "Ann", "profession": "dental hygienist"}));
    }
}
