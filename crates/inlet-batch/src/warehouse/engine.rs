//! # The warehouse engine: every step as SQL inside the warehouse
//!
//! `engine = "warehouse"` (`inlet-batch run --engine warehouse`) computes the tables of the
//! DataFusion engine from the same query files (`sql.rs` writes them for the warehouse's
//! dialect), with the same plan (which days to read, which key dates each step replaces), but
//! runs them where the data is. On Redshift the events are read from the lake through Spectrum,
//! so the work scales with the warehouse, not with this process. On PostgreSQL (the local stand-in,
//! and enough for small teams) the events of the days read are first copied in from the lake.
//!
//! What the DataFusion engine does in Rust is SQL here: sessions (`day_sessions.sql`,
//! `session_totals.sql`, window functions instead of the sweep) and the merge of identify traits
//! (`merged_traits_{postgres,redshift}.sql`, the one part written per dialect: JSON objects are
//! taken apart and built differently in the two).
//!
//! ## Tables
//! - `{schema}`: the metrics tables, as both engines publish them.
//! - `{schema}_state`: the state, as tables (the DataFusion engine keeps it in the lake): day
//!   summaries `day_keys`, `day_pages`, `day_calls`, `day_sessions`, `day_traits`, `day_links`, `day_violations`
//!   (a slice per day); merged `keys`, `links`; derived `identity_map`, `first_seen` and their
//!   `previous_` copies; `offsets` (0..30); and the bookkeeping the lake's manifest holds for
//!   the other engine: `lake_days` (each summarised day's lake fingerprint), `pending` (key dates
//!   per step still to recompute), `settings`. On PostgreSQL also `events` (copied columns,
//!   partitions typed as Spectrum's); on Redshift `events` is a view over the external table
//!   `warehouse.redshift.events_table`, whose partitions of the hours read are added first.
//!
//! ## Invariants
//! - A day's summaries (and on PostgreSQL its events) are replaced in one transaction.
//! - The merge, the derived tables, the fingerprints and the pending key dates commit in one
//!   transaction: a run that stops before it is repeated from the previous state (merges are
//!   MIN and MAX, so summaries already replaced fold in again harmlessly).
//! - A step's `DELETE` of its key dates, its `INSERT … SELECT`, and the removal of its pending
//!   dates commit in one transaction: re-runs and Airflow retries replace, never duplicate.
//! - The metrics Parquet files under `{lake}/metrics/` are the DataFusion engine's; this engine
//!   leaves them alone.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::NaiveDate;
use inlet_lake::LakeStore;
use inlet_lake::layout::EVENTS_PREFIX;

use super::session::{DataApiSession, Rows, Session};
use super::{WarehouseError, checked_schema, create_tables_sql, delete_sql, erase_sql};
use crate::calendar::{Dates, day};
use crate::config::{BatchConfig, RedshiftConfig, WarehouseKind};
use crate::lakeview::LakeView;
use crate::plan::{self, Keys, Plan, RETENTION_DAYS};
use crate::run::{
    BatchError, RunRequest, STATE_STEP, StepReport, bounds, dated_query, key_chunks, open_store, peak_rss_mib,
    plan_from, reset_peak_rss,
};
use crate::sql::{self, Dialect, Params, Query};
use crate::state::{Manifest, StateSettings, day_bounds, day_read_params};
use crate::tables::{Replace, Table, trait_column_name};

/// A state table's column types, written per dialect.
#[derive(Debug, Clone, Copy)]
enum Column {
    Id,
    Text,
    Date,
    Time,
    Big,
    Int,
    Flag,
}

const DAY_KEYS: &[(&str, Column)] = &[
    ("day", Column::Date),
    ("source", Column::Id),
    ("raw_key", Column::Id),
    ("is_user", Column::Flag),
    ("calls", Column::Big),
    ("activity_calls", Column::Big),
    ("page_views", Column::Big),
    ("first_time", Column::Time),
    ("last_time", Column::Time),
];
const KEYS: &[(&str, Column)] = &[
    ("source", Column::Id),
    ("raw_key", Column::Id),
    ("is_user", Column::Flag),
    ("first_time", Column::Time),
    ("last_time", Column::Time),
    ("first_date", Column::Date),
    ("last_date", Column::Date),
    ("first_active_date", Column::Date),
    ("last_active_date", Column::Date),
];
const LINKS: &[(&str, Column)] =
    &[("anonymous_id", Column::Id), ("user_id", Column::Id), ("first_time", Column::Time), ("last_time", Column::Time)];
