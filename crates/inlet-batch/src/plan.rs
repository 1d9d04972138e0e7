//! The step graph and the plan of a run: which steps, in which order, and which key dates
//! each one replaces.
//!
//! ```text
//! state ─┬─ identity_map
//!        ├─ daily_user_activity ─┬─ active_users
//!        │                       ├─ monthly_active_users
//!        │                       ├─ new_users
//!        │                       ├─ retention
//!        │                       ├─ retention_weekly
//!        │                       ├─ lifecycle_daily, lifecycle_weekly
//!        │                       └─ stickiness_weekly, stickiness_monthly
//!        ├─ page_views
//!        ├─ sessions
//!        ├─ event_counts
//!        ├─ tracking_plan_violations
//!        └─ users
//! ```
//! A run first brings the state up to date (`state.rs`): it reads the days asked for
//! (`[from − lookback, to]`) and the days whose lake files changed since they were read, and
//! finds the days stitching changed. From those *changed days* each table's key dates follow
//! ([`keys_for`]): a changed day changes its own daily rows, the rolling windows that contain
//! it, its month, and the cohorts it can retain. Key dates
//! a run does not recompute (steps not selected, a failure) stay pending in the state's
//! manifest and are recomputed by the next run.

use chrono::NaiveDate;

use crate::calendar::{Dates, day, month_start, week_start};
use crate::state::Manifest;
use crate::tables::{Replace, Table};

/// Return-on-day-N retention is computed for N = 0..=30.
pub const RETENTION_DAYS: i64 = 30;
/// Weekly retention, weeks 0..=12.
pub const RETENTION_WEEKS: i64 = 12;
/// MAU is a rolling window of 30 days ending on the date.
pub const MAU_DAYS: i64 = 30;

impl Table {
    /// The steps whose output this step reads (besides the state).
    pub fn depends_on(self) -> &'static [Table] {
        match self {
            Table::IdentityMap
            | Table::DailyUserActivity
            | Table::PageViews
            | Table::Sessions
            | Table::EventCounts
            | Table::TrackingPlanViolations
            | Table::Users => &[],
            Table::ActiveUsers
            | Table::MonthlyActiveUsers
            | Table::NewUsers
            | Table::Retention
            | Table::RetentionWeekly
            | Table::LifecycleDaily
            | Table::LifecycleWeekly
            | Table::StickinessWeekly
            | Table::StickinessMonthly => &[Table::DailyUserActivity],
        }
    }
}

/// What a step replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// Rows of these key dates (days, cohort days, Mondays or first days of months).
    Dates(Dates),
    /// The whole table (per source where the table has one).
    Whole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub table: Table,
    pub keys: Keys,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// The days asked for, lookback included.
    pub range: Dates,
    /// The days read from the lake: asked, changed since read, or all without a state.
    pub read: Dates,
    /// The lake's fingerprint of each day when planned (recorded for the days read).
    pub lake: std::collections::BTreeMap<NaiveDate, String>,
    /// The last day the run covers.
    pub last: NaiveDate,
    /// Rebuild the state from scratch.
    pub full: bool,
    /// Run the `state` step.
    pub update_state: bool,
    /// The committed state the run starts from (`None`: rebuild).
    pub previous: Option<Manifest>,
    /// The steps, with the keys known before the run (stitching may add more).
    pub steps: Vec<PlannedStep>,
}

/// The key dates of `table` that change when the per-day inputs of `changed` change, within
/// the days the state covers (`first ..= last`).
pub fn keys_for(table: Table, changed: &Dates, first: NaiveDate, last: NaiveDate) -> Keys {
    match table {
        Table::IdentityMap | Table::Users => Keys::Whole,
        Table::DailyUserActivity
        | Table::PageViews
        | Table::EventCounts
        | Table::TrackingPlanViolations
        | Table::NewUsers
        | Table::Sessions => Keys::Dates(changed.spread(0, 0, first, last)),
        Table::ActiveUsers => Keys::Dates(changed.spread(0, MAU_DAYS - 1, first, last)),
        Table::MonthlyActiveUsers | Table::StickinessMonthly => {
            Keys::Dates(Dates::from_iter(changed.iter().map(month_start)))
        }
        Table::StickinessWeekly => Keys::Dates(Dates::from_iter(changed.iter().map(week_start))),
        // A day's users are the next day's dormant ones if not active again.
        Table::LifecycleDaily => Keys::Dates(changed.spread(0, 1, first, last)),
        Table::LifecycleWeekly => {
            Keys::Dates(Dates::from_iter(changed.spread(0, 7, first, last).iter().map(week_start)))
        }
        Table::Retention => Keys::Dates(changed.spread(RETENTION_DAYS, 0, first, last)),
        Table::RetentionWeekly => Keys::Dates(Dates::from_iter(
            changed.spread(7 * RETENTION_WEEKS + 6, 0, week_start(first), last).iter().map(week_start),
        )),
    }
}

