//! One run over one database: every selected table read in one snapshot, then each committed.
//!
//! Order of work: previous manifests are read before connecting (the replica is not held for
//! lake listings); the snapshot is opened; each table's columns are planned from the catalog
//! (a type without a mapping, or a retype not allowed, fails that table before it is read),
//! its rows streamed to Parquet parts; the snapshot is closed as soon as the last table is
//! read; then each table's day is committed (`manifest` has the invariants). A value the lake
//! cannot hold fails the run before anything is committed; tables already read are not
//! committed either, so a run commits only what it read whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use inlet_lake::store::LakeStore;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::columns::{Column, ValueError};
use crate::config::{DatabaseConfig, Engine, Mode, TableConfig};
use crate::manifest::{self, ColumnEntry, FileEntry, Manifest, SchemaChange};
use crate::parts::PartWriter;
use crate::types::{self, Mapping, TextCast};
use crate::{TablesError, mysql, postgres};

/// What to copy.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// The day the copy is filed under (`dt=`).
    pub date: NaiveDate,
    /// Tables of the database to copy (default: all configured).
    pub tables: Option<Vec<String>>,
}

/// The outcome of one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub database: String,
    pub table: String,
    pub date: NaiveDate,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub watermark: Option<String>,
    pub added_columns: Vec<String>,
    pub dropped_columns: Vec<String>,
    pub nulled_values: BTreeMap<String, u64>,
    pub seconds: f64,
    /// Why the table was not committed.
    pub error: Option<String>,
}

/// A column of the source table, as its catalog describes it.
#[derive(Debug, Clone)]
pub struct SourceColumn {
    pub name: String,
    pub type_name: String,
    /// PostgreSQL's `typcategory` (`A` arrays, `E` enums).
    pub category: Option<char>,
}

/// A column to copy: where it comes from and how it is read.
#[derive(Debug, Clone)]
pub struct PlannedColumn {
    pub name: String,
    /// The database's type, or the configured cast.
    pub source_type: String,
    pub mapping: Mapping,
    pub cast: Option<String>,
    pub hashed: bool,
}

impl PlannedColumn {
    /// What the column is in the lake: hashed columns are text.
    pub fn lake_kind(&self) -> types::Kind {
        if self.hashed { types::Kind::Text } else { self.mapping.kind }
    }

    /// The lake type's name, as manifests record it.
    pub fn lake_type(&self) -> String {
        self.lake_kind().name()
    }
}

/// The columns to copy, in the source's order, or why the table cannot be copied.
pub fn plan_columns(
    engine: Engine,
    table: &TableConfig,
    source: &[SourceColumn],
) -> Result<Vec<PlannedColumn>, String> {
    let named = table.columns.iter().flatten().chain(&table.exclude).chain(&table.hash).chain(table.cast.keys());
    for name in named.chain(&table.primary_key).chain(table.cursor.iter()) {
        if !source.iter().any(|c| &c.name == name) {
            return Err(format!("no column {name:?} in the source table"));
        }
    }
    let mut planned = Vec::new();
    for column in source {
        let wanted = match &table.columns {
            Some(columns) => columns.contains(&column.name),
            None => !table.exclude.contains(&column.name),
        };
        if !wanted {
            continue;
        }
        let cast = table.cast.get(&column.name).cloned();
        let (type_name, category) = match &cast {
            Some(target) => (target.clone(), None),
            None => (column.type_name.clone(), column.category),
        };
        let Some(mapping) = types::map(engine, &type_name, category) else {
            let how = match engine {
                Engine::Postgres => "text",
                Engine::Mysql => "char",
            };
            return Err(format!(
                "column {:?} has type {type_name:?}, which has no lake type: cast it, e.g. cast = {{ {} = \"{how}\" }}",
                column.name, column.name
            ));
        };
        planned.push(PlannedColumn {
            name: column.name.clone(),
            source_type: type_name,
            mapping,
            cast,
            hashed: table.hash.contains(&column.name),
        });
    }
    if planned.is_empty() {
        return Err("no columns to copy".into());
    }
    Ok(planned)
}

