//! Publishing the metrics tables to a warehouse. A step's rows replace the same slice (key dates
//! × sources, or the whole table) in one transaction: a `DELETE` of the slice, then the load, so
//! a re-run or an Airflow retry never duplicates and a reader never sees a half-replaced slice.
//!
//! The SQL here is the subset PostgreSQL and Redshift share (no `ON CONFLICT`, no
//! `generate_series`, `DATE 'YYYY-MM-DD'` literals).

pub mod engine;
pub mod postgres;
pub mod redshift;
pub mod session;

use datafusion::arrow::array::RecordBatch;

use crate::output::WrittenFile;
use crate::plan::Keys;
use crate::tables::{Replace, SqlType, Table};

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("Redshift Data API: {0}")]
    Redshift(String),
    #[error("cannot load column {column}: {message}")]
    Column { column: String, message: String },
    #[error(transparent)]
    Store(#[from] inlet_lake::store::StoreError),
    #[error("schema {0:?} is not a plain SQL identifier")]
    Schema(String),
}

/// The schema the statements splice in, checked where it enters the warehouse code: SQL has no
/// parameters for names.
pub fn checked_schema(schema: &str) -> Result<&str, WarehouseError> {
    if crate::config::is_identifier(schema) { Ok(schema) } else { Err(WarehouseError::Schema(schema.to_owned())) }
}

/// Which SQL types and literals to write (`DataFusion` writes PostgreSQL's types).
pub use crate::sql::Dialect;

/// One step's output, ready to publish.
#[derive(Debug)]
pub struct Publication<'a> {
    pub table: Table,
    pub keys: &'a Keys,
    pub sources: Option<&'a [String]>,
    pub rows: &'a RecordBatch,
    pub files: &'a [WrittenFile],
}

/// The tables with a row per user, and their id columns: what an erasure deletes rows from.
/// The aggregates (counts of users) are recomputed by the run that applies the erasure.
pub const USER_KEYED_TABLES: [(Table, &[&str]); 3] = [
    (Table::Users, &["user_id"]),
    (Table::IdentityMap, &["user_id", "anonymous_id"]),
    (Table::DailyUserActivity, &["user_key"]),
];

/// `DELETE`s of every row of [`USER_KEYED_TABLES`] with one of `ids`, the ids written as
/// literals of `dialect` (Redshift's Data API batches take no parameters).
pub fn erase_sql(schema: &str, ids: &[String], dialect: Dialect) -> Vec<String> {
    let list: Vec<String> = ids.iter().map(|id| crate::sql::quoted(id, dialect)).collect();
    let list = list.join(", ");
    USER_KEYED_TABLES
        .iter()
        .map(|(table, columns)| {
            let matches: Vec<String> = columns.iter().map(|c| format!("{c} IN ({list})")).collect();
            format!("DELETE FROM {schema}.{} WHERE {}", table.name(), matches.join(" OR "))
        })
        .collect()
}

/// `CREATE SCHEMA` and one `CREATE TABLE IF NOT EXISTS` per table.
pub fn create_tables_sql(dialect: Dialect, schema: &str, trait_columns: &[String]) -> Vec<String> {
    let mut statements = vec![format!("CREATE SCHEMA IF NOT EXISTS {schema}")];
    for table in Table::ALL {
        let columns: Vec<String> = table
            .columns(trait_columns)
            .iter()
            .map(|c| format!("{} {}", c.name, sql_type(dialect, c.sql_type, &c.name)))
            .collect();
        let mut statement =
            format!("CREATE TABLE IF NOT EXISTS {schema}.{} (\n  {}\n)", table.name(), columns.join(",\n  "));
        if dialect == Dialect::Redshift {
            // Dashboards filter on the date first; identity_map and users are looked up by id.
            let sort_key = table.columns(&[])[0].name.clone();
            statement.push_str(&format!(" SORTKEY ({sort_key})"));
        }
        statements.push(statement);
    }
    statements
}

pub fn sql_type(dialect: Dialect, sql_type: SqlType, column: &str) -> &'static str {
    match (sql_type, dialect) {
        (SqlType::Date, _) => "DATE",
        (SqlType::Timestamp, _) => "TIMESTAMP",
        (SqlType::Int, _) => "INTEGER",
        (SqlType::BigInt, _) => "BIGINT",
        (SqlType::Double, _) => "DOUBLE PRECISION",
        (SqlType::Text, Dialect::Postgres | Dialect::DataFusion) => "TEXT",
        // Redshift's VARCHAR is counted in bytes; COPY fails on longer values, so the columns
        // that carry free text get room.
        (SqlType::Text, Dialect::Redshift) => match column {
            "traits" => "VARCHAR(65535)",
            "path" | "event" => "VARCHAR(4096)",
            _ => "VARCHAR(1024)",
        },
    }
}

/// The `DELETE` that clears the slice a publication replaces.
pub fn delete_sql(schema: &str, table: Table, keys: &Keys, sources: Option<&[String]>) -> String {
    let mut conditions = Vec::new();
    if let (Replace::ByDate(column), Keys::Dates(dates)) = (table.replace(), keys) {
        conditions.push(dates.sql_predicate(column));
    }
    if let (Some(sources), true) = (sources, table != Table::IdentityMap) {
        let quoted: Vec<String> = sources.iter().map(|s| format!("'{s}'")).collect();
        conditions.push(format!("source IN ({})", quoted.join(", ")));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    format!("DELETE FROM {schema}.{}{filter}", table.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Dates;
    use chrono::NaiveDate;

    #[test]
    fn erasure_statements_quote_ids_for_redshift() {
        let ids = ["o'neil".to_owned(), r"back\slash".to_owned()];
        let statements = erase_sql("inlet", &ids, Dialect::Redshift);
        assert_eq!(statements.len(), USER_KEYED_TABLES.len());
        assert_eq!(
            statements[1],
            r"DELETE FROM inlet.identity_map WHERE user_id IN ('o''neil', 'back\\slash') OR anonymous_id IN ('o''neil', 'back\\slash')"
        );
    }

    #[test]
    fn deletes_only_the_replaced_slice() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let keys = Keys::Dates(Dates::from_iter([d("2026-11-01"), d("2026-11-02"), d("2026-11-09")]));
        let sources = ["web".to_owned()];
        assert_eq!(
            delete_sql("inlet", Table::ActiveUsers, &keys, Some(&sources)),
            "DELETE FROM inlet.active_users WHERE (activity_date BETWEEN DATE '2026-11-01' AND DATE '2026-11-02' \
             OR activity_date = DATE '2026-11-09') AND source IN ('web')"
        );
        assert_eq!(
            delete_sql("inlet", Table::IdentityMap, &Keys::Whole, Some(&sources)),
            "DELETE FROM inlet.identity_map"
        );
        assert_eq!(delete_sql("inlet", Table::Users, &Keys::Whole, None), "DELETE FROM inlet.users");
    }

    #[test]
    fn redshift_ddl_uses_redshift_types() {
        let ddl = create_tables_sql(Dialect::Redshift, "inlet", &["profession".into()]).join(";\n");
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS inlet.retention (\n  cohort_date DATE,"), "{ddl}");
        assert!(ddl.contains("traits VARCHAR(65535),\n  profession VARCHAR(1024)\n) SORTKEY (user_id)"), "{ddl}");
        assert!(!ddl.contains("TEXT"), "Redshift TEXT is VARCHAR(256): {ddl}");
        let postgres = create_tables_sql(Dialect::Postgres, "inlet", &[]).join(";\n");
        assert!(postgres.contains("stickiness DOUBLE PRECISION") && !postgres.contains("SORTKEY"));
    }
}
