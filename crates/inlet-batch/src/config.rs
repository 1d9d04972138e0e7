//! The batch job's configuration: a TOML file (optional), then command-line flags and their
//! `INLET_BATCH_*` environment variables on top. Documented in `docs/config.md`.

use std::path::Path;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// The lake root the gateway writes: `s3://bucket/prefix` or a local directory.
    pub lake_url: String,
    pub s3: S3Config,
    /// IANA name of the reporting time zone: a day is a calendar day there.
    pub time_zone: String,
    /// Each run also recomputes this many days before `--from`, for late events.
    pub lookback_days: u32,
    /// Days before `--to` in which a run looks for late events by the lake's files; older days
    /// are re-read only when asked for (`--from`) or by `--full`.
    pub late_window_days: u32,
    /// A session ends after this much inactivity.
    pub session_timeout_minutes: u32,
    /// Events timestamped before this date were partitioned by `receivedAt` in the lake (the
    /// gateway's `lake.min_event_date`); they count on the day they were received.
    pub min_event_date: String,
    /// Traits copied from the merged identify traits into columns of `users`.
    pub trait_columns: Vec<String>,
    /// Memory DataFusion's operators may use before sorts, aggregations and windows spill to
    /// temporary files (joins cannot spill and fail beyond it).
    pub memory_limit_mb: u64,
    /// Where the metrics are computed: `datafusion` (in this process, from the lake) or
    /// `warehouse` (as SQL inside the warehouse, docs/scaling.md).
    pub engine: Engine,
    pub warehouse: WarehouseConfig,
    /// Product databases whose tables `inlet-batch tables run` copies into the lake
    /// (docs/tables.md).
    pub databases: std::collections::BTreeMap<String, inlet_tables::DatabaseConfig>,
    /// The copied table that describes the members (users) of the apps: `tables run` keeps the
    /// view `{warehouse.schema}.members` over it, which the `Inlet members` dashboard joins.
    pub members: Option<MembersConfig>,
    /// How long lake events and dead letters are kept (`inlet-batch retention`).
    pub retention: crate::retention::RetentionConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersConfig {
    /// `database.table`, one of the configured tables.
    pub table: String,
    /// Its column holding the id the apps send as `userId`.
    pub user_id: String,
    pub profession: Option<String>,
    pub specialty: Option<String>,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig {
            lake_url: "inlet-data/lake".into(),
            s3: S3Config::default(),
            time_zone: "UTC".into(),
            lookback_days: 2,
            late_window_days: 35,
            session_timeout_minutes: 30,
            min_event_date: "2015-01-01".into(),
            trait_columns: ["email", "name", "firstName", "lastName", "profession", "specialty", "createdAt"]
                .map(String::from)
                .to_vec(),
            memory_limit_mb: 1024,
            engine: Engine::DataFusion,
            warehouse: WarehouseConfig::default(),
            databases: std::collections::BTreeMap::new(),
            members: None,
            retention: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// For S3-compatible stores (Garage, MinIO); credentials come from the standard AWS
    /// environment variables.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
}

/// Where a run computes the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// DataFusion in the batch process; the tables are written to the lake and published.
    #[default]
    #[value(name = "datafusion")]
    DataFusion,
    /// SQL run by the warehouse itself (PostgreSQL, or Redshift over the lake through Spectrum).
    Warehouse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarehouseKind {
    /// Parquet under `{lake}/metrics/` only.
    #[default]
    None,
    Postgres,
    Redshift,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    pub kind: WarehouseKind,
    /// Schema the metrics tables live in (created if missing).
    pub schema: String,
    /// libpq-style connection string, e.g. `host=localhost port=5432 user=inlet dbname=metrics`.
    pub postgres_url: Option<String>,
    pub redshift: RedshiftConfig,
}

impl Default for WarehouseConfig {
    fn default() -> WarehouseConfig {
        WarehouseConfig {
            kind: WarehouseKind::None,
            schema: "inlet".into(),
            postgres_url: None,
            redshift: RedshiftConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedshiftConfig {
    /// Redshift Serverless workgroup (Data API `WorkgroupName`).
    pub workgroup: String,
    pub database: String,
    /// Role Redshift assumes to read the metrics files for `COPY`.
    pub iam_role: String,
    /// Region of the workgroup; the default AWS chain applies otherwise.
    pub region: Option<String>,
    /// External schema (over the Glue catalog) of the copied product tables: `tables run`
    /// adds each committed day's partition there.
    pub tables_schema: Option<String>,
    /// The lake's events as a Spectrum external table (`inlet lake ddl --dialect spectrum`),
    /// which the warehouse engine reads and adds the partitions of the days it reads to.
    pub events_table: String,
    /// The Data API endpoint, when not the region's (a VPC endpoint; a test double).
    pub endpoint: Option<String>,
}

impl Default for RedshiftConfig {
    fn default() -> RedshiftConfig {
        RedshiftConfig {
            workgroup: String::new(),
            database: String::new(),
            iam_role: String::new(),
            region: None,
            tables_schema: None,
            events_table: "inlet_lake.events".into(),
            endpoint: None,
        }
    }
}

impl BatchConfig {
    /// Reads `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<BatchConfig, ConfigError> {
        let Some(path) = path else { return Ok(BatchConfig::default()) };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: shown.clone(), message: e.to_string() })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })
    }

    /// Refuses settings the job could only fail on later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if let Err(e) = inlet_lake::LakeLocation::parse(&self.lake_url) {
            return invalid(format!("lake_url: {e}"));
        }
        if self.time_zone.parse::<Tz>().is_err() {
            return invalid(format!("time_zone {:?} is not an IANA time zone name", self.time_zone));
        }
        if self.memory_limit_mb < 64 {
            return invalid("memory_limit_mb must be at least 64".into());
        }
        if self.session_timeout_minutes == 0 {
            return invalid("session_timeout_minutes must be greater than zero".into());
        }
        if NaiveDate::parse_from_str(&self.min_event_date, "%Y-%m-%d").is_err() {
            return invalid(format!("min_event_date {:?} must be YYYY-MM-DD", self.min_event_date));
        }
        for name in &self.trait_columns {
            let column = crate::tables::trait_column_name(name);
            if column.is_empty() || crate::tables::USERS_FIXED_COLUMNS.contains(&column.as_str()) {
                return invalid(format!("trait_columns: {name:?} cannot be a column of users"));
            }
        }
        for (name, database) in &self.databases {
            database.validate(name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(members) = &self.members {
            let configured = members
                .table
                .split_once('.')
                .is_some_and(|(d, t)| self.databases.get(d).is_some_and(|d| d.tables.contains_key(t)));
            if !configured {
                return invalid(format!("members.table {:?} is not a configured database.table", members.table));
            }
            let columns = [Some(&members.user_id), members.profession.as_ref(), members.specialty.as_ref()];
            if let Some(bad) = columns.into_iter().flatten().find(|c| !is_identifier(c)) {
                return invalid(format!("members: column {bad:?} must be a plain SQL identifier"));
            }
        }
        let warehouse = &self.warehouse;
        if !is_identifier(&warehouse.schema) {
            return invalid(format!("warehouse.schema {:?} must be a plain SQL identifier", warehouse.schema));
        }
        match warehouse.kind {
            WarehouseKind::None => {}
            WarehouseKind::Postgres if warehouse.postgres_url.is_none() => {
                return invalid("warehouse.kind = \"postgres\" needs warehouse.postgres_url".into());
            }
            WarehouseKind::Postgres => {}
            WarehouseKind::Redshift => {
                let redshift = &warehouse.redshift;
                if redshift.workgroup.is_empty() || redshift.database.is_empty() || redshift.iam_role.is_empty() {
                    return invalid("warehouse.redshift needs workgroup, database and iam_role".into());
                }
                if !self.lake_url.starts_with("s3://") {
                    return invalid("Redshift loads the metrics files with COPY, so lake_url must be s3://".into());
                }
                let parts: Vec<&str> = redshift.events_table.split('.').collect();
                if parts.len() != 2 || !parts.iter().all(|p| is_identifier(p)) {
                    return invalid(format!(
                        "warehouse.redshift.events_table {:?} must be schema.table",
                        redshift.events_table
                    ));
                }
            }
        }
        if self.engine == Engine::Warehouse && warehouse.kind == WarehouseKind::None {
            return invalid("engine = \"warehouse\" needs a warehouse (warehouse.kind postgres or redshift)".into());
        }
        Ok(())
    }

    pub fn tz(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::UTC)
    }
}

