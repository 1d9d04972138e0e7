//! The metrics tables: their columns in order (the order of the Parquet files, which Redshift's
//! `COPY … FORMAT AS PARQUET` matches by position), their SQL types, and how a run replaces
//! their rows. Each column is defined in `docs/metrics.md`.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// One metrics table; each is built by the step of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    IdentityMap,
    DailyUserActivity,
    ActiveUsers,
    MonthlyActiveUsers,
    NewUsers,
    Retention,
    RetentionWeekly,
    LifecycleDaily,
    LifecycleWeekly,
    StickinessWeekly,
    StickinessMonthly,
    PageViews,
    Sessions,
    EventCounts,
    TrackingPlanViolations,
    Users,
}

/// How a run replaces a table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Rows keyed by a date column (and `source`): a run replaces the dates it computed.
    ByDate(&'static str),
    /// The whole table is rebuilt from all history at every run.
    Whole,
    /// Rebuilt from all history, per source.
    WholePerSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Date,
    Timestamp,
    Text,
    Int,
    BigInt,
    Double,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
}

/// Columns of `users` that a trait column may not take.
pub const USERS_FIXED_COLUMNS: [&str; 5] = ["user_id", "source", "first_seen", "last_seen", "traits"];

impl Table {
    pub const ALL: [Table; 16] = [
        Table::IdentityMap,
        Table::DailyUserActivity,
        Table::ActiveUsers,
        Table::MonthlyActiveUsers,
        Table::NewUsers,
        Table::Retention,
        Table::RetentionWeekly,
        Table::LifecycleDaily,
        Table::LifecycleWeekly,
        Table::StickinessWeekly,
        Table::StickinessMonthly,
        Table::PageViews,
        Table::Sessions,
        Table::EventCounts,
        Table::TrackingPlanViolations,
        Table::Users,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::IdentityMap => "identity_map",
            Table::DailyUserActivity => "daily_user_activity",
            Table::ActiveUsers => "active_users",
            Table::MonthlyActiveUsers => "monthly_active_users",
            Table::NewUsers => "new_users",
            Table::Retention => "retention",
            Table::RetentionWeekly => "retention_weekly",
            Table::LifecycleDaily => "lifecycle_daily",
            Table::LifecycleWeekly => "lifecycle_weekly",
            Table::StickinessWeekly => "stickiness_weekly",
            Table::StickinessMonthly => "stickiness_monthly",
            Table::PageViews => "page_views",
            Table::Sessions => "sessions",
            Table::EventCounts => "event_counts",
            Table::TrackingPlanViolations => "tracking_plan_violations",
            Table::Users => "users",
        }
    }

    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn replace(self) -> Replace {
        match self {
            Table::IdentityMap => Replace::Whole,
            Table::Users => Replace::WholePerSource,
            Table::MonthlyActiveUsers => Replace::ByDate("month"),
            Table::Retention => Replace::ByDate("cohort_date"),
            Table::RetentionWeekly => Replace::ByDate("cohort_week"),
            Table::LifecycleWeekly | Table::StickinessWeekly => Replace::ByDate("week"),
            Table::StickinessMonthly => Replace::ByDate("month"),
            _ => Replace::ByDate("activity_date"),
        }
    }

    /// The columns in file and table order; `users` adds one text column per configured trait.
    pub fn columns(self, trait_columns: &[String]) -> Vec<Column> {
        use SqlType::*;
        let fixed: &[(&str, SqlType)] = match self {
            Table::IdentityMap => &[("anonymous_id", Text), ("user_id", Text), ("first_seen", Timestamp)],
            Table::DailyUserActivity => &[
                ("activity_date", Date),
                ("source", Text),
                ("user_key", Text),
                ("events", BigInt),
                ("page_views", BigInt),
                ("first_seen_date", Date),
            ],
            Table::ActiveUsers => &[
                ("activity_date", Date),
                ("source", Text),
                ("dau", BigInt),
                ("wau", BigInt),
                ("mau", BigInt),
                ("stickiness", Double),
            ],
            Table::MonthlyActiveUsers => &[("month", Date), ("source", Text), ("mau", BigInt)],
            Table::NewUsers => {
                &[("activity_date", Date), ("source", Text), ("new_users", BigInt), ("returning_users", BigInt)]
            }
            Table::Retention => &[
                ("cohort_date", Date),
                ("source", Text),
                ("day_number", Int),
                ("cohort_size", BigInt),
                ("retained_users", BigInt),
                ("retention_rate", Double),
                ("retained_on_or_after", BigInt),
                ("unbounded_retention_rate", Double),
            ],
            Table::LifecycleDaily => &[
                ("activity_date", Date),
                ("source", Text),
                ("new_users", BigInt),
                ("returning_users", BigInt),
                ("resurrecting_users", BigInt),
                ("dormant_users", BigInt),
            ],
            Table::LifecycleWeekly => &[
                ("week", Date),
                ("source", Text),
                ("new_users", BigInt),
                ("returning_users", BigInt),
                ("resurrecting_users", BigInt),
                ("dormant_users", BigInt),
            ],
            Table::StickinessWeekly => {
                &[("week", Date), ("source", Text), ("active_days", Int), ("users", BigInt), ("share", Double)]
            }
            Table::StickinessMonthly => {
                &[("month", Date), ("source", Text), ("active_days", Int), ("users", BigInt), ("share", Double)]
            }
            Table::RetentionWeekly => &[
                ("cohort_week", Date),
                ("source", Text),
                ("week_number", Int),
                ("cohort_size", BigInt),
                ("retained_users", BigInt),
                ("retention_rate", Double),
            ],
            Table::PageViews => &[
                ("activity_date", Date),
                ("source", Text),
                ("path", Text),
                ("page_views", BigInt),
                ("unique_visitors", BigInt),
            ],
            Table::Sessions => &[
                ("activity_date", Date),
                ("source", Text),
                ("sessions", BigInt),
                ("avg_session_seconds", Double),
                ("bounce_rate", Double),
            ],
            Table::EventCounts => &[
                ("activity_date", Date),
                ("source", Text),
                ("type", Text),
                ("event", Text),
                ("events", BigInt),
                ("users", BigInt),
            ],
            Table::TrackingPlanViolations => &[
                ("activity_date", Date),
                ("source", Text),
                ("event", Text),
                ("property", Text),
                ("kind", Text),
                ("events", BigInt),
            ],
            Table::Users => &[
                ("user_id", Text),
                ("source", Text),
                ("first_seen", Timestamp),
                ("last_seen", Timestamp),
                ("traits", Text),
            ],
        };
        let mut columns: Vec<Column> =
            fixed.iter().map(|(name, sql_type)| Column { name: (*name).into(), sql_type: *sql_type }).collect();
        if self == Table::Users {
            columns.extend(trait_columns.iter().map(|t| Column { name: trait_column_name(t), sql_type: Text }));
        }
        columns
    }

    /// The Arrow schema of the table's Parquet files.
    pub fn schema(self, trait_columns: &[String]) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns(trait_columns)
            .iter()
            .map(|c| {
                let nullable =
                    !matches!(c.name.as_str(), "source" | "activity_date" | "cohort_date" | "cohort_week" | "week");
                Field::new(&c.name, c.sql_type.arrow(), nullable)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

impl SqlType {
    pub fn arrow(self) -> DataType {
        match self {
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::Text => DataType::Utf8,
            SqlType::Int => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Double => DataType::Float64,
        }
    }
}

/// `firstName` → `first_name`, `company.name` → `company_name`: the column a trait lands in.
pub fn trait_column_name(name: &str) -> String {
    let mut column = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !column.is_empty() && !column.ends_with('_') {
                column.push('_');
            }
            column.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            column.push(c);
        } else if !column.ends_with('_') {
            column.push('_');
        }
    }
    let column = column.trim_matches('_').to_owned();
    if column.starts_with(|c: char| c.is_ascii_digit()) { format!("trait_{column}") } else { column }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_names_become_snake_case_columns() {
        assert_eq!(trait_column_name("firstName"), "first_name");
        assert_eq!(trait_column_name("company.name"), "company_name");
        assert_eq!(trait_column_name("Plan Type"), "plan_type");
        assert_eq!(trait_column_name("2fa"), "trait_2fa");
    }

    #[test]
    fn every_table_has_a_unique_name_and_a_source_or_is_global() {
        for table in Table::ALL {
            assert_eq!(Table::parse(table.name()), Some(table));
            let columns = table.columns(&[]);
            let has_source = columns.iter().any(|c| c.name == "source");
            assert_eq!(has_source, table != Table::IdentityMap, "{}", table.name());
            if let Replace::ByDate(key) = table.replace() {
                assert_eq!(columns[0].name, key, "{}: the date key comes first", table.name());
            }
        }
    }
}
