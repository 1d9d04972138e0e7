//! DDL for the lake as an external table: Redshift Spectrum (through the Glue catalog) or
//! Athena, plus the partition statements for a time range.

use chrono::{DateTime, Duration, Utc};

use crate::layout::{EVENTS_PREFIX, Hour, LakeTable, Partition};
use crate::schema::LAKE_SCHEMA;
use crate::store::LakeLocation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Spectrum,
    Athena,
}

fn column_type(data_type: &arrow_schema::DataType, dialect: Dialect) -> &'static str {
    use arrow_schema::DataType;
    match (data_type, dialect) {
        (DataType::Int64, _) => "bigint",
        (DataType::Timestamp(..), _) => "timestamp",
        (_, Dialect::Spectrum) => "varchar(65535)",
        (_, Dialect::Athena) => "string",
    }
}

/// Spectrum's `CREATE EXTERNAL SCHEMA` over the Glue database that holds the events table
/// (created in the catalog if missing). `iam_role` is the role Redshift assumes to read the
/// catalog and the bucket (docs/deploy.md has its policy).
pub fn create_external_schema(schema: &str, glue_database: &str, iam_role: &str) -> String {
    format!(
        "CREATE EXTERNAL SCHEMA IF NOT EXISTS {schema}\nFROM DATA CATALOG DATABASE '{glue_database}'\nIAM_ROLE '{iam_role}'\nCREATE EXTERNAL DATABASE IF NOT EXISTS;\n"
    )
}

/// `CREATE EXTERNAL TABLE` for the events. `source` is a partition key (from the folder), so it
/// is not repeated among the columns; the files carry it too, for readers of bare files.
pub fn create_table(location: &LakeLocation, schema: &str, table: &str, dialect: Dialect) -> String {
    let columns: Vec<String> = LAKE_SCHEMA
        .fields()
        .iter()
        .filter(|f| f.name() != "source")
        .map(|f| format!("  {} {}", quote(f.name(), dialect), column_type(f.data_type(), dialect)))
        .collect();
    let (source_type, hour_type) = match dialect {
        Dialect::Spectrum => ("varchar(64)", "smallint"),
        Dialect::Athena => ("string", "smallint"),
    };
    format!(
        "CREATE EXTERNAL TABLE {schema}.{table} (\n{}\n)\nPARTITIONED BY (source {source_type}, dt date, hour {hour_type})\nSTORED AS PARQUET\nLOCATION '{}/';\n",
        columns.join(",\n"),
        location.url_of(EVENTS_PREFIX)
    )
}

/// One `ALTER TABLE … ADD IF NOT EXISTS PARTITION` per source and hour in `from..to`.
pub fn add_partitions(
    location: &LakeLocation,
    schema: &str,
    table: &str,
    sources: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    for source in sources {
        let mut hour = Hour::of(from);
        while hour.start() < to {
            let partition = Partition { table: LakeTable::Events, source: source.clone(), hour };
            out.push_str(&format!(
                "ALTER TABLE {schema}.{table} ADD IF NOT EXISTS PARTITION (source='{source}', dt='{}', hour={}) LOCATION '{}/';\n",
                hour.date.format("%Y-%m-%d"),
                hour.hour,
                location.url_of(&partition.folder())
            ));
            hour = Hour::of(hour.start() + Duration::hours(1));
        }
    }
    out
}

/// `timestamp` and a few other names are reserved words in Athena's DDL.
fn quote(name: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Athena => format!("`{name}`"),
        Dialect::Spectrum => format!("\"{name}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_segment::parse_timestamp;

    #[test]
    fn ddl_names_every_column_and_partition() {
        let location = LakeLocation::parse("s3://lake/inlet").expect("location");
        let ddl = create_table(&location, "spectrum", "events", Dialect::Spectrum);
        assert!(ddl.contains("\"message_id\" varchar(65535)"));
        assert!(ddl.contains("\"timestamp\" timestamp"));
        assert!(ddl.contains("\"context_screen_width\" bigint"));
        assert!(!ddl.contains("\"source\""), "a partition key must not repeat a column");
        assert!(ddl.contains("PARTITIONED BY (source varchar(64), dt date, hour smallint)"));
        assert!(ddl.contains("LOCATION 's3://lake/inlet/events/'"));
        let from = parse_timestamp("2024-05-01T22:30:00Z").expect("ts");
        let to = parse_timestamp("2024-05-02T01:00:00Z").expect("ts");
        let parts = add_partitions(&location, "spectrum", "events", &["web".into()], from, to);
        let lines: Vec<&str> = parts.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2],
            "ALTER TABLE spectrum.events ADD IF NOT EXISTS PARTITION (source='web', dt='2024-05-02', hour=0) LOCATION 's3://lake/inlet/events/source=web/dt=2024-05-02/hour=00/';"
        );
        assert!(create_table(&location, "db", "events", Dialect::Athena).contains("`timestamp` timestamp"));
    }
}