const IDENTITY: &[(&str, Column)] =
    &[("anonymous_id", Column::Id), ("user_id", Column::Id), ("first_seen", Column::Time)];
const FIRST_SEEN: &[(&str, Column)] = &[
    ("source", Column::Id),
    ("user_key", Column::Id),
    ("first_seen_date", Column::Date),
    ("last_active_date", Column::Date),
];

/// The state tables and their columns.
const STATE_TABLES: &[(&str, &[(&str, Column)])] = &[
    ("day_keys", DAY_KEYS),
    (
        "day_pages",
        &[
            ("day", Column::Date),
            ("source", Column::Id),
            ("raw_key", Column::Id),
            ("path", Column::Text),
            ("page_views", Column::Big),
        ],
    ),
    (
        "day_calls",
        &[
            ("day", Column::Date),
            ("source", Column::Id),
            ("raw_key", Column::Id),
            ("type", Column::Id),
            ("event", Column::Text),
            ("calls", Column::Big),
        ],
    ),
    (
        "day_sessions",
        &[
            ("day", Column::Date),
            ("source", Column::Id),
            ("raw_key", Column::Id),
            ("started", Column::Big),
            ("ended", Column::Big),
            ("events", Column::Big),
        ],
    ),
    (
        "day_traits",
        &[
            ("day", Column::Date),
            ("source", Column::Id),
            ("raw_key", Column::Id),
            ("is_user", Column::Flag),
            ("traits", Column::Text),
            ("event_micros", Column::Big),
            ("received_micros", Column::Big),
        ],
    ),
    (
        "day_violations",
        &[
            ("day", Column::Date),
            ("source", Column::Id),
            ("event", Column::Text),
            ("property", Column::Text),
            ("kind", Column::Id),
            ("events", Column::Big),
        ],
    ),
    (
        "day_links",
        &[
            ("day", Column::Date),
            ("anonymous_id", Column::Id),
            ("user_id", Column::Id),
            ("first_time", Column::Time),
            ("last_time", Column::Time),
        ],
    ),
    ("keys", KEYS),
    ("links", LINKS),
    ("identity_map", IDENTITY),
    ("previous_identity_map", IDENTITY),
    ("first_seen", FIRST_SEEN),
    ("previous_first_seen", FIRST_SEEN),
    ("offsets", &[("n", Column::Int)]),
    ("lake_days", &[("day", Column::Date), ("fingerprint", Column::Id)]),
    ("pending", &[("step", Column::Id), ("key_date", Column::Date)]),
    (
        "settings",
        &[("time_zone", Column::Id), ("min_event_date", Column::Id), ("session_timeout_minutes", Column::Int)],
    ),
];

/// PostgreSQL's copy of the events: the columns `load_events.sql` reads, in its order.
const EVENTS: &[(&str, Column)] = &[
    ("source", Column::Id),
    ("dt", Column::Date),
    ("hour", Column::Int),
    ("message_id", Column::Id),
    ("type", Column::Id),
    ("event", Column::Text),
    ("name", Column::Text),
    ("user_id", Column::Id),
    ("anonymous_id", Column::Id),
    ("previous_id", Column::Id),
    ("\"timestamp\"", Column::Time),
    ("received_at", Column::Time),
    ("context_page_path", Column::Text),
    ("properties", Column::Text),
    ("traits", Column::Text),
    ("violations", Column::Text),
];

/// The day summaries: table, query. Each query's columns follow the table's `day`.
const DAY_SUMMARIES: [(&str, Query); 7] = [
    ("day_keys", sql::DAY_KEYS),
    ("day_pages", sql::DAY_PAGES),
    ("day_calls", sql::DAY_CALLS),
    ("day_sessions", sql::DAY_SESSIONS),
    ("day_traits", sql::DAY_TRAITS),
    ("day_links", sql::DAY_LINKS),
    ("day_violations", sql::DAY_VIOLATIONS),
];

