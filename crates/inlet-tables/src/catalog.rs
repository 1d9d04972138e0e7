//! The copied tables in a warehouse: Glue/Spectrum DDL for Redshift (and Athena), and the
//! PostgreSQL stand-in, where the days are loaded as rows.
//!
//! Every copied table appears as `{database}__{table}` (all days, a `dt` column) and
//! `{database}__{table}_current`: the latest day of a snapshot table, or the latest version of
//! each `primary_key` of an incremental table (all rows when it has none). Columns are the
//! union over the days (a dropped column reads NULL on later days), typed as on the latest day.
//! Spectrum reads each day through its symlink manifest, so a re-run of a day swaps it whole.

use std::fmt::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use futures_util::SinkExt;
use inlet_lake::store::{LakeLocation, LakeStore};

use crate::TablesError;
use crate::config::Mode;
use crate::manifest::{self, Manifest};
use crate::types::Kind;

/// A copied table as its committed days describe it.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub database: String,
    pub table: String,
    /// Union of the days' columns, in first-seen order, typed as last seen.
    pub columns: Vec<(String, Kind)>,
    pub days: Vec<Manifest>,
}

impl CatalogTable {
    pub fn from_manifests(database: &str, table: &str, days: Vec<Manifest>) -> Result<CatalogTable, TablesError> {
        let mut columns: Vec<(String, Kind)> = Vec::new();
        for day in &days {
            for column in &day.columns {
                let kind = Kind::from_name(&column.lake_type).ok_or_else(|| {
                    TablesError::Lake(format!("{database}.{table}: unknown lake type {:?}", column.lake_type))
                })?;
                match columns.iter_mut().find(|(name, _)| *name == column.name) {
                    Some(existing) => existing.1 = kind,
                    None => columns.push((column.name.clone(), kind)),
                }
            }
        }
        Ok(CatalogTable { database: database.into(), table: table.into(), columns, days })
    }

    pub fn name(&self) -> String {
        format!("{}__{}", self.database, self.table)
    }

    fn latest(&self) -> Option<&Manifest> {
        self.days.last()
    }

    /// The `_current` view's query (shared by both warehouses: `ROW_NUMBER`, no `DISTINCT ON`).
    fn current_sql(&self, schema: &str, primary_key: &[String]) -> String {
        let name = self.name();
        let columns: Vec<String> = self.columns.iter().map(|(c, _)| quote(c)).collect();
        let list = format!("dt, {}", columns.join(", "));
        match self.latest().map(|m| m.mode) {
            Some(Mode::Incremental) if !primary_key.is_empty() => {
                let keys: Vec<String> = primary_key.iter().map(|k| quote(k)).collect();
                let cursor = self.latest().and_then(|m| m.cursor.as_deref()).map(|c| format!(", {} DESC", quote(c)));
                format!(
                    "SELECT {list} FROM (SELECT {list}, ROW_NUMBER() OVER (PARTITION BY {} ORDER BY dt DESC{}) AS inlet_version \
                     FROM {schema}.{name}) AS versions WHERE inlet_version = 1",
                    keys.join(", "),
                    cursor.unwrap_or_default()
                )
            }
            Some(Mode::Incremental) => format!("SELECT {list} FROM {schema}.{name}"),
            _ => format!("SELECT {list} FROM {schema}.{name} WHERE dt = (SELECT MAX(dt) FROM {schema}.{name})"),
        }
    }
}

/// Every copied table of `database` in the lake.
pub async fn tables_of(store: &LakeStore, database: &str) -> Result<Vec<CatalogTable>, TablesError> {
    let mut tables = Vec::new();
    for folder in store.list_folders(&format!("tables/{database}/")).await? {
        let table = folder.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
        let days = crate::copy::manifests(store, database, &table).await?;
        if !days.is_empty() {
            tables.push(CatalogTable::from_manifests(database, &table, days)?);
        }
    }
    Ok(tables)
}

fn quote(identifier: &str) -> String {
    crate::copy::quote(crate::Engine::Postgres, identifier)
}

