//! Running a plan: the state update, then each step's queries by chunks of key dates, its
//! files under `metrics/` and its publication, in order.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{AsArray, BooleanArray, Date32Array, Int32Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use indicatif::{ProgressBar, ProgressStyle};
use inlet_lake::{LakeLocation, LakeStore, S3Settings};

use crate::calendar::{Dates, add_days};
use crate::config::{BatchConfig, WarehouseKind};
use crate::lakeview::{LakeView, LakeViewError};
use crate::output::{MetricsFiles, OutputError, conform};
use crate::plan::{self, Keys, MAU_DAYS, Plan, RETENTION_DAYS, RETENTION_WEEKS};
use crate::sessions::session_totals;
use crate::sql::{self, Params};
use crate::state::{DAY_SUMMARIES, Manifest, State, StateError, StateSettings, days_to_read, lake_days};
use crate::tables::{Replace, Table};
use crate::users::{MergedTraits, users_rows};
use crate::warehouse::postgres::Postgres;
use crate::warehouse::redshift::Redshift;
use crate::warehouse::{Publication, WarehouseError};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("invalid request: {0}")]
    Request(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{step}: {source}")]
    Step { step: &'static str, source: Box<BatchError> },
    #[error(transparent)]
    Lake(#[from] LakeViewError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("state: {0}")]
    State(#[from] StateError),
}

impl From<datafusion::arrow::error::ArrowError> for BatchError {
    fn from(e: datafusion::arrow::error::ArrowError) -> BatchError {
        BatchError::Output(OutputError::Shape(e))
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// In any order; they run in graph order.
    pub steps: Vec<Table>,
    /// `None`: every source.
    pub sources: Option<Vec<String>>,
    /// Rebuild the state from the whole lake instead of updating it.
    pub full: bool,
    /// Bring the state up to date first (the `state` step); otherwise the steps read the state
    /// the last run committed.
    pub update_state: bool,
}

/// The step that brings the state up to date, before every table.
pub const STATE_STEP: &str = "state";

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The table, or `state` for the state update.
    pub step: &'static str,
    pub keys: usize,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub published: Option<u64>,
    pub seconds: f64,
    /// Peak resident memory of the process during the step (Linux), in MiB.
    pub peak_rss_mib: Option<f64>,
}

impl StepReport {
    /// The report of the `state` step: `days` read, since `started`.
    pub(crate) fn state(days: usize, started: Instant) -> StepReport {
        StepReport {
            step: STATE_STEP,
            keys: days,
            rows: 0,
            files: 0,
            bytes: 0,
            published: None,
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        }
    }
}

#[derive(Debug)]
enum Warehouse {
    None,
    Postgres(Box<Postgres>),
    Redshift(Box<Redshift>),
}

/// The lake's object store as the configuration describes it (local directory or S3).
pub async fn open_store(config: &BatchConfig) -> Result<LakeStore, BatchError> {
    let location = LakeLocation::parse(&config.lake_url).map_err(|e| BatchError::Request(e.to_string()))?;
    let settings = S3Settings {
        endpoint: config.s3.endpoint.clone(),
        region: config.s3.region.clone(),
        force_path_style: config.s3.force_path_style,
        ..S3Settings::default()
    };
    LakeStore::open(location, &settings).map_err(|e| BatchError::Request(e.to_string()))
}

/// Key dates computed by one query at most: bounds the rows a step holds at once.
pub(crate) const CHUNK_KEYS: usize = 31;

/// The batch job over one lake and warehouse.
#[derive(Debug)]
pub struct Batch {
    config: BatchConfig,
    store: LakeStore,
    view: LakeView,
    files: MetricsFiles,
    warehouse: Warehouse,
}

impl Batch {
    pub async fn open(config: BatchConfig) -> Result<Batch, BatchError> {
        config.validate()?;
        let store = open_store(&config).await?;
        let view = LakeView::open(&config)?;
        view.register_events().await?;
        let offsets: Vec<i32> = (0..=RETENTION_DAYS as i32).collect();
        let offsets = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)])),
            vec![Arc::new(Int32Array::from(offsets))],
        )?;
        view.register_batches("offsets", offsets.schema(), vec![offsets])?;
        let warehouse_config = &config.warehouse;
        let warehouse = match warehouse_config.kind {
            WarehouseKind::None => Warehouse::None,
            WarehouseKind::Postgres => {
                let url = warehouse_config.postgres_url.as_deref().unwrap_or_default();
                Warehouse::Postgres(Box::new(
                    Postgres::connect(url, &warehouse_config.schema, &config.trait_columns).await?,
                ))
            }
            WarehouseKind::Redshift => Warehouse::Redshift(Box::new(
                Redshift::connect(
                    &warehouse_config.redshift,
                    &warehouse_config.schema,
                    &config.trait_columns,
                    store.clone(),
                )
                .await?,
            )),
        };
        Ok(Batch { config, files: MetricsFiles::new(store.clone()), store, view, warehouse })
    }

    /// Deletes the rows of `ids` from the warehouse's user-keyed tables; returns how many (0 on
    /// Redshift, which does not say).
    pub async fn erase_from_warehouse(&mut self, ids: &[String]) -> Result<u64, BatchError> {
        Ok(match &mut self.warehouse {
            Warehouse::None => 0,
            Warehouse::Postgres(postgres) => postgres.erase(ids).await?,
            Warehouse::Redshift(redshift) => {
                redshift.erase(ids).await?;
                0
            }
        })
    }

    /// The lake this batch reads.
    pub fn store(&self) -> &LakeStore {
        &self.store
    }

    /// Plans without writing anything: `--dry-run` prints this.
    pub async fn plan(&self, request: &RunRequest) -> Result<Plan, BatchError> {
        validate(request)?;
        let manifest = Manifest::load(&self.store).await?;
        plan_from(&self.config, &self.store, request, manifest).await
    }

    pub async fn run(
        &mut self,
        plan: &Plan,
        sources: Option<&[String]>,
        progress: bool,
    ) -> Result<Vec<StepReport>, BatchError> {
        let bar = if progress { ProgressBar::new(plan.steps.len() as u64 + 1) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(STATE_STEP);
        let started = Instant::now();
        reset_peak_rss();
        let state = State { view: &self.view, store: &self.store, config: &self.config };
        let mut reports = Vec::new();
        let mut manifest = if plan.update_state {
            let update = state.update(plan.previous.as_ref(), &plan.read, &plan.lake).await?;
            let mut manifest = update.manifest;
            let (first, last) = bounds(Some(&manifest), &update.read, plan.last);
            // Every table's changed keys are recorded, so steps not run now are caught up later.
            plan::add_pending(&mut manifest, &Table::ALL, &update.changed, first, last);
            manifest.add_pending(Table::Retention.name(), &update.retention_cohorts);
            state.commit(&manifest).await?;
            tracing::info!(
                version = manifest.version,
                read = update.read.len(),
                changed = update.changed.len(),
                "state updated"
            );
            reports.push(StepReport::state(update.read.len(), started));
            manifest
        } else {
            let manifest = plan.previous.clone().ok_or_else(|| BatchError::Request("no state".into()))?;
            state.register_committed(&manifest).await?;
            manifest
        };
        let selected: Vec<Table> = plan.steps.iter().map(|s| s.table).collect();
        // The days asked for are recomputed whatever the state says is pending.
        let (first, last) = bounds(Some(&manifest), &plan.range, plan.last);
        plan::add_pending(&mut manifest, &selected, &plan.range, first, last);
        bar.inc(1);
        for summary in DAY_SUMMARIES {
            self.view.register_summary(summary).await?;
        }
        for table in Table::ALL.into_iter().filter(|t| selected.contains(t)) {
            bar.set_message(table.name());
            let keys = match table.replace() {
                Replace::ByDate(_) => Keys::Dates(manifest.pending(table.name())),
                _ => Keys::Whole,
            };
            let report = self
                .run_step(table, &keys, sources, manifest.last_active_day)
                .await
                .map_err(|e| BatchError::Step { step: table.name(), source: Box::new(e) })?;
            if sources.is_none() {
                // Re-read: the steps of one scheduled run may run side by side, each clearing
                // its own table. A lost race only leaves keys pending (recomputed next run).
                let mut committed = Manifest::load(&self.store).await?.unwrap_or_else(|| manifest.clone());
                if committed.version == manifest.version {
                    committed.pending.remove(table.name());
                    committed.commit(&self.store).await?;
                }
            }
            tracing::info!(
                step = table.name(),
                keys = report.keys,
                rows = report.rows,
                files = report.files,
                seconds = report.seconds,
                "step done"
            );
            reports.push(report);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(reports)
    }

    async fn run_step(
        &mut self,
        table: Table,
        keys: &Keys,
        sources: Option<&[String]>,
        last_active_day: Option<NaiveDate>,
    ) -> Result<StepReport, BatchError> {
        let started = Instant::now();
        reset_peak_rss();
        let schema = table.schema(&self.config.trait_columns);
        let mut report = StepReport {
            step: table.name(),
            keys: 0,
            rows: 0,
            files: 0,
            bytes: 0,
            published: None,
            seconds: 0.0,
            peak_rss_mib: None,
        };
        let chunks: Vec<(Keys, Vec<RecordBatch>)> = match keys {
            Keys::Whole => vec![(Keys::Whole, self.whole_table(table, &schema).await?)],
            Keys::Dates(dates) => {
                let mut chunks = Vec::new();
                for chunk in key_chunks(table, dates) {
                    let rows = self.dated_rows(table, &chunk, last_active_day).await?;
                    chunks.push((Keys::Dates(Dates::from_iter(chunk)), rows));
                }
                chunks
            }
        };
        for (keys, batches) in chunks {
            let rows = keep_sources(&conform(&schema, &batches)?, sources)?;
            let files = self.files.replace(table, &keys, sources, &rows).await?;
            let publication = Publication { table, keys: &keys, sources, rows: &rows, files: &files };
            let published = match &mut self.warehouse {
                Warehouse::None => None,
                Warehouse::Postgres(postgres) => Some(postgres.publish(&publication).await?),
                Warehouse::Redshift(redshift) => Some(redshift.publish(&publication).await?),
            };
            report.keys += match &keys {
                Keys::Dates(dates) => dates.len(),
                Keys::Whole => 1,
            };
            report.rows += rows.num_rows() as u64;
            report.files += files.len();
            report.bytes += files.iter().map(|f| f.bytes).sum::<u64>();
            report.published = published.map(|n| report.published.unwrap_or(0) + n);
        }
        report.seconds = started.elapsed().as_secs_f64();
        report.peak_rss_mib = peak_rss_mib();
        Ok(report)
    }

    /// `identity_map` and `users`, from the state.
    async fn whole_table(&self, table: Table, schema: &SchemaRef) -> Result<Vec<RecordBatch>, BatchError> {
        Ok(match table {
            Table::Users => {
                let spans = self.view.run(&sql::USERS, Params::new()).await?;
                let traits = MergedTraits::from_stored(&self.view.run(&sql::USER_TRAITS, Params::new()).await?);
                vec![users_rows(schema, &spans, &traits, &self.config.trait_columns)?]
            }
            _ => self
                .view
                .ctx
                .table("identity_map")
                .await
                .map_err(LakeViewError::from)?
                .collect()
                .await
                .map_err(LakeViewError::from)?,
        })
    }

    /// The rows of the key dates `chunk` (consecutive keys of the table's period).
    async fn dated_rows(
        &self,
        table: Table,
        chunk: &[NaiveDate],
        last_active_day: Option<NaiveDate>,
    ) -> Result<Vec<RecordBatch>, BatchError> {
        let (Some(&from), Some(&to)) = (chunk.first(), chunk.last()) else { return Ok(Vec::new()) };
        let timeout = i64::from(self.config.session_timeout_minutes) * 60_000_000;
        let Some((query, params)) = dated_query(table, from, to, last_active_day, false, timeout) else {
            return Ok(Vec::new());
        };
        if let Some((read_from, read_to)) = activity_read(table, from, to) {
            // Only the files of the days read: a query over the whole folder would open every
            // day's file, which grows with the lake.
            let keys = self.files.keys_between(Table::DailyUserActivity, read_from, read_to).await?;
            self.view.register_metrics(Table::DailyUserActivity, &keys).await?;
        }
        if table == Table::ActiveUsers {
            let calendar: Vec<i32> = Dates::range(from, to).iter().map(days_since_epoch).collect();
            let calendar = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("day", DataType::Date32, false)])),
                vec![Arc::new(Date32Array::from(calendar))],
            )?;
            self.view.register_batches("calendar", calendar.schema(), vec![calendar])?;
        }
        let rows = self.view.run(&query, params).await?;
        if table == Table::Sessions {
            let schema = table.schema(&self.config.trait_columns);
            return Ok(vec![session_totals(&schema, &rows, timeout)?]);
        }
        Ok(rows)
    }
}