/// Rows per `INSERT … VALUES` of the bookkeeping.
const VALUES_PER_INSERT: usize = 500;

fn column_type(column: Column, dialect: Dialect) -> &'static str {
    match (column, dialect) {
        (Column::Date, _) => "DATE",
        (Column::Time, _) => "TIMESTAMP",
        (Column::Big, _) => "BIGINT",
        (Column::Int, _) => "INTEGER",
        (Column::Flag, _) => "BOOLEAN",
        (Column::Id | Column::Text, Dialect::Postgres | Dialect::DataFusion) => "TEXT",
        (Column::Id, Dialect::Redshift) => "VARCHAR(1024)",
        (Column::Text, Dialect::Redshift) => "VARCHAR(65535)",
    }
}

fn create_table(qualified: &str, columns: &[(&str, Column)], dialect: Dialect) -> String {
    let columns: Vec<String> = columns.iter().map(|(name, c)| format!("{name} {}", column_type(*c, dialect))).collect();
    format!("CREATE TABLE IF NOT EXISTS {qualified} ({})", columns.join(", "))
}

/// The run in the warehouse.
#[derive(Debug)]
pub struct WarehouseEngine {
    config: BatchConfig,
    store: LakeStore,
    session: Session,
    dialect: Dialect,
    schema: String,
    state: String,
    /// PostgreSQL: the lake, to copy the events of the days read.
    lake: Option<LakeView>,
}

impl WarehouseEngine {
    /// Connects, and creates the schemas and tables that are missing.
    pub async fn open(config: BatchConfig) -> Result<WarehouseEngine, BatchError> {
        config.validate()?;
        let store = open_store(&config).await?;
        let schema = checked_schema(&config.warehouse.schema)?.to_owned();
        let state = format!("{schema}_state");
        let (session, dialect, lake) = match config.warehouse.kind {
            WarehouseKind::Postgres => {
                let url = config.warehouse.postgres_url.as_deref().unwrap_or_default();
                // Creates the metrics tables and the columns they gained, as publishing does.
                let client =
                    super::postgres::Postgres::connect(url, &schema, &config.trait_columns).await?.into_client();
                let lake = LakeView::open(&config)?;
                lake.register_events().await?;
                (Session::Postgres(client), Dialect::Postgres, Some(lake))
            }
            WarehouseKind::Redshift => {
                let client = super::redshift::data_api_client(&config.warehouse.redshift).await;
                (
                    Session::Redshift(DataApiSession::new(client, config.warehouse.redshift.clone())),
                    Dialect::Redshift,
                    None,
                )
            }
            WarehouseKind::None => {
                return Err(BatchError::Request("the warehouse engine needs a warehouse".into()));
            }
        };
        let mut engine = WarehouseEngine { config, store, session, dialect, schema, state, lake };
        engine.create_tables().await?;
        Ok(engine)
    }