/// Spectrum: the external table over the days' symlink manifests, its partitions, and the
/// `_current` view (late-binding, as views over external tables must be).
pub fn spectrum_ddl(location: &LakeLocation, schema: &str, table: &CatalogTable, primary_key: &[String]) -> String {
    let name = table.name();
    let columns: Vec<String> =
        table.columns.iter().map(|(c, k)| format!("  {} {}", quote(c), k.spectrum_type())).collect();
    let root = location.url_of(&manifest::symlink_prefix(&table.database, &table.table));
    let mut ddl = format!(
        "CREATE EXTERNAL TABLE {schema}.{name} (\n{}\n)\nPARTITIONED BY (dt date)\n\
         ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\n\
         STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'\n\
         OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n\
         LOCATION '{root}/';\n",
        columns.join(",\n")
    );
    for day in &table.days {
        let _ = writeln!(ddl, "{}", spectrum_partition(location, schema, &table.database, &table.table, day.date));
    }
    let _ = writeln!(
        ddl,
        "CREATE OR REPLACE VIEW {schema}.{name}_current AS {} WITH NO SCHEMA BINDING;",
        table.current_sql(schema, primary_key)
    );
    ddl
}

/// The statement that makes one copied day visible to Spectrum.
pub fn spectrum_partition(
    location: &LakeLocation,
    schema: &str,
    database: &str,
    table: &str,
    date: chrono::NaiveDate,
) -> String {
    let day = location.url_of(&format!("{}/dt={date}", manifest::symlink_prefix(database, table)));
    format!("ALTER TABLE {schema}.{database}__{table} ADD IF NOT EXISTS PARTITION (dt = '{date}') LOCATION '{day}/';")
}

/// The PostgreSQL stand-in: creates `{schema}.{database}__{table}` (adding new columns, and
/// retyping retyped ones) and its `_current` view, then loads every day whose copy is not
/// loaded yet (each in one transaction: the day's rows deleted, the new ones copied in).
/// Returns the days loaded.
pub async fn load_postgres(
    client: &mut tokio_postgres::Client,
    schema: &str,
    store: &LakeStore,
    table: &CatalogTable,
    primary_key: &[String],
) -> Result<Vec<chrono::NaiveDate>, TablesError> {
    let failed = |e: tokio_postgres::Error| TablesError::Warehouse(format!("{}: {}", table.name(), db_error(&e)));
    let name = table.name();
    let columns: Vec<String> =
        table.columns.iter().map(|(c, k)| format!("{} {}", quote(c), k.postgres_type())).collect();
    let mut setup = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.inlet_table_days (database text, name text, dt date, run_id text, rows bigint,
           PRIMARY KEY (database, name, dt));
         CREATE TABLE IF NOT EXISTS {schema}.{name} (dt date NOT NULL, {});
         DROP VIEW IF EXISTS {schema}.{name}_current CASCADE;",
        columns.join(", ")
    );
    for (column, kind) in &table.columns {
        let (column, sql_type) = (quote(column), kind.postgres_type());
        let _ = write!(
            setup,
            "ALTER TABLE {schema}.{name} ADD COLUMN IF NOT EXISTS {column} {sql_type};
             ALTER TABLE {schema}.{name} ALTER COLUMN {column} TYPE {sql_type} USING {column}::text::{sql_type};"
        );
    }
    let _ = write!(setup, "CREATE VIEW {schema}.{name}_current AS {};", table.current_sql(schema, primary_key));
    client.batch_execute(&setup).await.map_err(failed)?;

    let loaded: Vec<(chrono::NaiveDate, String)> = client
        .query(
            &format!("SELECT dt, run_id FROM {schema}.inlet_table_days WHERE database = $1 AND name = $2"),
            &[&table.database, &table.table],
        )
        .await
        .map_err(failed)?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut days = Vec::new();
    for day in &table.days {
        if loaded.iter().any(|(date, run)| *date == day.date && *run == day.run_id) {
            continue;
        }
        let transaction = client.transaction().await.map_err(failed)?;
        transaction
            .execute(&format!("DELETE FROM {schema}.{name} WHERE dt = $1"), &[&day.date])
            .await
            .map_err(failed)?;
        let day_columns: Vec<String> = day.columns.iter().map(|c| quote(&c.name)).collect();
        let sink = transaction
            .copy_in(&format!("COPY {schema}.{name} (dt, {}) FROM STDIN", day_columns.join(", ")))
            .await
            .map_err(failed)?;
        let mut sink = std::pin::pin!(sink);
        for file in &day.files {
            let bytes =
                store.get(&file.key).await?.ok_or_else(|| TablesError::Lake(format!("{} is missing", file.key)))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8192)
                .map_err(|e| TablesError::Lake(format!("{}: {e}", file.key)))?;
            for batch in reader {
                let batch = batch.map_err(|e| TablesError::Lake(format!("{}: {e}", file.key)))?;
                let text = copy_text(day.date, batch.columns());
                sink.send(bytes::Bytes::from(text)).await.map_err(failed)?;
            }
        }
        sink.as_mut().finish().await.map_err(failed)?;
        transaction
            .execute(
                &format!("DELETE FROM {schema}.inlet_table_days WHERE database = $1 AND name = $2 AND dt = $3;"),
                &[&table.database, &table.table, &day.date],
            )
            .await
            .map_err(failed)?;
        transaction
            .execute(
                &format!("INSERT INTO {schema}.inlet_table_days VALUES ($1, $2, $3, $4, $5)"),
                &[&table.database, &table.table, &day.date, &day.run_id, &(day.rows as i64)],
            )
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(failed)?;
        days.push(day.date);
    }
    Ok(days)
}

