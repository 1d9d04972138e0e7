//! # inlet-plans: tracking plans
//!
//! A tracking plan says, for one source, which `track` events exist and what each carries: a
//! JSON Schema (draft 2020-12) of its `properties`, and schemas of `identify` and `group`
//! traits and of `page` and `screen` properties. [`TrackingPlan::load`] reads a plan file (YAML,
//! or JSON, by its extension) and compiles every schema once; [`TrackingPlan::check`] tells an
//! event's [`Violation`]s; [`infer`] drafts a plan from events already stored.
//!
//! Decisions:
//! - **Self-contained schemas.** `$ref` may point inside the plan's schema (`#/$defs/…`); the
//!   validator is built without file or network resolution, so a plan cannot make the gateway
//!   fetch anything, and a remote `$ref` is refused at start.
//! - **`format` is checked** (`email`, `date-time`, `uri`, …), unlike draft 2020-12's default of
//!   an annotation: a team that writes `format: email` in a plan expects it enforced.
//! - **Unplanned events are allowed unless the plan says otherwise** (`allow_unplanned_events`,
//!   default `true`), as Segment's Protocols does; a call type without a schema is not checked.
//! - **At most [`MAX_VIOLATIONS`] violations per event**, so a hostile event with thousands of
//!   bad properties costs a bounded amount to report and store.

mod infer;
mod violation;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use jsonschema::Validator;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use infer::{Drafter, Inferred, infer};
pub use violation::{MAX_VIOLATIONS, Violation};

/// What the gateway does with an event that breaks its source's plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Count the violations (metrics, debugger) and record them in the lake's `violations`
    /// column; the event goes on unchanged.
    #[default]
    Observe,
    /// As `observe`, and the violations are forwarded to destinations with the event where the
    /// destination has room for them.
    Flag,
    /// The event goes to the lake's blocked events (with its violations), not to the events
    /// table or destinations. Still answered `200`, so SDKs do not retry it.
    Block,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Flag => "flag",
            Mode::Block => "block",
        }
    }
}

/// A plan file as written: schemas are plain JSON values until compiled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Whether a `track` event not listed in `events` is accepted without a violation.
    #[serde(default = "default_true")]
    pub allow_unplanned_events: bool,
    /// `track` events by name: a JSON Schema of each one's `properties`.
    #[serde(default)]
    pub events: BTreeMap<String, Value>,
    /// JSON Schema of `identify` traits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify: Option<Value>,
    /// JSON Schema of `group` traits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Value>,
    /// JSON Schema of `page` properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Value>,
    /// JSON Schema of `screen` properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Value>,
}

fn default_true() -> bool {
    true
}

impl PlanFile {
    /// The file as YAML (what `inlet plan infer` prints).
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a plan serialises")
    }
}

/// Why a plan cannot be used: which file, which part of it, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("tracking plan {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("tracking plan {file}: not a valid plan: {reason}")]
    Syntax { file: String, reason: String },
    #[error("tracking plan {file}: {part}: {reason}")]
    Schema { file: String, part: String, reason: String },
}

/// The call types a plan has schemas for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    Track { event: &'a str },
    Identify,
    Group,
    Page,
    Screen,
}