    async fn create_tables(&mut self) -> Result<(), BatchError> {
        let (schema, state, dialect) = (self.schema.clone(), self.state.clone(), self.dialect);
        let mut statements = match dialect {
            Dialect::Redshift => create_tables_sql(dialect, &schema, &self.config.trait_columns),
            _ => Vec::new(),
        };
        statements.push(format!("CREATE SCHEMA IF NOT EXISTS {state}"));
        for (name, columns) in STATE_TABLES {
            statements.push(create_table(&format!("{state}.{name}"), columns, dialect));
        }
        match &self.config.warehouse.kind {
            WarehouseKind::Redshift => {
                let events = &self.config.warehouse.redshift.events_table;
                // Late binding: the external table is the catalog's, not the database's. Created
                // once: the DAG's steps open the engine side by side, and concurrent DDL on one
                // view fails in Redshift.
                let exists = format!(
                    "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = '{state}' AND c.relname = 'events'"
                );
                for statement in std::mem::take(&mut statements) {
                    self.session.execute(&statement).await?;
                }
                if first_number(&self.session.query(&exists).await?) == Some(0) {
                    statements
                        .push(format!("CREATE VIEW {state}.events AS SELECT * FROM {events} WITH NO SCHEMA BINDING"));
                }
            }
            _ => {
                statements.push(create_table(&format!("{state}.events"), EVENTS, dialect));
                // A copy made before the lake had the column.
                statements.push(format!("ALTER TABLE {state}.events ADD COLUMN IF NOT EXISTS violations TEXT"));
                statements.push(format!("CREATE INDEX IF NOT EXISTS events_hours ON {state}.events (dt, hour)"));
            }
        }
        for statement in &statements {
            self.session.execute(statement).await?;
        }
        let offsets = self.session.query(&format!("SELECT COUNT(*) FROM {state}.offsets")).await?;
        if first_number(&offsets) != Some(RETENTION_DAYS + 1) {
            let values: Vec<String> = (0..=RETENTION_DAYS).map(|n| format!("({n})")).collect();
            self.session
                .transaction(&[
                    format!("DELETE FROM {state}.offsets"),
                    format!("INSERT INTO {state}.offsets VALUES {}", values.join(", ")),
                ])
                .await?;
        }
        // The queries name the state's tables bare; the metrics tables come second.
        self.session.execute(&format!("SET search_path TO {state}, {schema}")).await?;
        Ok(())
    }

    /// The committed state's bookkeeping, as the DataFusion engine's manifest (`None`: no state).
    async fn manifest(&mut self) -> Result<Option<Manifest>, BatchError> {
        let settings =
            self.session.query("SELECT time_zone, min_event_date, session_timeout_minutes FROM settings").await?;
        let Some([Some(time_zone), Some(min_event_date), Some(timeout)]) =
            settings.first().map(|row| [row[0].clone(), row[1].clone(), row[2].clone()])
        else {
            return Ok(None);
        };
        let mut days = BTreeMap::new();
        for row in self.session.query("SELECT day, fingerprint FROM lake_days").await? {
            if let (Some(date), Some(print)) = (parse_date(&row[0]), row[1].clone()) {
                days.insert(date, print);
            }
        }
        let mut pending: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
        for row in self.session.query("SELECT step, key_date FROM pending ORDER BY step, key_date").await? {
            if let (Some(step), Some(date)) = (row[0].clone(), parse_date(&row[1])) {
                pending.entry(step).or_default().push(date);
            }
        }
        let last_active_day = self.last_active_day().await?;
        Ok(Some(Manifest {
            version: 0,
            settings: StateSettings {
                time_zone,
                min_event_date,
                session_timeout_minutes: timeout.parse().unwrap_or_default(),
            },
            days,
            last_active_day,
            pending,
        }))
    }

    async fn last_active_day(&mut self) -> Result<Option<NaiveDate>, BatchError> {
        let rows = self.session.query("SELECT MAX(last_active_date) FROM keys").await?;
        Ok(rows.first().and_then(|row| parse_date(&row[0])))
    }

    /// Plans as the DataFusion engine does, from the warehouse's state.
    pub async fn plan(&mut self, request: &RunRequest) -> Result<Plan, BatchError> {
        let manifest = self.manifest().await?;
        plan_from(&self.config, &self.store, request, manifest).await
    }

    /// Deletes the rows of `ids` from the metrics tables keyed by user (the state is rebuilt by
    /// the run that follows, which is `--full`).
    pub async fn erase(&mut self, ids: &[String]) -> Result<(), BatchError> {
        let statements = erase_sql(&self.schema, ids, self.dialect);
        Ok(self.session.transaction(&statements).await?)
    }

