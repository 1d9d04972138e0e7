//! Reporting dates: sets of calendar days in the reporting time zone, the weeks (Monday first)
//! and months they fall in, and the UTC partitions that can hold their events.

use std::collections::BTreeSet;

use chrono::{Datelike, Days, NaiveDate};

/// Days are `YYYY-MM-DD` everywhere: in SQL literals, partition folders and file names.
pub fn day(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

pub fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs())).unwrap_or(NaiveDate::MAX)
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs())).unwrap_or(NaiveDate::MIN)
    }
}

/// The Monday starting `date`'s ISO week.
pub fn week_start(date: NaiveDate) -> NaiveDate {
    add_days(date, -i64::from(date.weekday().num_days_from_monday()))
}

pub fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// A set of reporting days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dates(BTreeSet<NaiveDate>);

impl FromIterator<NaiveDate> for Dates {
    fn from_iter<I: IntoIterator<Item = NaiveDate>>(days: I) -> Dates {
        Dates(days.into_iter().collect())
    }
}

impl Dates {
    /// Every day from `from` to `to`, both included.
    pub fn range(from: NaiveDate, to: NaiveDate) -> Dates {
        Dates(from.iter_days().take_while(|d| *d <= to).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn first(&self) -> Option<NaiveDate> {
        self.0.first().copied()
    }

    pub fn last(&self) -> Option<NaiveDate> {
        self.0.last().copied()
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.0.contains(&date)
    }

    pub fn iter(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.0.iter().copied()
    }

    pub fn union(&self, other: &Dates) -> Dates {
        Dates(self.0.union(&other.0).copied().collect())
    }

    /// The set as maximal runs of consecutive days, for compact SQL predicates.
    pub fn runs(&self) -> Vec<(NaiveDate, NaiveDate)> {
        let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
        for date in self.iter() {
            match runs.last_mut() {
                Some((_, end)) if add_days(*end, 1) == date => *end = date,
                _ => runs.push((date, date)),
            }
        }
        runs
    }

    /// These days shifted by `-before ..= after` days, kept within `[first, last]`.
    pub fn spread(&self, before: i64, after: i64, first: NaiveDate, last: NaiveDate) -> Dates {
        Dates(
            self.iter()
                .flat_map(|d| (-before..=after).map(move |n| add_days(d, n)))
                .filter(|d| *d >= first && *d <= last)
                .collect(),
        )
    }

    /// `column BETWEEN … OR …` over the runs, with `DATE '…'` literals (`FALSE` when empty).
    pub fn sql_predicate(&self, column: &str) -> String {
        self.predicate(column, "DATE ")
    }

    fn predicate(&self, column: &str, literal_prefix: &str) -> String {
        if self.is_empty() {
            return "FALSE".into();
        }
        let runs: Vec<String> = self
            .runs()
            .into_iter()
            .map(|(a, b)| {
                let (a, b) = (day(a), day(b));
                if a == b {
                    format!("{column} = {literal_prefix}'{a}'")
                } else {
                    format!("{column} BETWEEN {literal_prefix}'{a}' AND {literal_prefix}'{b}'")
                }
            })
            .collect();
        format!("({})", runs.join(" OR "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn runs_and_predicates() {
        let dates = Dates::from_iter([d("2026-11-01"), d("2026-11-02"), d("2026-11-05")]);
        assert_eq!(dates.runs(), vec![(d("2026-11-01"), d("2026-11-02")), (d("2026-11-05"), d("2026-11-05"))]);
        assert_eq!(
            dates.sql_predicate("x"),
            "(x BETWEEN DATE '2026-11-01' AND DATE '2026-11-02' OR x = DATE '2026-11-05')"
        );
        assert_eq!(Dates::default().sql_predicate("x"), "FALSE");
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        assert_eq!(week_start(d("2026-11-24")), d("2026-11-23"));
        assert_eq!(week_start(d("2026-11-23")), d("2026-11-23"));
        assert_eq!(week_start(d("2026-11-22")), d("2026-11-16"));
        assert_eq!(month_start(d("2026-11-24")), d("2026-11-01"));
        assert_eq!(Dates::range(d("2026-02-27"), d("2026-03-01")).len(), 3);
    }
}