/// The steps of `selected` in graph order, each with the keys `changed` implies plus those
/// still pending in `previous`.
pub fn steps(
    selected: &[Table],
    changed: &Dates,
    first: NaiveDate,
    last: NaiveDate,
    previous: Option<&Manifest>,
) -> Vec<PlannedStep> {
    Table::ALL
        .into_iter()
        .filter(|t| selected.contains(t))
        .map(|table| {
            let keys = match keys_for(table, changed, first, last) {
                Keys::Dates(dates) => {
                    Keys::Dates(dates.union(&previous.map(|m| m.pending(table.name())).unwrap_or_default()))
                }
                Keys::Whole => Keys::Whole,
            };
            debug_assert_eq!(matches!(keys, Keys::Whole), !matches!(table.replace(), Replace::ByDate(_)));
            PlannedStep { table, keys }
        })
        .collect()
}

/// Records in `manifest` the key dates of `tables` that `changed` implies, as pending.
pub fn add_pending(manifest: &mut Manifest, tables: &[Table], changed: &Dates, first: NaiveDate, last: NaiveDate) {
    for step in steps(tables, changed, first, last, None) {
        if let Keys::Dates(dates) = &step.keys {
            manifest.add_pending(step.table.name(), dates);
        }
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(a), Some(b)) = (self.range.first(), self.range.last()) {
            writeln!(f, "range {} .. {} ({} days, lookback included)", day(a), day(b), self.range.len())?;
        }
        let state = match (&self.previous, self.full, self.update_state) {
            (Some(m), _, false) => format!("version {} as committed (not updated)", m.version),
            (Some(m), false, true) => format!("updated from version {}", m.version),
            _ => "rebuilt from the lake".to_owned(),
        };
        writeln!(f, "state: {state}; {} days read from the lake: {}", self.read.len(), runs_text(&self.read))?;
        for (i, step) in self.steps.iter().enumerate() {
            let inputs: Vec<&str> = step.table.depends_on().iter().map(|t| t.name()).collect();
            let inputs = if inputs.is_empty() { "state".to_owned() } else { format!("state, {}", inputs.join(", ")) };
            let keys = match (&step.keys, step.table.replace()) {
                (Keys::Whole, _) => "whole table, from the state".to_owned(),
                (Keys::Dates(dates), Replace::ByDate(column)) => {
                    format!("{column} in {} ({} keys)", runs_text(dates), dates.len())
                }
                (Keys::Dates(_), _) => "dates".to_owned(),
            };
            writeln!(f, "{}. {:<22} reads {:<40} replaces {keys}", i + 1, step.table.name(), inputs)?;
        }
        Ok(())
    }
}

fn runs_text(dates: &Dates) -> String {
    let runs: Vec<String> = dates
        .runs()
        .into_iter()
        .map(|(a, b)| if a == b { day(a) } else { format!("{}..{}", day(a), day(b)) })
        .collect();
    if runs.is_empty() { "none".into() } else { runs.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn the_step_order_is_a_topological_order() {
        for (i, table) in Table::ALL.iter().enumerate() {
            for dependency in table.depends_on() {
                let position = Table::ALL.iter().position(|t| t == dependency).expect("known");
                assert!(position < i, "{} runs before {}", dependency.name(), table.name());
            }
        }
    }

    #[test]
    fn a_changed_day_changes_its_windows_month_sessions_and_cohorts() {
        let changed = Dates::from_iter([d("2026-11-10")]);
        let (first, last) = (d("2026-01-01"), d("2026-11-20"));
        let keys = |table| match keys_for(table, &changed, first, last) {
            Keys::Dates(dates) => dates,
            Keys::Whole => panic!("dated"),
        };
        assert_eq!(keys(Table::DailyUserActivity), changed);
        assert_eq!(keys(Table::Sessions), changed, "sessions end at midnight");
        assert_eq!(keys(Table::ActiveUsers), Dates::range(d("2026-11-10"), last), "windows ending up to the last day");
        assert_eq!(keys(Table::MonthlyActiveUsers), Dates::from_iter([d("2026-11-01")]));
        assert_eq!(keys(Table::Retention), Dates::range(d("2026-10-11"), d("2026-11-10")));
        let weeks = keys(Table::RetentionWeekly);
        assert_eq!((weeks.first(), weeks.last(), weeks.len()), (Some(d("2026-08-10")), Some(d("2026-11-09")), 14));
        assert_eq!(keys_for(Table::Users, &changed, first, last), Keys::Whole);
        let early = keys_for(Table::Retention, &changed, d("2026-11-01"), last);
        assert_eq!(
            early,
            Keys::Dates(Dates::range(d("2026-11-01"), d("2026-11-10"))),
            "not before the state's first day"
        );
    }
}