/// The plan of `request` from the committed state `manifest` (either engine's).
pub(crate) async fn plan_from(
    config: &BatchConfig,
    store: &LakeStore,
    request: &RunRequest,
    manifest: Option<Manifest>,
) -> Result<Plan, BatchError> {
    validate(request)?;
    let settings = StateSettings::of(config);
    let previous = manifest.filter(|m| !request.full && m.settings == settings);
    let range = Dates::range(add_days(request.from, -i64::from(config.lookback_days)), request.to);
    // With a state, late events are looked for in the last `late_window_days` (and the
    // days asked for); without one, the whole lake is read.
    let since = previous.as_ref().map(|_| {
        let window_start = add_days(request.to, 1 - i64::from(config.late_window_days));
        range.first().map_or(window_start, |first| first.min(window_start))
    });
    let lake = lake_days(store, config.tz(), since.map(|first| (first, request.to))).await?;
    if !request.update_state && previous.is_none() {
        return Err(BatchError::Request(format!(
            "the lake has no usable state yet: run the `{STATE_STEP}` step first (a full run includes it)"
        )));
    }
    let read = if request.update_state {
        days_to_read(previous.as_ref(), &lake, &range, since, request.to)
    } else {
        Dates::default()
    };
    let (first, last) = bounds(previous.as_ref(), &read, request.to);
    let steps = plan::steps(&request.steps, &read.union(&range), first, last, previous.as_ref());
    Ok(Plan {
        range,
        read,
        lake,
        last: request.to,
        full: request.full,
        update_state: request.update_state,
        previous,
        steps,
    })
}

