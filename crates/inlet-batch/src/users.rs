//! The `users` table's traits: every identify call's traits merged over time, later values
//! replacing earlier ones key by key (as Segment's warehouse `users` table), plus the configured
//! traits copied into columns of their own.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use serde_json::{Map, Value};

/// Merged traits by (source, user id).
#[derive(Debug, Default)]
pub struct MergedTraits(HashMap<(String, String), Map<String, Value>>);

impl MergedTraits {
    /// Folds rows of `(user_key, source, traits)` given in the order the calls were made.
    pub fn fold(batches: &[RecordBatch]) -> MergedTraits {
        let mut merged = MergedTraits::default();
        for batch in batches {
            let (users, sources, traits) = (
                batch.column(0).as_string::<i32>(),
                batch.column(1).as_string::<i32>(),
                batch.column(2).as_string::<i32>(),
            );
            for row in 0..batch.num_rows() {
                let Ok(Value::Object(update)) = serde_json::from_str::<Value>(traits.value(row)) else { continue };
                let entry = merged.0.entry((sources.value(row).to_owned(), users.value(row).to_owned())).or_default();
                for (key, value) in update {
                    // An explicit null clears the trait, as a later identify would in Segment.
                    if value.is_null() {
                        entry.remove(&key);
                    } else {
                        entry.insert(key, value);
                    }
                }
            }
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
        let traits = merged.0.get(&(sources.value(row).to_owned(), users.value(row).to_owned()));
        traits_json.append_option(traits.map(|t| Value::Object(t.clone()).to_string()));
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
    fn later_identify_calls_replace_traits_key_by_key() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_key", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("traits", DataType::Utf8, false),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["u1", "u1", "u1"])),
                Arc::new(StringArray::from(vec!["web", "web", "web"])),
                Arc::new(StringArray::from(vec![
                    r#"{"name":"Ann","profession":"dentist","plan":"free"}"#,
                    r#"{"profession":"dental hygienist","plan":null}"#,
                    "not json",
                ])),
            ],
        )
        .expect("batch");
        let merged = MergedTraits::fold(&[rows]);
        let traits = &merged.0[&("web".to_owned(), "u1".to_owned())];
        assert_eq!(Value::Object(traits.clone()), serde_json::json!({"name": "Ann", "profession": "dental hygienist"}));
    }
}
