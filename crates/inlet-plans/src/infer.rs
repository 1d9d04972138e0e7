//! Drafting a plan from stored events: every property seen, with the JSON types it had, and
//! `required` for the properties every one of the calls carried. A draft to review, not a
//! verdict: a property sent by every call so far may still be optional, and the draft leaves
//! `additionalProperties` open.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::{Call, PlanFile};

/// Objects nested deeper than this are described as `type: object` without their properties.
const MAX_DEPTH: usize = 4;

/// What was read to draft a plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inferred {
    pub plan: PlanFile,
    /// Calls read, by call type (`track`, `identify`, …).
    pub calls: BTreeMap<&'static str, u64>,
}

/// Drafts a plan from `(call, payload)` pairs: `properties` (or `traits` for `identify` and
/// `group`), `None` when the call had none.
pub fn infer<'a>(calls: impl IntoIterator<Item = (Call<'a>, Option<Value>)>) -> Inferred {
    let mut drafter = Drafter::default();
    for (call, payload) in calls {
        drafter.observe(call, payload.as_ref());
    }
    drafter.finish()
}

/// [`infer`], one call at a time (for reading a lake file by file).
#[derive(Debug, Default)]
pub struct Drafter {
    events: BTreeMap<String, Shape>,
    others: BTreeMap<&'static str, Shape>,
    counts: BTreeMap<&'static str, u64>,
}

impl Drafter {
    pub fn observe(&mut self, call: Call<'_>, payload: Option<&Value>) {
        let empty = Value::Object(Map::new());
        let payload = payload.unwrap_or(&empty);
        let (name, shape) = match call {
            Call::Track { event } => ("track", self.events.entry(event.to_owned()).or_default()),
            Call::Identify => ("identify", self.others.entry("identify").or_default()),
            Call::Group => ("group", self.others.entry("group").or_default()),
            Call::Page => ("page", self.others.entry("page").or_default()),
            Call::Screen => ("screen", self.others.entry("screen").or_default()),
        };
        *self.counts.entry(name).or_insert(0) += 1;
        shape.observe(payload, 0);
    }

    pub fn finish(mut self) -> Inferred {
        let mut take = |name| self.others.remove(name).map(|s: Shape| s.schema());
        let plan = PlanFile {
            allow_unplanned_events: true,
            identify: take("identify"),
            group: take("group"),
            page: take("page"),
            screen: take("screen"),
            events: self.events.into_iter().map(|(name, shape)| (name, shape.schema())).collect(),
        };
        Inferred { plan, calls: self.counts }
    }
}

/// What values seen at one place had in common.
#[derive(Debug, Default)]
struct Shape {
    /// Values seen here.
    seen: u64,
    /// Of those, objects.
    objects: u64,
    types: BTreeSet<&'static str>,
    properties: BTreeMap<String, Shape>,
    items: Option<Box<Shape>>,
}

impl Shape {
    fn observe(&mut self, value: &Value, depth: usize) {
        self.seen += 1;
        self.types.insert(json_type(value));
        match value {
            Value::Object(members) if depth < MAX_DEPTH => {
                self.objects += 1;
                for (key, member) in members {
                    self.properties.entry(key.clone()).or_default().observe(member, depth + 1);
                }
            }
            Value::Array(items) if depth < MAX_DEPTH => {
                let shape = self.items.get_or_insert_with(Box::default);
                for item in items {
                    shape.observe(item, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn schema(&self) -> Value {
        let mut types = self.types.clone();
        // A property that was sometimes 3 and sometimes 2.5 is a number.
        if types.contains("number") {
            types.remove("integer");
        }
        let mut schema = Map::new();
        let types: Vec<&str> = types.into_iter().collect();
        schema.insert("type".into(), if types.len() == 1 { json!(types[0]) } else { json!(types) });
        if !self.properties.is_empty() {
            let properties = self.properties.iter().map(|(k, s)| (k.clone(), s.schema())).collect::<Map<_, _>>();
            let required: Vec<&String> =
                self.properties.iter().filter(|(_, s)| s.seen == self.objects).map(|(k, _)| k).collect();
            schema.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".into(), json!(required));
            }
        }
        if let Some(items) = self.items.as_ref().filter(|i| i.seen > 0) {
            schema.insert("items".into(), items.schema());
        }
        Value::Object(schema)
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
