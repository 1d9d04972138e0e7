//! Running a plan: each step's query, its files under `metrics/`, its publication, in order.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::datasource::MemTable;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use inlet_lake::{LakeLocation, LakeStore, S3Settings};

use crate::calendar::Dates;
use crate::config::{BatchConfig, WarehouseKind};
use crate::lakeview::{LakeView, LakeViewError};
use crate::output::{MetricsFiles, OutputError, conform};
use crate::plan::{Keys, Plan, plan};
use crate::queries::{RANGE_EVENTS, Scope, identify_traits_sql, range_event_days, range_events_sql, sql};
use crate::tables::Table;
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
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub table: Table,
    pub keys: usize,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub published: Option<u64>,
    pub seconds: f64,
    /// Peak resident memory of the process during the step (Linux), in MiB.
    pub peak_rss_mib: Option<f64>,
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

/// The batch job over one lake and warehouse.
#[derive(Debug)]
pub struct Batch {
    config: BatchConfig,
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
        Ok(Batch { config, view, files: MetricsFiles::new(store), warehouse })
    }

    /// Plans without touching the warehouse: `--dry-run` prints this.
    pub async fn plan(&self, request: &RunRequest) -> Result<Plan, BatchError> {
        validate(request)?;
        let computed = self.files.dates(Table::DailyUserActivity, request.sources.as_deref()).await?;
        Ok(plan(&request.steps, request.from, request.to, self.config.lookback_days, &Dates::from_iter(computed)))
    }

    pub async fn run(
        &mut self,
        plan: &Plan,
        sources: Option<&[String]>,
        progress: bool,
    ) -> Result<Vec<StepReport>, BatchError> {
        let bar = if progress { ProgressBar::new(plan.steps.len() as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let shared_days = plan
            .steps
            .iter()
            .filter_map(|s| match &s.keys {
                Keys::Dates(keys) => range_event_days(s.table, keys),
                Keys::Whole => None,
            })
            .fold(Dates::default(), |all, days| all.union(&days));
        let mut shared_ready = false;
        let mut reports = Vec::new();
        for step in &plan.steps {
            bar.set_message(step.table.name());
            let reads_range = matches!(&step.keys, Keys::Dates(keys) if range_event_days(step.table, keys).is_some());
            // The first step that reads the range's events reads them for all (after
            // identity_map, which they need), and its time and memory include that.
            let shared = (reads_range && !shared_ready).then_some(&shared_days);
            shared_ready |= reads_range;
            let report = self
                .run_step(step.table, &step.keys, sources, shared)
                .await
                .map_err(|e| BatchError::Step { step: step.table.name(), source: Box::new(e) })?;
            tracing::info!(
                step = step.table.name(),
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
        self.view.ctx.deregister_table(RANGE_EVENTS).map_err(LakeViewError::from)?;
        Ok(reports)
    }

    /// Reads, stitches and deduplicates the range's events once for every step that needs them.
    /// Needs `identity_map` registered.
    async fn materialise_range_events(&mut self, days: &Dates, sources: Option<&[String]>) -> Result<(), BatchError> {
        let scope = Scope { config: &self.config, keys: days, sources };
        let dataframe = self.view.ctx.sql(&range_events_sql(&scope, days)).await.map_err(LakeViewError::from)?;
        let schema = dataframe.schema().inner().clone();
        let batches = dataframe.collect().await.map_err(LakeViewError::from)?;
        // Spread over partitions so the steps' scans run on every core.
        let partitions = std::thread::available_parallelism().map_or(2, usize::from);
        let mut spread: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
        for (i, batch) in batches.into_iter().enumerate() {
            spread[i % partitions].push(batch);
        }
        let table = MemTable::try_new(schema, spread).map_err(LakeViewError::from)?;
        self.view.ctx.deregister_table(RANGE_EVENTS).map_err(LakeViewError::from)?;
        self.view.ctx.register_table(RANGE_EVENTS, Arc::new(table)).map_err(LakeViewError::from)?;
        Ok(())
    }

    async fn run_step(
        &mut self,
        table: Table,
        keys: &Keys,
        sources: Option<&[String]>,
        read_range_events: Option<&Dates>,
    ) -> Result<StepReport, BatchError> {
        let started = Instant::now();
        reset_peak_rss();
        // Each step reads what the steps before it wrote.
        for input in [Table::IdentityMap, Table::DailyUserActivity] {
            self.view.register_metrics(input, self.files.has_files(input).await?).await?;
        }
        if let Some(days) = read_range_events {
            self.materialise_range_events(days, sources).await?;
        }
        let no_dates = Dates::default();
        let dates = match keys {
            Keys::Dates(dates) => dates,
            Keys::Whole => &no_dates,
        };
        let scope = Scope { config: &self.config, keys: dates, sources };
        let schema = table.schema(&self.config.trait_columns);
        let output = self.view.query(&sql(table, &scope)).await?;
        let rows = if table == Table::Users {
            let traits = MergedTraits::fold(&self.view.query(&identify_traits_sql(&scope)).await?);
            users_rows(&schema, &output, &traits, &self.config.trait_columns)?
        } else {
            conform(&schema, &output)?
        };
        drop(output);
        let files = self.files.replace(table, keys, sources, &rows).await?;
        let publication = Publication { table, keys, sources, rows: &rows, files: &files };
        let published = match &mut self.warehouse {
            Warehouse::None => None,
            Warehouse::Postgres(postgres) => Some(postgres.publish(&publication).await?),
            Warehouse::Redshift(redshift) => Some(redshift.publish(&publication).await?),
        };
        Ok(StepReport {
            table,
            keys: match keys {
                Keys::Dates(dates) => dates.len(),
                Keys::Whole => 1,
            },
            rows: rows.num_rows() as u64,
            files: files.len(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            published,
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        })
    }
}

fn validate(request: &RunRequest) -> Result<(), BatchError> {
    if request.from > request.to {
        return Err(BatchError::Request(format!("--from {} is after --to {}", request.from, request.to)));
    }
    if request.steps.is_empty() {
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
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<f64> {
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
            r.table.name(),
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