    pub async fn run(&mut self, plan: &Plan, sources: Option<&[String]>) -> Result<Vec<StepReport>, BatchError> {
        let mut reports = Vec::new();
        let mut manifest = if plan.update_state {
            let started = Instant::now();
            reset_peak_rss();
            let manifest = self.update_state(plan).await.map_err(|e| step_error(STATE_STEP, e))?;
            reports.push(StepReport::state(plan.read.len(), started));
            manifest
        } else {
            plan.previous.clone().ok_or_else(|| BatchError::Request("no state".into()))?
        };
        let selected: Vec<Table> = plan.steps.iter().map(|s| s.table).collect();
        let (first, last) = bounds(Some(&manifest), &plan.range, plan.last);
        plan::add_pending(&mut manifest, &selected, &plan.range, first, last);
        for table in Table::ALL.into_iter().filter(|t| selected.contains(t)) {
            let keys = match table.replace() {
                Replace::ByDate(_) => Keys::Dates(manifest.pending(table.name())),
                _ => Keys::Whole,
            };
            let report = self
                .run_step(table, &keys, sources, manifest.last_active_day)
                .await
                .map_err(|e| step_error(table.name(), e))?;
            tracing::info!(
                step = table.name(),
                keys = report.keys,
                rows = report.rows,
                seconds = report.seconds,
                "step done"
            );
            reports.push(report);
        }
        Ok(reports)
    }

    /// Summarises the days read, merges them into the state and commits it with the key dates
    /// each table has to recompute; returns the new bookkeeping.
    async fn update_state(&mut self, plan: &Plan) -> Result<Manifest, BatchError> {
        let started = Instant::now();
        if plan.previous.is_none() {
            // A rebuild: nothing of an earlier state may survive it.
            let mut statements: Vec<String> = STATE_TABLES
                .iter()
                .filter(|(name, _)| *name != "offsets")
                .map(|(name, _)| format!("DELETE FROM {name}"))
                .collect();
            if self.lake.is_some() {
                statements.push("DELETE FROM events".into());
            }
            self.session.transaction(&statements).await?;
        }
        // Redshift: the partitions to add are per source; the sources are listed once a run.
        let sources = match self.dialect {
            Dialect::Redshift => self.lake_sources().await?,
            _ => Vec::new(),
        };
        for date in plan.read.iter() {
            self.summarise_day(date, &sources).await?;
        }
        tracing::debug!(days = plan.read.len(), seconds = started.elapsed().as_secs_f64(), "days summarised");
        let read_days = plan.read.sql_predicate("day");
        let statements = [
            format!("CREATE TEMP TABLE new_keys AS SELECT * FROM day_keys WHERE {read_days}"),
            format!(
                "CREATE TEMP TABLE new_links AS SELECT anonymous_id, user_id, first_time, last_time FROM day_links \
                 WHERE {read_days}"
            ),
            format!("CREATE TEMP TABLE merged_keys AS {}", self.text(&sql::MERGE_KEYS, &Params::new())?),
            format!("CREATE TEMP TABLE merged_links AS {}", self.text(&sql::MERGE_LINKS, &Params::new())?),
            "DELETE FROM keys".into(),
            "INSERT INTO keys SELECT * FROM merged_keys".into(),
            "DELETE FROM links".into(),
            "INSERT INTO links SELECT * FROM merged_links".into(),
            "DELETE FROM previous_identity_map".into(),
            "INSERT INTO previous_identity_map SELECT * FROM identity_map".into(),
            "DELETE FROM previous_first_seen".into(),
            "INSERT INTO previous_first_seen SELECT * FROM first_seen".into(),
            "DELETE FROM identity_map".into(),
            format!("INSERT INTO identity_map {}", self.text(&sql::IDENTITY_MAP, &Params::new())?),
            "DELETE FROM first_seen".into(),
            format!("INSERT INTO first_seen {}", self.text(&sql::FIRST_SEEN, &Params::new())?),
        ];
        self.session.execute("BEGIN").await?;
        let result = self.merge(plan, &statements).await;
        match result {
            Ok(manifest) => {
                self.session.execute("COMMIT").await?;
                tracing::info!(read = plan.read.len(), seconds = started.elapsed().as_secs_f64(), "state updated");
                Ok(manifest)
            }
            Err(error) => {
                let _ = self.session.execute("ROLLBACK").await;
                Err(error)
            }
        }
    }