/// Lowercase letters, digits and `_`, not starting with a digit: safe to splice into SQL.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BatchConfig::default().validate().expect("defaults validate");
    }

    #[test]
    fn refuses_bad_settings_with_the_field_named() {
        let cases = [
            ("time_zone = \"Mars/Olympus\"", "time_zone"),
            ("lake_url = \"gs://bucket\"", "lake_url"),
            ("min_event_date = \"2015\"", "min_event_date"),
            ("trait_columns = [\"source\"]", "trait_columns"),
            ("[warehouse]\nkind = \"postgres\"", "postgres_url"),
            ("[warehouse]\nschema = \"x; drop\"", "schema"),
            (
                "[warehouse]\nkind = \"redshift\"\n[warehouse.redshift]\nworkgroup = \"w\"\ndatabase = \"d\"\niam_role = \"r\"",
                "s3://",
            ),
            ("[databases.app]\nengine = \"mysql\"\nurl = \"postgres://h/app\"", "does not match engine"),
            (
                "[databases.app]\nengine = \"postgres\"\nurl = \"postgres://h/app\"\n[databases.app.tables.m]\nmode = \"snapshot\"\n\
                 [members]\ntable = \"app.users\"\nuser_id = \"id\"",
                "members.table",
            ),
            (
                "[databases.app]\nengine = \"postgres\"\nurl = \"postgres://h/app\"\n[databases.app.tables.m]\nmode = \"snapshot\"\n\
                 [members]\ntable = \"app.m\"\nuser_id = \"id; drop\"",
                "plain SQL identifier",
            ),
        ];
        for (text, expected) in cases {
            let config: BatchConfig = toml::from_str(text).expect(text);
            let error = config.validate().expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(toml::from_str::<BatchConfig>("lake = \"x\"").is_err(), "unknown keys are refused");
    }
}