fn db_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => inlet_lake::store::error_text(error),
    }
}

/// Rows in `COPY`'s text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_text(date: chrono::NaiveDate, columns: &[ArrayRef]) -> String {
    let rows = columns.first().map_or(0, |c| c.len());
    let mut text = String::with_capacity(rows * 64);
    for row in 0..rows {
        let _ = write!(text, "{date}");
        for column in columns {
            text.push('\t');
            if column.is_null(row) {
                text.push_str("\\N");
                continue;
            }
            match column.data_type() {
                DataType::Boolean => text.push(if column.as_boolean().value(row) { 't' } else { 'f' }),
                DataType::Int16 => {
                    let _ = write!(text, "{}", column.as_primitive::<Int16Type>().value(row));
                }
                DataType::Int32 => {
                    let _ = write!(text, "{}", column.as_primitive::<Int32Type>().value(row));
                }
                DataType::Int64 => {
                    let _ = write!(text, "{}", column.as_primitive::<Int64Type>().value(row));
                }
                DataType::Float32 => float(&mut text, f64::from(column.as_primitive::<Float32Type>().value(row))),
                DataType::Float64 => float(&mut text, column.as_primitive::<Float64Type>().value(row)),
                DataType::Decimal128(_, _) => {
                    text.push_str(&column.as_primitive::<Decimal128Type>().value_as_string(row))
                }
                DataType::Date32 => {
                    let _ =
                        write!(text, "{}", column.as_primitive::<Date32Type>().value_as_date(row).unwrap_or_default());
                }
                DataType::Time64(_) => {
                    let time = column.as_primitive::<Time64MicrosecondType>().value_as_time(row).unwrap_or_default();
                    let _ = write!(text, "{}", time.format("%H:%M:%S%.6f"));
                }
                DataType::Timestamp(_, _) => {
                    let time =
                        column.as_primitive::<TimestampMicrosecondType>().value_as_datetime(row).unwrap_or_default();
                    let _ = write!(text, "{}+00", time.format("%Y-%m-%d %H:%M:%S%.6f"));
                }
                DataType::Binary => {
                    text.push_str("\\\\x");
                    for byte in column.as_binary::<i32>().value(row) {
                        let _ = write!(text, "{byte:02x}");
                    }
                }
                _ => escape(&mut text, column.as_string::<i32>().value(row)),
            }
        }
        text.push('\n');
    }
    text
}