    /// Inside the state's transaction: the merge, what it changed, and the bookkeeping.
    async fn merge(&mut self, plan: &Plan, statements: &[String]) -> Result<Manifest, BatchError> {
        for statement in statements {
            self.session.execute(statement).await?;
        }
        let mut changed = plan.read.clone();
        let spans = self.text(&sql::AFFECTED_SPANS, &Params::new())?;
        for row in self.session.query(&spans).await? {
            if let (Some(first), Some(last)) = (parse_date(&row[0]), parse_date(&row[1])) {
                changed = changed.union(&Dates::range(first, last));
            }
        }
        let cohorts = self.text(&sql::RETENTION_COHORTS, &Params::new())?;
        let cohorts = self.session.query(&cohorts).await?;
        let retention_cohorts = Dates::from_iter(cohorts.iter().filter_map(|row| parse_date(&row[0])));
        let mut days = plan.previous.as_ref().map(|m| m.days.clone()).unwrap_or_default();
        for date in plan.read.iter() {
            match plan.lake.get(&date) {
                Some(print) => days.insert(date, print.clone()),
                None => days.remove(&date),
            };
        }
        let mut manifest = Manifest {
            version: 0,
            settings: StateSettings::of(&self.config),
            days,
            last_active_day: self.last_active_day().await?,
            pending: plan.previous.as_ref().map(|m| m.pending.clone()).unwrap_or_default(),
        };
        let (first, last) = bounds(Some(&manifest), &plan.read, plan.last);
        plan::add_pending(&mut manifest, &Table::ALL, &changed, first, last);
        manifest.add_pending(Table::Retention.name(), &retention_cohorts);

        let quote = |text: &str| sql::quoted(text, self.dialect);
        let mut bookkeeping = vec![
            "DELETE FROM lake_days".to_owned(),
            "DELETE FROM pending".to_owned(),
            "DELETE FROM settings".to_owned(),
            format!(
                "INSERT INTO settings VALUES ({}, {}, {})",
                quote(&manifest.settings.time_zone),
                quote(&manifest.settings.min_event_date),
                manifest.settings.session_timeout_minutes
            ),
        ];
        let day_rows: Vec<String> =
            manifest.days.iter().map(|(date, print)| format!("(DATE '{}', {})", day(*date), quote(print))).collect();
        bookkeeping.extend(inserts("lake_days", &day_rows));
        let pending_rows: Vec<String> = manifest
            .pending
            .iter()
            .flat_map(|(step, dates)| dates.iter().map(move |date| format!("({}, DATE '{}')", quote(step), day(*date))))
            .collect();
        bookkeeping.extend(inserts("pending", &pending_rows));
        for table in ["new_keys", "new_links", "merged_keys", "merged_links"] {
            bookkeeping.push(format!("DROP TABLE {table}"));
        }
        for statement in &bookkeeping {
            self.session.execute(statement).await?;
        }
        Ok(manifest)
    }

    /// Replaces one day's summaries (and on PostgreSQL first its events) in one transaction.
    async fn summarise_day(&mut self, date: NaiveDate, sources: &[String]) -> Result<(), BatchError> {
        let params = day_read_params(&self.config, date)?;
        if self.dialect == Dialect::Redshift {
            self.add_partitions(date, sources).await?;
        }
        let timeout = i64::from(self.config.session_timeout_minutes) * 60_000_000;
        let mut statements = vec![
            format!("CREATE TEMP TABLE day_read AS {}", self.text(&sql::DAY_READ, &params)?),
            format!("CREATE TEMP TABLE day_events AS {}", self.text(&sql::DAY_EVENTS, &Params::new())?),
        ];
        if self.dialect == Dialect::Postgres {
            statements.push("ANALYZE day_events".into());
        }
        for (table, query) in DAY_SUMMARIES {
            let values = Params::new().int("timeout", timeout);
            statements.push(format!("DELETE FROM {table} WHERE day = DATE '{}'", day(date)));
            statements.push(format!(
                "INSERT INTO {table} SELECT DATE '{}' AS day, summary.* FROM ({}) AS summary",
                day(date),
                self.text(&query, &values)?
            ));
        }
        statements.push("DROP TABLE day_read".into());
        statements.push("DROP TABLE day_events".into());
        self.session.execute("BEGIN").await?;
        let result = async {
            if self.lake.is_some() {
                self.copy_events(&params).await?;
            }
            for statement in &statements {
                self.session.execute(statement).await?;
            }
            self.session.execute("COMMIT").await?;
            Ok::<(), BatchError>(())
        }
        .await;
        if result.is_err() {
            let _ = self.session.execute("ROLLBACK").await;
        }
        result
    }