/// The SQL expression that reads `column` (identifiers quoted by `quote`).
pub fn select_expression(engine: Engine, column: &PlannedColumn) -> String {
    let quoted = quote(engine, &column.name);
    let value = match &column.cast {
        Some(target) => format!("CAST({quoted} AS {target})"),
        None => quoted,
    };
    match engine {
        Engine::Postgres if column.hashed => format!("({value})::text"),
        Engine::Postgres => match column.mapping.as_text {
            TextCast::No => value,
            TextCast::Text => format!("({value})::text"),
            TextCast::ArrayJson => format!("array_to_json({value})::text"),
        },
        Engine::Mysql => value,
    }
}

pub fn quote(engine: Engine, identifier: &str) -> String {
    match engine {
        Engine::Postgres => format!("\"{}\"", identifier.replace('"', "\"\"")),
        Engine::Mysql => format!("`{}`", identifier.replace('`', "``")),
    }
}

/// A string literal (the watermark, as the database printed it).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The rows being read, batch by batch, to the part writer (a task of its own, so encoding
/// runs beside decoding; two batches in flight at most).
pub struct TableSink {
    columns: Vec<Column>,
    names: Arc<[String]>,
    schema: SchemaRef,
    batch_rows: usize,
    in_batch: usize,
    batches: mpsc::Sender<RecordBatch>,
    writer: tokio::task::JoinHandle<Result<Vec<FileEntry>, TablesError>>,
}

impl std::fmt::Debug for TableSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSink").field("names", &self.names).field("in_batch", &self.in_batch).finish()
    }
}