impl<'a> Call<'a> {
    /// The call a message of Segment `type` `message_type` is (`event`: a track call's name);
    /// `None` for `alias`, which no plan checks, and unknown types.
    pub fn of(message_type: &str, event: &'a str) -> Option<Call<'a>> {
        Some(match message_type {
            "track" => Call::Track { event },
            "identify" => Call::Identify,
            "group" => Call::Group,
            "page" => Call::Page,
            "screen" => Call::Screen,
            _ => return None,
        })
    }

    /// Whether the checked object is the message's `traits` (identify, group) rather than its
    /// `properties`.
    pub fn checks_traits(self) -> bool {
        matches!(self, Call::Identify | Call::Group)
    }
}

/// A plan with every schema compiled.
#[derive(Debug)]
pub struct TrackingPlan {
    allow_unplanned_events: bool,
    events: HashMap<String, Validator>,
    identify: Option<Validator>,
    group: Option<Validator>,
    page: Option<Validator>,
    screen: Option<Validator>,
}

impl TrackingPlan {
    /// Reads and compiles a plan file: YAML unless its name ends in `.json`.
    pub fn load(path: &Path) -> Result<TrackingPlan, PlanError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read { file: file.clone(), source })?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parsed = if is_json {
            serde_json::from_str::<PlanFile>(&text).map_err(|e| e.to_string())
        } else {
            serde_yaml_ng::from_str::<PlanFile>(&text).map_err(|e| e.to_string())
        };
        let plan = parsed.map_err(|reason| PlanError::Syntax { file: file.clone(), reason })?;
        TrackingPlan::compile(&plan, &file)
    }

    /// Compiles every schema of `plan`; `file` names it in errors.
    pub fn compile(plan: &PlanFile, file: &str) -> Result<TrackingPlan, PlanError> {
        let compile = |part: String, schema: &Value| {
            compile_schema(schema).map_err(|reason| PlanError::Schema { file: file.to_owned(), part, reason })
        };
        let optional =
            |part: &str, schema: &Option<Value>| schema.as_ref().map(|s| compile(part.to_owned(), s)).transpose();
        let mut events = HashMap::with_capacity(plan.events.len());
        for (name, schema) in &plan.events {
            events.insert(name.clone(), compile(format!("event {name:?}"), schema)?);
        }
        Ok(TrackingPlan {
            allow_unplanned_events: plan.allow_unplanned_events,
            events,
            identify: optional("identify", &plan.identify)?,
            group: optional("group", &plan.group)?,
            page: optional("page", &plan.page)?,
            screen: optional("screen", &plan.screen)?,
        })
    }

    /// The violations of one call whose checked object (`properties`, or `traits` for
    /// `identify` and `group`) is `payload`; a missing object is checked as `{}`.
    pub fn check(&self, call: Call<'_>, payload: Option<&Value>) -> Vec<Violation> {
        let validator = match call {
            Call::Track { event } => match self.events.get(event) {
                Some(validator) => Some(validator),
                None if self.allow_unplanned_events => None,
                None => return vec![Violation::unplanned_event(event)],
            },
            Call::Identify => self.identify.as_ref(),
            Call::Group => self.group.as_ref(),
            Call::Page => self.page.as_ref(),
            Call::Screen => self.screen.as_ref(),
        };
        let Some(validator) = validator else { return Vec::new() };
        let empty = Value::Object(serde_json::Map::new());
        let payload = payload.unwrap_or(&empty);
        if validator.is_valid(payload) {
            return Vec::new();
        }
        let mut violations = Vec::new();
        for error in validator.iter_errors(payload) {
            violation::push_from_error(&mut violations, &error);
            if violations.len() >= MAX_VIOLATIONS {
                violations.truncate(MAX_VIOLATIONS);
                break;
            }
        }
        violations
    }

    /// Whether checking `call` can find anything (it has a schema, or is an unplanned event the
    /// plan refuses): callers skip reading the payload when not.
    pub fn checks(&self, call: Call<'_>) -> bool {
        match call {
            Call::Track { event } => !self.allow_unplanned_events || self.events.contains_key(event),
            Call::Identify => self.identify.is_some(),
            Call::Group => self.group.is_some(),
            Call::Page => self.page.is_some(),
            Call::Screen => self.screen.is_some(),
        }
    }

    pub fn is_planned(&self, event: &str) -> bool {
        self.events.contains_key(event)
    }

    /// The planned `track` event names.
    pub fn event_names(&self) -> impl Iterator<Item = &str> {
        self.events.keys().map(String::as_str)
    }
}

fn compile_schema(schema: &Value) -> Result<Validator, String> {
    jsonschema::draft202012::options().should_validate_formats(true).build(schema).map_err(|error| {
        let at = error.instance_path().as_str();
        if at.is_empty() { error.to_string() } else { format!("{error} (at {at})") }
    })
}

#[cfg(test)]
mod tests;