    /// PostgreSQL: replaces the copied events of the day's hours by the lake's.
    async fn copy_events(&mut self, params: &Params) -> Result<(), BatchError> {
        let Some(lake) = &self.lake else { return Ok(()) };
        let rows = lake.run(&sql::LOAD_EVENTS, params.clone()).await?;
        let clear = Query {
            name: "clear_events",
            text: "DELETE FROM events WHERE lake_hours_between(dt, hour, $first_hour, $last_hour)",
        };
        let clear = clear.with_literals(self.dialect, params).map_err(crate::lakeview::LakeViewError::from)?;
        self.session.execute(&clear).await?;
        if let Session::Postgres(client) = &self.session {
            let columns: Vec<&str> = EVENTS.iter().map(|(name, _)| *name).collect();
            let copy = format!("COPY {}.events ({}) FROM STDIN (FORMAT binary)", self.state, columns.join(", "));
            let sink = client.copy_in(&copy).await.map_err(WarehouseError::from)?;
            let copied = super::postgres::write_binary(sink, &rows).await?;
            tracing::debug!(copied, "events copied in");
        }
        Ok(())
    }

    /// The sources with events in the lake (its `source=` folders).
    async fn lake_sources(&self) -> Result<Vec<String>, BatchError> {
        let folders = self.store.list_folders(&format!("{EVENTS_PREFIX}/")).await.map_err(WarehouseError::from)?;
        Ok(folders
            .iter()
            .filter_map(|folder| folder.trim_end_matches('/').rsplit_once("source=").map(|(_, s)| s.to_owned()))
            .collect())
    }

    /// Redshift: the external table's partitions of the hours `date` spans, per source (external
    /// DDL runs outside transactions).
    async fn add_partitions(&mut self, date: NaiveDate, sources: &[String]) -> Result<(), BatchError> {
        let (start, end) = day_bounds(date, self.config.tz())?;
        let RedshiftConfig { events_table, .. } = &self.config.warehouse.redshift;
        let (schema, table) = events_table.split_once('.').unwrap_or(("inlet_lake", "events"));
        let statements = inlet_lake::ddl::add_partitions(self.store.location(), schema, table, sources, start, end);
        for statement in statements.lines().filter(|l| !l.is_empty()) {
            self.session.execute(statement.trim_end_matches(';')).await?;
        }
        Ok(())
    }