fn float(text: &mut String, value: f64) {
    if value.is_nan() {
        text.push_str("NaN");
    } else if value.is_infinite() {
        text.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = write!(text, "{value:?}");
    }
}

fn escape(text: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '\t' => text.push_str("\\t"),
            '\n' => text.push_str("\\n"),
            '\r' => text.push_str("\\r"),
            c => text.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ColumnEntry, FORMAT};

    fn day(date: &str, columns: &[(&str, &str)]) -> Manifest {
        Manifest {
            format: FORMAT,
            database: "app".into(),
            table: "posts".into(),
            date: date.parse().expect("date"),
            mode: Mode::Incremental,
            run_id: "r".into(),
            snapshot_at: chrono::Utc::now(),
            committed_at: chrono::Utc::now(),
            rows: 1,
            bytes: 1,
            files: Vec::new(),
            columns: columns
                .iter()
                .map(|(name, lake_type)| ColumnEntry {
                    name: (*name).into(),
                    lake_type: (*lake_type).into(),
                    source_type: String::new(),
                    hashed: false,
                    nulled: 0,
                })
                .collect(),
            schema_hash: String::new(),
            cursor: Some("updated_at".into()),
            watermark_from: None,
            watermark: None,
        }
    }

    #[test]
    fn spectrum_ddl_reads_days_through_their_symlink_manifests() {
        let days = vec![
            day("2026-12-03", &[("id", "int64"), ("likes", "int32"), ("updated_at", "timestamp")]),
            day("2026-12-04", &[("id", "int64"), ("likes", "int64"), ("updated_at", "timestamp"), ("body", "text")]),
        ];
        let table = CatalogTable::from_manifests("app", "posts", days).expect("catalog");
        assert_eq!(
            table.columns.iter().map(|(c, k)| format!("{c}:{}", k.name())).collect::<Vec<_>>(),
            ["id:int64", "likes:int64", "updated_at:timestamp", "body:text"],
            "the union of the days' columns, typed as last seen"
        );
        let location = LakeLocation::parse("s3://lake/prod").expect("location");
        let ddl = spectrum_ddl(&location, "inlet_tables", &table, &["id".into()]);
        assert!(ddl.contains("CREATE EXTERNAL TABLE inlet_tables.app__posts ("), "{ddl}");
        assert!(ddl.contains("\"likes\" bigint") && ddl.contains("\"body\" varchar(65535)"), "{ddl}");
        assert!(ddl.contains("SymlinkTextInputFormat"), "{ddl}");
        assert!(ddl.contains("LOCATION 's3://lake/prod/tables/app/posts/_symlink_format_manifest/';"), "{ddl}");
        assert!(
            ddl.contains(
                "ADD IF NOT EXISTS PARTITION (dt = '2026-12-04') LOCATION 's3://lake/prod/tables/app/posts/_symlink_format_manifest/dt=2026-12-04/';"
            ),
            "{ddl}"
        );
        assert!(ddl.contains("PARTITION BY \"id\" ORDER BY dt DESC, \"updated_at\" DESC"), "{ddl}");
        assert!(ddl.contains("WITH NO SCHEMA BINDING"), "{ddl}");
        assert!(!ddl.to_uppercase().contains("DISTINCT ON"), "Redshift has no DISTINCT ON");
    }

    #[test]
    fn copy_text_escapes_and_types_values() {
        use arrow_array::{BinaryArray, Float64Array, StringArray};
        use std::sync::Arc;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a\tb\\c\nd"), None])),
            Arc::new(Float64Array::from(vec![f64::INFINITY, 0.1])),
            Arc::new(BinaryArray::from(vec![&b"\x00\xff"[..], &b""[..]])),
        ];
        let text = copy_text("2026-12-04".parse().expect("date"), &columns);
        assert_eq!(text, "2026-12-04\ta\\tb\\\\c\\nd\tInfinity\t\\\\x00ff\n2026-12-04\t\\N\t0.1\t\\\\x\n");
    }
}