impl TableSink {
    fn new(
        planned: &[PlannedColumn],
        schema: SchemaRef,
        zone: Tz,
        salt: &Arc<[u8]>,
        batch_rows: usize,
        writer: PartWriter,
    ) -> TableSink {
        let columns = planned
            .iter()
            .map(|c| Column::new(c.mapping.kind, Some(zone), c.hashed.then(|| Arc::clone(salt)), batch_rows))
            .collect();
        let (batches, mut receiver) = mpsc::channel::<RecordBatch>(2);
        let writer = tokio::spawn(async move {
            let mut writer = writer;
            while let Some(batch) = receiver.recv().await {
                if let Err(e) = writer.write(batch).await {
                    writer.abort().await;
                    return Err(e);
                }
            }
            writer.finish().await
        });
        TableSink {
            columns,
            names: planned.iter().map(|c| c.name.clone()).collect(),
            schema,
            batch_rows,
            in_batch: 0,
            batches,
            writer,
        }
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn column(&mut self, index: usize) -> &mut Column {
        &mut self.columns[index]
    }

    /// The message of a value error in column `index`.
    pub fn value_error(&self, index: usize, error: ValueError) -> String {
        format!("column {:?}: {}", self.names[index], error.0)
    }

    pub async fn end_row(&mut self) -> Result<(), String> {
        self.in_batch += 1;
        if self.in_batch >= self.batch_rows { self.send().await } else { Ok(()) }
    }

    async fn send(&mut self) -> Result<(), String> {
        self.in_batch = 0;
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|e| e.to_string())?;
        if self.batches.send(batch).await.is_err() {
            // The writer stopped: its error is what `finish` reports.
            return Err("writing the parts failed".into());
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<(Vec<FileEntry>, Vec<u64>), String> {
        let sent = if self.in_batch > 0 { self.send().await } else { Ok(()) };
        let nulled = self.columns.iter().map(|c| c.nulled).collect();
        drop(self.batches);
        let files = self.writer.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        sent?;
        Ok((files, nulled))
    }
}

/// What a source does within its snapshot.
pub(crate) enum Source {
    Postgres(postgres::PostgresSource),
    Mysql(mysql::MysqlSource),
}

impl Source {
    async fn describe(&mut self, schema: Option<&str>, table: &str) -> Result<Vec<SourceColumn>, String> {
        match self {
            Source::Postgres(s) => s.describe(schema.unwrap_or("public"), table).await,
            Source::Mysql(s) => s.describe(schema, table).await,
        }
    }

    async fn max_cursor(&mut self, from: &str, condition: &str, cursor: &str) -> Result<Option<String>, String> {
        match self {
            Source::Postgres(s) => s.max_cursor(from, condition, cursor).await,
            Source::Mysql(s) => s.max_cursor(from, condition, cursor).await,
        }
    }

    async fn stream(&mut self, select: &str, sink: &mut TableSink) -> Result<(), String> {
        match self {
            Source::Postgres(s) => s.stream(select, sink).await,
            Source::Mysql(s) => s.stream(select, sink).await,
        }
    }

    async fn close(self) {
        match self {
            Source::Postgres(s) => s.close().await,
            Source::Mysql(s) => s.close().await,
        }
    }
}

#[derive(Debug)]
struct Staged {
    manifest: Manifest,
    change: SchemaChange,
    seconds: f64,
}

/// Copies `request`'s tables of database `name` into the lake under `request.date`.
pub async fn copy_database(
    store: &LakeStore,
    name: &str,
    config: &DatabaseConfig,
    request: &CopyRequest,
) -> Result<Vec<TableReport>, TablesError> {
    read_database(store, name, config, request).await?.commit().await
}

/// A run whose tables are read and uploaded but not committed: dropped, it leaves the lake as
/// it was (its parts unlisted, deleted by the next commit of the day).
#[derive(Debug)]
pub struct ReadRun {
    store: LakeStore,
    database: String,
    date: NaiveDate,
    staged: Vec<Result<Staged, (String, String)>>,
}

impl ReadRun {
    /// Commits each table read whole; reports every table.
    pub async fn commit(self) -> Result<Vec<TableReport>, TablesError> {
        let mut reports = Vec::new();
        for result in self.staged {
            match result {
                Ok(done) => {
                    commit(&self.store, &done.manifest).await?;
                    reports.push(report_of(&done));
                }
                Err((table, message)) => reports.push(TableReport {
                    database: self.database.clone(),
                    table,
                    date: self.date,
                    error: Some(message),
                    ..TableReport::default()
                }),
            }
        }
        Ok(reports)
    }
}

/// Reads `request`'s tables in one snapshot and uploads their parts; commits nothing.
pub async fn read_database(
    store: &LakeStore,
    name: &str,
    config: &DatabaseConfig,
    request: &CopyRequest,
) -> Result<ReadRun, TablesError> {
    config.validate(name)?;
    let selected: Vec<(&String, &TableConfig)> = match &request.tables {
        None => config.tables.iter().collect(),
        Some(wanted) => {
            for table in wanted {
                if !config.tables.contains_key(table) {
                    return Err(TablesError::Config(format!("databases.{name}: no table {table:?} configured")));
                }
            }
            config.tables.iter().filter(|(t, _)| wanted.contains(t)).collect()
        }
    };
    let zone: Tz = config.time_zone.parse().map_err(|_| TablesError::Config(format!("bad time_zone in {name}")))?;
    let salt: Arc<[u8]> = Arc::from(config.salt(name)?);
    let run_id = format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%S"), &uuid::Uuid::new_v4().simple().to_string()[..8]);

    let mut latest: BTreeMap<&str, Option<Manifest>> = BTreeMap::new();
    for (table, table_config) in &selected {
        let previous = latest_manifest(store, name, table).await?;
        if let (Mode::Incremental, Some(previous)) = (table_config.mode, &previous)
            && previous.date > request.date
        {
            return Err(TablesError::Table {
                database: name.into(),
                table: (*table).clone(),
                message: format!(
                    "{} is before the last copied day {}: an incremental table re-runs only its latest day",
                    request.date, previous.date
                ),
            });
        }
        latest.insert(table.as_str(), previous);
    }

    let password = config.password(name)?;
    let connect_error = |message: String| TablesError::Connect { database: name.into(), message };
    let mut source = match config.engine {
        Engine::Postgres => {
            Source::Postgres(postgres::PostgresSource::open(config, password).await.map_err(connect_error)?)
        }
        Engine::Mysql => Source::Mysql(mysql::MysqlSource::open(config, password).await.map_err(connect_error)?),
    };
    let snapshot_at = Utc::now();
    let mut staged: Vec<Result<Staged, (String, String)>> = Vec::new();
    let mut failure = None;
    for (table, table_config) in &selected {
        let started = Instant::now();
        let previous = latest.get(table.as_str()).cloned().flatten();
        let context =
            CopyContext { store, database: name, config, zone: &zone, salt: &salt, run_id: &run_id, snapshot_at };
        match copy_table(&mut source, &context, table, table_config, request.date, previous.as_ref()).await {
            Ok(mut done) => {
                done.seconds = started.elapsed().as_secs_f64();
                staged.push(Ok(done))
            }
            Err(TableFailure::Table(message)) => staged.push(Err(((*table).clone(), message))),
            Err(TableFailure::Run(message)) => {
                failure = Some(TablesError::Table { database: name.into(), table: (*table).clone(), message });
                break;
            }
        }
    }
    source.close().await;
    if let Some(failure) = failure {
        return Err(failure);
    }

    Ok(ReadRun { store: store.clone(), database: name.into(), date: request.date, staged })
}

fn report_of(done: &Staged) -> TableReport {
    let manifest = &done.manifest;
    TableReport {
        database: manifest.database.clone(),
        table: manifest.table.clone(),
        date: manifest.date,
        rows: manifest.rows,
        bytes: manifest.bytes,
        files: manifest.files.len(),
        watermark: manifest.watermark.clone(),
        added_columns: done.change.added.clone(),
        dropped_columns: done.change.dropped.clone(),
        nulled_values: manifest.columns.iter().filter(|c| c.nulled > 0).map(|c| (c.name.clone(), c.nulled)).collect(),
        seconds: done.seconds,
        error: None,
    }
}

struct CopyContext<'a> {
    store: &'a LakeStore,
    database: &'a str,
    config: &'a DatabaseConfig,
    zone: &'a Tz,
    salt: &'a Arc<[u8]>,
    run_id: &'a str,
    snapshot_at: DateTime<Utc>,
}

enum TableFailure {
    /// This table is not copied; the others go on.
    Table(String),
    /// The snapshot's connection is unusable or a value cannot be stored: the run stops.
    Run(String),
}

async fn copy_table(
    source: &mut Source,
    context: &CopyContext<'_>,
    table: &str,
    table_config: &TableConfig,
    date: NaiveDate,
    previous: Option<&Manifest>,
) -> Result<Staged, TableFailure> {
    let engine = context.config.engine;
    let (schema_name, source_table) = table_config.source_name(table, engine);
    let described = source.describe(schema_name, source_table).await.map_err(TableFailure::Run)?;
    if described.is_empty() {
        return Err(TableFailure::Table(format!(
            "source table {} not found",
            table_config.source.as_deref().unwrap_or(table)
        )));
    }
    let planned = plan_columns(engine, table_config, &described).map_err(TableFailure::Table)?;
    let mut columns: Vec<ColumnEntry> = planned
        .iter()
        .map(|c| ColumnEntry {
            name: c.name.clone(),
            lake_type: c.lake_type(),
            source_type: c.source_type.clone(),
            hashed: c.hashed,
            nulled: 0,
        })
        .collect();
    let change = previous.map(|p| manifest::schema_change(&p.columns, &columns)).unwrap_or_default();
    let refused: Vec<String> = change
        .retyped
        .iter()
        .filter(|(column, _, _)| !table_config.allow_retype.contains(column))
        .map(|(column, old, new)| format!("{column} {old} → {new}"))
        .collect();
    if !refused.is_empty() {
        return Err(TableFailure::Table(format!(
            "column types changed ({}): add them to allow_retype to accept the new types",
            refused.join(", ")
        )));
    }

    let from_clause = match schema_name {
        Some(schema) => format!("{}.{}", quote(engine, schema), quote(engine, source_table)),
        None => quote(engine, source_table),
    };
    let mut conditions: Vec<String> = table_config.filter.iter().map(|f| format!("({f})")).collect();
    let (watermark_from, watermark) = match (&table_config.mode, &table_config.cursor) {
        (Mode::Incremental, Some(cursor)) => {
            let from = match previous {
                Some(p) if p.date == date => p.watermark_from.clone(),
                Some(p) => p.watermark.clone(),
                None => None,
            };
            let quoted = quote(engine, cursor);
            let cursor_type = described.iter().find(|c| &c.name == cursor).map(|c| c.type_name.as_str()).unwrap_or("");
            let typed = |text: &str| match engine {
                Engine::Postgres => format!("{}::{cursor_type}", literal(text)),
                Engine::Mysql => literal(text),
            };
            if let Some(from) = &from {
                conditions.push(format!("{quoted} > {}", typed(from)));
            }
            let condition = if conditions.is_empty() { "TRUE".to_owned() } else { conditions.join(" AND ") };
            let to = source.max_cursor(&from_clause, &condition, &quoted).await.map_err(TableFailure::Run)?;
            match &to {
                Some(to) => conditions.push(format!("{quoted} <= {}", typed(to))),
                None => conditions.push("FALSE".into()),
            }
            let to = to.or_else(|| from.clone());
            (from, to)
        }
        _ => (None, None),
    };
    let select_list: Vec<String> = planned.iter().map(|c| select_expression(engine, c)).collect();
    let mut select = format!("SELECT {} FROM {from_clause}", select_list.join(", "));
    if !conditions.is_empty() {
        select.push_str(" WHERE ");
        select.push_str(&conditions.join(" AND "));
    }

    let key_stem = format!("{}/part-{}", manifest::day_prefix(context.database, table, date), context.run_id);
    let schema: SchemaRef =
        Arc::new(Schema::new(planned.iter().map(|c| c.lake_kind().field(&c.name)).collect::<Vec<_>>()));
    let writer = PartWriter::new(
        context.store.clone(),
        key_stem,
        Arc::clone(&schema),
        context.config.row_group_rows,
        context.config.file_rows,
    );
    let mut sink = TableSink::new(&planned, schema, *context.zone, context.salt, context.config.batch_rows, writer);
    let streamed = source.stream(&select, &mut sink).await;
    let finished = sink.finish().await;
    streamed.map_err(TableFailure::Run)?;
    let (files, nulled) = finished.map_err(TableFailure::Run)?;
    for (column, nulled) in columns.iter_mut().zip(nulled) {
        column.nulled = nulled;
    }
    let schema_hash = manifest::schema_hash(&columns);
    let manifest = Manifest {
        format: manifest::FORMAT,
        database: context.database.into(),
        table: table.into(),
        date,
        mode: table_config.mode,
        run_id: context.run_id.into(),
        snapshot_at: context.snapshot_at,
        committed_at: context.snapshot_at,
        rows: files.iter().map(|f| f.rows).sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        columns,
        schema_hash,
        cursor: table_config.cursor.clone(),
        watermark_from,
        watermark,
    };
    Ok(Staged { manifest, change, seconds: 0.0 })
}

/// Commits a day: the manifest (the commit point), the day's symlink manifest for Spectrum,
/// then the day's files no manifest lists any more are deleted.
async fn commit(store: &LakeStore, manifest: &Manifest) -> Result<(), TablesError> {
    let mut manifest = manifest.clone();
    manifest.committed_at = Utc::now();
    let (database, table, date) = (manifest.database.as_str(), manifest.table.as_str(), manifest.date);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| TablesError::Lake(e.to_string()))?;
    store.put(&manifest::manifest_key(database, table, date), json.into()).await?;
    let urls: String = manifest.files.iter().map(|f| store.location().url_of(&f.key) + "\n").collect();
    store.put(&manifest::symlink_key(database, table, date), urls.into()).await?;
    let day = manifest::day_prefix(database, table, date);
    for key in store.list(&day).await? {
        if !manifest.files.iter().any(|f| f.key == key) {
            store.delete(&key).await?;
        }
    }
    Ok(())
}

/// The committed manifest of `table`'s latest day.
pub async fn latest_manifest(store: &LakeStore, database: &str, table: &str) -> Result<Option<Manifest>, TablesError> {
    let keys = store.list(&manifest::manifests_prefix(database, table)).await?;
    let Some(key) = keys
        .iter()
        .filter(|k| manifest::date_of_manifest_key(k).is_some())
        .max_by_key(|k| manifest::date_of_manifest_key(k))
    else {
        return Ok(None);
    };
    read_manifest(store, key).await
}

pub async fn read_manifest(store: &LakeStore, key: &str) -> Result<Option<Manifest>, TablesError> {
    let Some(bytes) = store.get(key).await? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| TablesError::Lake(format!("{key}: {e}")))
}

/// Every committed manifest of `table`, oldest first.
pub async fn manifests(store: &LakeStore, database: &str, table: &str) -> Result<Vec<Manifest>, TablesError> {
    let mut manifests = Vec::new();
    for key in store.list(&manifest::manifests_prefix(database, table)).await? {
        if manifest::date_of_manifest_key(&key).is_some()
            && let Some(manifest) = read_manifest(store, &key).await?
        {
            manifests.push(manifest);
        }
    }
    Ok(manifests)
}
