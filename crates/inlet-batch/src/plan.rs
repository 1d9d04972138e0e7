//! The step graph and the plan of a run: which steps, in which order, and which dates each one
//! replaces.
//!
//! ```text
//! identity_map ─┬─ daily_user_activity ─┬─ active_users
//!               │                       ├─ monthly_active_users
//!               │                       ├─ new_users
//!               │                       ├─ retention
//!               │                       └─ retention_weekly
//!               ├─ page_views
//!               ├─ sessions
//!               ├─ event_counts
//!               └─ users
//! ```
//! A run of `--from F --to T` recomputes the days `[F − lookback, T]` (the *range*). Steps not
//! selected are not run; a selected step reads what earlier runs left of its inputs.

use chrono::NaiveDate;

use crate::calendar::{Dates, add_days, day, month_start, week_start};
use crate::queries::{MAU_DAYS, RETENTION_DAYS, RETENTION_WEEKS};
use crate::tables::{Replace, Table};

impl Table {
    /// The steps whose output this step reads.
    pub fn depends_on(self) -> &'static [Table] {
        match self {
            Table::IdentityMap => &[],
            Table::DailyUserActivity | Table::PageViews | Table::Sessions | Table::EventCounts | Table::Users => {
                &[Table::IdentityMap]
            }
            Table::ActiveUsers
            | Table::MonthlyActiveUsers
            | Table::NewUsers
            | Table::Retention
            | Table::RetentionWeekly => &[Table::DailyUserActivity],
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub range: Dates,
    pub steps: Vec<PlannedStep>,
}

/// Plans a run. `computed_activity_days`: the days `daily_user_activity` already holds; when
/// that step runs, it also fills the days its dependants read but nobody computed yet, so a
/// first run over a range gives complete rolling windows.
pub fn plan(
    selected: &[Table],
    from: NaiveDate,
    to: NaiveDate,
    lookback_days: u32,
    computed_activity_days: &Dates,
) -> Plan {
    let range = Dates::range(add_days(from, -i64::from(lookback_days)), to);
    let (first, last) = (range.first().unwrap_or(from), range.last().unwrap_or(to));
    let mut steps = Vec::new();
    for table in Table::ALL.into_iter().filter(|t| selected.contains(t)) {
        let keys = match table {
            Table::IdentityMap | Table::Users => Keys::Whole,
            Table::DailyUserActivity => {
                let needed = selected.iter().filter_map(|t| activity_days_read(*t, first, last)).min();
                let gaps = needed.map_or_else(Dates::default, |start| {
                    Dates::from_iter(Dates::range(start, last).iter().filter(|d| !computed_activity_days.contains(*d)))
                });
                Keys::Dates(range.union(&gaps))
            }
            Table::MonthlyActiveUsers => Keys::Dates(Dates::from_iter(range.iter().map(month_start))),
            Table::Retention => Keys::Dates(Dates::range(add_days(first, -RETENTION_DAYS), last)),
            Table::RetentionWeekly => Keys::Dates(Dates::from_iter(
                Dates::range(add_days(week_start(first), -7 * RETENTION_WEEKS), last).iter().map(week_start),
            )),
            Table::ActiveUsers | Table::NewUsers | Table::PageViews | Table::Sessions | Table::EventCounts => {
                Keys::Dates(range.clone())
            }
        };
        debug_assert_eq!(matches!(keys, Keys::Whole), !matches!(table.replace(), Replace::ByDate(_)));
        steps.push(PlannedStep { table, keys });
    }
    Plan { range, steps }
}

/// The first day of `daily_user_activity` a step reads when it recomputes `[first, last]`.
fn activity_days_read(table: Table, first: NaiveDate, _last: NaiveDate) -> Option<NaiveDate> {
    match table {
        Table::ActiveUsers => Some(add_days(first, 1 - MAU_DAYS)),
        Table::MonthlyActiveUsers => Some(month_start(first)),
        Table::NewUsers => Some(first),
        Table::Retention => Some(add_days(first, -RETENTION_DAYS)),
        Table::RetentionWeekly => Some(add_days(week_start(first), -7 * RETENTION_WEEKS)),
        _ => None,
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(a), Some(b)) = (self.range.first(), self.range.last()) {
            writeln!(f, "range {} .. {} ({} days, lookback included)", day(a), day(b), self.range.len())?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            let inputs: Vec<&str> = step.table.depends_on().iter().map(|t| t.name()).collect();
            let inputs = if inputs.is_empty() { "events".to_owned() } else { format!("events, {}", inputs.join(", ")) };
            let keys = match (&step.keys, step.table.replace()) {
                (Keys::Whole, _) => "whole table, from all history".to_owned(),
                (Keys::Dates(dates), Replace::ByDate(column)) => {
                    let runs: Vec<String> = dates
                        .runs()
                        .into_iter()
                        .map(|(a, b)| if a == b { day(a) } else { format!("{}..{}", day(a), day(b)) })
                        .collect();
                    format!("{column} in {} ({} keys)", runs.join(", "), dates.len())
                }
                (Keys::Dates(_), _) => "dates".to_owned(),
            };
            writeln!(f, "{}. {:<22} reads {:<40} replaces {keys}", i + 1, step.table.name(), inputs)?;
        }
        Ok(())
    }
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
    fn keys_follow_the_range_with_lookback() {
        let planned = super::plan(
            &Table::ALL,
            d("2026-11-10"),
            d("2026-11-11"),
            2,
            &Dates::range(d("2026-01-01"), d("2026-12-31")),
        );
        let keys = |table: Table| planned.steps.iter().find(|s| s.table == table).map(|s| s.keys.clone());
        let range = Dates::range(d("2026-11-08"), d("2026-11-11"));
        assert_eq!(planned.range, range);
        assert_eq!(keys(Table::DailyUserActivity), Some(Keys::Dates(range.clone())), "no gaps to fill");
        assert_eq!(keys(Table::Sessions), Some(Keys::Dates(range)));
        assert_eq!(keys(Table::MonthlyActiveUsers), Some(Keys::Dates(Dates::from_iter([d("2026-11-01")]))));
        assert_eq!(keys(Table::Retention), Some(Keys::Dates(Dates::range(d("2026-10-09"), d("2026-11-11")))));
        let Some(Keys::Dates(weeks)) = keys(Table::RetentionWeekly) else { panic!("weekly keys") };
        assert_eq!((weeks.first(), weeks.last(), weeks.len()), (Some(d("2026-08-10")), Some(d("2026-11-09")), 14));
        assert_eq!(keys(Table::Users), Some(Keys::Whole));
    }

    #[test]
    fn daily_activity_fills_the_days_its_dependants_read() {
        let computed = Dates::range(d("2026-11-01"), d("2026-11-05"));
        let planned = super::plan(
            &[Table::DailyUserActivity, Table::ActiveUsers],
            d("2026-11-10"),
            d("2026-11-10"),
            0,
            &computed,
        );
        let Keys::Dates(days) = &planned.steps[0].keys else { panic!("dates") };
        assert_eq!(days.first(), Some(d("2026-10-12")), "30-day window of 2026-11-10");
        assert!(!days.contains(d("2026-11-03")), "already computed");
        assert!(days.contains(d("2026-11-07")) && days.contains(d("2026-11-10")));
        let alone = super::plan(&[Table::DailyUserActivity], d("2026-11-10"), d("2026-11-10"), 0, &computed);
        assert_eq!(alone.steps[0].keys, Keys::Dates(Dates::range(d("2026-11-10"), d("2026-11-10"))));
    }
}