/// The query and values computing a dated table's rows of the key dates `from ..= to`, the
/// same for both engines except `sessions` (the DataFusion engine's rows for its sweep, the
/// warehouse's totals). `active_users` also reads a `calendar` of the dates.
pub(crate) fn dated_query(
    table: Table,
    from: NaiveDate,
    to: NaiveDate,
    last_active_day: Option<NaiveDate>,
    in_warehouse: bool,
    session_timeout_micros: i64,
) -> Option<(sql::Query, Params)> {
    let mut params = Params::new().date("from", from).date("to", to);
    if let Some((read_from, read_to)) = activity_read(table, from, to) {
        params = params.date("read_from", read_from).date("read_to", read_to);
    }
    let last_day = last_active_day.unwrap_or(NaiveDate::MIN);
    let query = match table {
        Table::DailyUserActivity => sql::DAILY_USER_ACTIVITY,
        Table::PageViews => sql::PAGE_VIEWS,
        Table::EventCounts => sql::EVENT_COUNTS,
        Table::TrackingPlanViolations => sql::TRACKING_PLAN_VIOLATIONS,
        Table::NewUsers => sql::NEW_USERS,
        Table::Sessions if in_warehouse => {
            params = params.int("timeout", session_timeout_micros);
            sql::SESSION_TOTALS
        }
        Table::Sessions => sql::SESSIONS,
        Table::ActiveUsers if from == to => {
            params = params.date("wau_from", add_days(to, -6));
            sql::ACTIVE_USERS_DAY
        }
        Table::ActiveUsers => sql::ACTIVE_USERS,
        Table::MonthlyActiveUsers => sql::MONTHLY_ACTIVE_USERS,
        Table::Retention => {
            params = params.date("last_day", last_day);
            sql::RETENTION
        }
        Table::RetentionWeekly => {
            params = params.date("last_day", last_day);
            sql::RETENTION_WEEKLY
        }
        Table::LifecycleDaily => sql::LIFECYCLE_DAILY,
        Table::LifecycleWeekly => sql::LIFECYCLE_WEEKLY,
        Table::StickinessWeekly => sql::STICKINESS_WEEKLY,
        Table::StickinessMonthly => sql::STICKINESS_MONTHLY,
        Table::IdentityMap | Table::Users => return None,
    };
    Some((query, params))
}

