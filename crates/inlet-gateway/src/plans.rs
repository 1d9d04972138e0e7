//! Tracking plans at ingestion: each source's plan compiled at start (a broken plan stops the
//! start, naming the file, the event and the reason), and every stored event of a source with
//! a plan checked against it. What the plan found travels with the WAL record (see
//! `inlet_segment::stored`): the lake writer puts it in the `violations` column (or the whole
//! event in `blocked/`), the destinations skip blocked events and forward flagged ones'
//! violations. Events are checked after normalisation and suppression, before deduplication, on
//! the request's thread; a source without a plan costs one map lookup per request.

use std::collections::HashMap;
use std::sync::Arc;

use inlet_plans::{Call, Mode, TrackingPlan, Violation};
use inlet_segment::{Event, PlanVerdict, Scalar, scalar};
use serde_json::Value;

use crate::config::SourceConfig;
use crate::error::StartupError;

#[derive(Debug)]
pub struct SourcePlan {
    pub plan: TrackingPlan,
    pub mode: Mode,
}

/// Every source's plan, by source name.
#[derive(Debug, Default)]
pub struct SourcePlans {
    by_source: HashMap<Arc<str>, SourcePlan>,
}

/// What a plan found in one event that broke it.
#[derive(Debug)]
pub struct Verdict {
    pub mode: Mode,
    /// The metric label of what was checked: the planned event name, `(unplanned)`, or the call
    /// type in parentheses.
    pub checked: String,
    pub violations: Vec<Violation>,
    /// `violations` as the JSON array stored with the event.
    pub json: String,
}

impl Verdict {
    pub fn stored(&self) -> PlanVerdict<'_> {
        PlanVerdict { mode: self.mode.as_str(), violations: &self.json }
    }
}

impl SourcePlans {
    pub fn load(sources: &[SourceConfig]) -> Result<SourcePlans, StartupError> {
        let mut by_source = HashMap::new();
        for source in sources {
            let Some(config) = &source.tracking_plan else { continue };
            let plan = TrackingPlan::load(&config.file)?;
            by_source.insert(Arc::from(source.name.as_str()), SourcePlan { plan, mode: config.mode });
        }
        Ok(SourcePlans { by_source })
    }

    pub fn get(&self, source: &str) -> Option<&SourcePlan> {
        self.by_source.get(source)
    }
}

impl SourcePlan {
    /// Checks one stored event: `None` when it is valid (or its call type is not checked).
    pub fn check(&self, event: &Event) -> Option<Verdict> {
        let members = &event.members;
        let name = match event.member_text(&members.event).map(scalar) {
            Some(Scalar::String(name)) => name,
            _ => "".into(),
        };
        let call = Call::of(event.message_type.as_str(), &name)?;
        if !self.plan.checks(call) {
            return None;
        }
        let payload = if call.checks_traits() { &members.traits } else { &members.properties };
        // A payload that is not an object is checked as what it is: a schema with `type: object`
        // reports it.
        let payload: Option<Value> =
            event.member_text(payload).and_then(|raw| serde_json::from_str(raw).ok()).filter(|v: &Value| !v.is_null());
        let violations = self.plan.check(call, payload.as_ref());
        if violations.is_empty() {
            return None;
        }
        let checked = match call {
            Call::Track { event } if self.plan.is_planned(event) => event.to_owned(),
            Call::Track { .. } => "(unplanned)".to_owned(),
            _ => format!("({})", event.message_type.as_str()),
        };
        let json = serde_json::to_string(&violations).expect("violations serialise");
        Some(Verdict { mode: self.mode, checked, violations, json })
    }
}