    async fn run_step(
        &mut self,
        table: Table,
        keys: &Keys,
        sources: Option<&[String]>,
        last_active_day: Option<NaiveDate>,
    ) -> Result<StepReport, BatchError> {
        let started = Instant::now();
        let columns: Vec<String> = table.columns(&self.config.trait_columns).into_iter().map(|c| c.name).collect();
        let target = format!("{}.{}", self.schema, table.name());
        let only_sources = match sources {
            Some(sources) if table != Table::IdentityMap => {
                let quoted: Vec<String> = sources.iter().map(|s| sql::quoted(s, self.dialect)).collect();
                format!(" WHERE step.source IN ({})", quoted.join(", "))
            }
            _ => String::new(),
        };
        let mut statements = Vec::new();
        let mut key_count = 0;
        match keys {
            Keys::Whole => {
                key_count = 1;
                let select = match table {
                    Table::Users => {
                        let traits = match self.dialect {
                            Dialect::Redshift => sql::MERGED_TRAITS_REDSHIFT,
                            _ => sql::MERGED_TRAITS_POSTGRES,
                        };
                        statements.push(format!(
                            "CREATE TEMP TABLE merged_traits AS {}",
                            self.text(&traits, &Params::new())?
                        ));
                        let mut fields = vec![
                            "u.user_id".to_owned(),
                            "u.source".into(),
                            "u.first_seen".into(),
                            "u.last_seen".into(),
                            "t.traits".into(),
                        ];
                        for name in &self.config.trait_columns {
                            let value = sql::json_text("t.traits", &sql::quoted(name, self.dialect), self.dialect);
                            fields.push(format!("{value} AS {}", trait_column_name(name)));
                        }
                        format!(
                            "SELECT {} FROM ({}) AS u LEFT JOIN merged_traits t ON t.user_key = u.user_id AND t.source = u.source",
                            fields.join(", "),
                            self.text(&sql::USERS, &Params::new())?
                        )
                    }
                    _ => "SELECT anonymous_id, user_id, first_seen FROM identity_map".to_owned(),
                };
                statements.push(delete_sql(&self.schema, table, keys, sources));
                statements.push(format!(
                    "INSERT INTO {target} ({cols}) SELECT {cols} FROM ({select}) AS step{only_sources}",
                    cols = columns.join(", ")
                ));
                if table == Table::Users {
                    statements.push("DROP TABLE merged_traits".into());
                }
            }
            Keys::Dates(dates) => {
                let timeout = i64::from(self.config.session_timeout_minutes) * 60_000_000;
                for chunk in key_chunks(table, dates) {
                    let (Some(&from), Some(&to)) = (chunk.first(), chunk.last()) else { continue };
                    let Some((query, params)) = dated_query(table, from, to, last_active_day, true, timeout) else {
                        continue;
                    };
                    key_count += chunk.len();
                    if table == Table::ActiveUsers {
                        let days: Vec<String> =
                            Dates::range(from, to).iter().map(|d| format!("(DATE '{}')", day(d))).collect();
                        statements.push("CREATE TEMP TABLE calendar (day DATE)".into());
                        statements.extend(inserts("calendar", &days));
                    }
                    statements.push(delete_sql(&self.schema, table, &Keys::Dates(Dates::from_iter(chunk)), sources));
                    statements.push(format!(
                        "INSERT INTO {target} ({cols}) SELECT {cols} FROM ({select}) AS step{only_sources}",
                        cols = columns.join(", "),
                        select = self.text(&query, &params)?
                    ));
                    if table == Table::ActiveUsers {
                        statements.push("DROP TABLE calendar".into());
                    }
                }
            }
        }
        if sources.is_none() {
            statements.push(format!("DELETE FROM pending WHERE step = {}", sql::quoted(table.name(), self.dialect)));
        }
        reset_peak_rss();
        self.session.transaction(&statements).await?;
        let slice = delete_sql(&self.schema, table, keys, sources);
        let count = slice.replacen("DELETE FROM", "SELECT COUNT(*) FROM", 1);
        let rows = first_number(&self.session.query(&count).await?).unwrap_or_default();
        Ok(StepReport {
            step: table.name(),
            keys: key_count,
            rows: u64::try_from(rows).unwrap_or_default(),
            files: 0,
            bytes: 0,
            published: Some(u64::try_from(rows).unwrap_or_default()),
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        })
    }

    /// A query of the job in the warehouse's dialect, values as literals.
    fn text(&self, query: &Query, params: &Params) -> Result<String, BatchError> {
        Ok(query.with_literals(self.dialect, params).map_err(crate::lakeview::LakeViewError::from)?)
    }
}

fn step_error(step: &'static str, error: BatchError) -> BatchError {
    BatchError::Step { step, source: Box::new(error) }
}

/// `INSERT INTO table VALUES …` of `rows` (each `(…)`), a few hundred at a time.
fn inserts(table: &str, rows: &[String]) -> Vec<String> {
    rows.chunks(VALUES_PER_INSERT).map(|chunk| format!("INSERT INTO {table} VALUES {}", chunk.join(", "))).collect()
}

fn parse_date(cell: &Option<String>) -> Option<NaiveDate> {
    cell.as_deref().and_then(|text| NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok())
}

fn first_number(rows: &Rows) -> Option<i64> {
    rows.first().and_then(|row| row.first()).and_then(|cell| cell.as_deref()).and_then(|text| text.parse().ok())
}