/// The days of `daily_user_activity` a step reads to compute the key dates `from ..= to`
/// (bound as `$read_from` and `$read_to`), for the steps that read it.
pub(crate) fn activity_read(table: Table, from: NaiveDate, to: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let end_of_month = add_days(next_month(to), -1);
    match table {
        Table::ActiveUsers => Some((add_days(from, 1 - MAU_DAYS), to)),
        Table::MonthlyActiveUsers | Table::StickinessMonthly => Some((from, end_of_month)),
        Table::NewUsers => Some((from, to)),
        Table::Retention => Some((from, add_days(to, RETENTION_DAYS))),
        Table::RetentionWeekly => Some((from, add_days(to, 7 * (RETENTION_WEEKS + 1) - 1))),
        Table::LifecycleDaily => Some((add_days(from, -1), to)),
        Table::LifecycleWeekly => Some((add_days(from, -7), add_days(to, 6))),
        Table::StickinessWeekly => Some((from, add_days(to, 6))),
        Table::IdentityMap
        | Table::DailyUserActivity
        | Table::PageViews
        | Table::Sessions
        | Table::EventCounts
        | Table::TrackingPlanViolations
        | Table::Users => None,
    }
}

/// The key dates of a dated table in chunks of consecutive keys (by the table's period: day,
/// week or month), at most [`CHUNK_KEYS`] each.
pub(crate) fn key_chunks(table: Table, dates: &Dates) -> Vec<Vec<NaiveDate>> {
    let next = |date: NaiveDate| match table {
        Table::MonthlyActiveUsers | Table::StickinessMonthly => next_month(date),
        Table::RetentionWeekly | Table::LifecycleWeekly | Table::StickinessWeekly => add_days(date, 7),
        _ => add_days(date, 1),
    };
    let mut chunks: Vec<Vec<NaiveDate>> = Vec::new();
    for date in dates.iter() {
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK_KEYS && chunk.last().is_some_and(|last| next(*last) == date) => {
                chunk.push(date);
            }
            _ => chunks.push(vec![date]),
        }
    }
    chunks
}

fn next_month(date: NaiveDate) -> NaiveDate {
    let (year, month) = if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MAX)
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    i32::try_from(date.signed_duration_since(NaiveDate::default()).num_days()).unwrap_or_default()
}

/// The days the state covers after a run: from its first day (or the first read) to the run's
/// last day or the state's, whichever is later.
pub(crate) fn bounds(manifest: Option<&Manifest>, read: &Dates, to: NaiveDate) -> (NaiveDate, NaiveDate) {
    let known = manifest.map(|m| Dates::from_iter(m.days.keys().copied())).unwrap_or_default().union(read);
    (known.first().unwrap_or(to).min(to), known.last().unwrap_or(to).max(to))
}

/// Only the rows of `sources` (all when `None`).
pub(crate) fn keep_sources(rows: &RecordBatch, sources: Option<&[String]>) -> Result<RecordBatch, BatchError> {
    let (Some(sources), Ok(column)) = (sources, rows.schema().index_of("source")) else { return Ok(rows.clone()) };
    let values = rows.column(column).as_string::<i32>();
    let keep: BooleanArray = (0..rows.num_rows()).map(|i| Some(sources.iter().any(|s| s == values.value(i)))).collect();
    Ok(filter_record_batch(rows, &keep)?)
}

pub(crate) fn validate(request: &RunRequest) -> Result<(), BatchError> {
    if request.from > request.to {
        return Err(BatchError::Request(format!("--from {} is after --to {}", request.from, request.to)));
    }
    if request.steps.is_empty() && !request.update_state {
        return Err(BatchError::Request("no steps selected".into()));
    }
    for source in request.sources.iter().flatten() {
        let valid = !source.is_empty()
            && source.len() <= 64
            && source.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            return Err(BatchError::Request(format!("source {source:?} is not a source name")));
        }
    }
    Ok(())
}

/// Resets the kernel's peak-RSS counter, so each step's peak is its own (Linux only).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The summary table printed after a run.
pub fn summary(reports: &[StepReport]) -> String {
    let mut out = format!(
        "{:<22} {:>6} {:>10} {:>6} {:>10} {:>10} {:>9} {:>10}\n",
        "step", "keys", "rows", "files", "KiB", "published", "seconds", "peak MiB"
    );
    for r in reports {
        let published = r.published.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let peak = r.peak_rss_mib.map_or_else(|| "-".to_owned(), |m| format!("{m:.0}"));
        out.push_str(&format!(
            "{:<22} {:>6} {:>10} {:>6} {:>10.1} {:>10} {:>9.2} {:>10}\n",
            r.step,
            r.keys,
            r.rows,
            r.files,
            r.bytes as f64 / 1024.0,
            published,
            r.seconds,
            peak
        ));
    }
    let total: f64 = reports.iter().map(|r| r.seconds).sum();
    let peak = reports.iter().filter_map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    out.push_str(&format!("{:<22} {:>57.2} {:>10.0}\n", "total", total, peak));
    out
}
