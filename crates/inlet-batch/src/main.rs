//! `inlet-batch`: builds the metrics tables from the lake and publishes them.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};
use inlet_batch::config::{BatchConfig, Engine, WarehouseKind};
use inlet_batch::run::STATE_STEP;
use inlet_batch::warehouse::engine::WarehouseEngine;
use inlet_batch::warehouse::{Dialect, create_tables_sql};
use inlet_batch::{Batch, RunRequest, Table};

#[derive(Debug, Parser)]
#[command(name = "inlet-batch", version, about = "Builds Inlet's metrics tables from the lake")]
struct Cli {
    /// TOML configuration (see docs/config.md); defaults apply without one.
    #[arg(long, global = true, env = "INLET_BATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `lake_url`.
    #[arg(long, global = true, env = "INLET_BATCH_LAKE_URL")]
    lake: Option<String>,
    /// Overrides `time_zone` (IANA name, e.g. Asia/Seoul).
    #[arg(long, global = true, env = "INLET_BATCH_TIME_ZONE")]
    time_zone: Option<String>,
    /// Overrides `warehouse.postgres_url` and selects PostgreSQL.
    #[arg(long, global = true, env = "INLET_BATCH_POSTGRES_URL")]
    postgres: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the steps for a range of reporting days.
    Run {
        /// First day (YYYY-MM-DD, reporting time zone); default: `--to`.
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Last day; default: yesterday in the reporting time zone.
        #[arg(long)]
        to: Option<NaiveDate>,
        /// Steps to run (comma-separated); default: all. `state` brings the state up to date;
        /// without it the selected tables are computed from the state the last run committed.
        #[arg(long, value_delimiter = ',')]
        steps: Vec<String>,
        /// Sources to compute (comma-separated); default: all.
        #[arg(long, value_delimiter = ',')]
        source: Vec<String>,
        /// Overrides `lookback_days`.
        #[arg(long)]
        lookback: Option<u32>,
        /// Rebuilds the state from the whole lake instead of updating it (after events were
        /// removed from the lake, or to check the state).
        #[arg(long)]
        full: bool,
        /// Where to compute: `datafusion` (here) or `warehouse` (SQL inside the warehouse);
        /// default: the configuration's `engine`.
        #[arg(long, value_enum, env = "INLET_BATCH_ENGINE")]
        engine: Option<Engine>,
        /// Prints the plan and exits.
        #[arg(long)]
        dry_run: bool,
        /// No progress bar (it is drawn only on a terminal anyway).
        #[arg(long)]
        quiet: bool,
    },
    /// Lists the steps and what each reads.
    Steps,
    /// Whether the lake holds every event of a reporting day: prints the gateways' watermarks
    /// as JSON; exits 0 when complete, 3 when not yet (for schedulers' sensors).
    LakeStatus {
        /// The reporting day (YYYY-MM-DD, reporting time zone).
        #[arg(long)]
        date: NaiveDate,
    },
    /// Product database tables: copies them into the lake (docs/tables.md).
    Tables {
        #[command(subcommand)]
        command: TablesCommand,
    },
    /// Deletes lake events and dead letters older than `[retention]` keeps them; prints what
    /// went as JSON.
    Retention {
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Prints the warehouse DDL of the metrics tables.
    Ddl {
        #[arg(long, value_enum, default_value = "redshift")]
        dialect: DialectArg,
    },
}

#[derive(Debug, Subcommand)]
enum TablesCommand {
    /// Copies tables into the lake under `dt=DATE`, one snapshot per database, and loads them
    /// into the warehouse. Prints one JSON report per table; exits 1 if any table failed.
    Run {
        /// `database` or `database.table` (repeatable); default: every configured table.
        #[arg(long = "table")]
        tables: Vec<String>,
        /// The day the copy is filed under; default: yesterday in the reporting time zone.
        #[arg(long)]
        date: Option<NaiveDate>,
    },
    /// Lists the configured tables (`database.table mode`).
    List,
    /// Prints Redshift Spectrum DDL for every copied table: the external table, its
    /// partitions and its `_current` view.
    Ddl {
        /// The external schema (over the Glue catalog).
        #[arg(long, default_value = "inlet_tables")]
        schema: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DialectArg {
    Postgres,
    Redshift,
}

/// jemalloc instead of glibc's malloc: DataFusion allocates and frees many short-lived buffers
/// from every worker thread, and jemalloc returns freed memory to the system in the background,
/// so one step's peak is not carried into the next (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "inlet_batch=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        // A reader that went away (`inlet-batch steps | head`) is not a failure.
        Err(error) if error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("inlet-batch: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `lake-status`: the day is not complete yet (a sensor pokes again); 1 stays "failed".
const NOT_YET: u8 = 3;

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = BatchConfig::load(cli.config.as_deref())?;
    if let Some(lake) = cli.lake {
        config.lake_url = lake;
    }
    if let Some(zone) = cli.time_zone {
        config.time_zone = zone;
    }
    if let Some(url) = cli.postgres {
        config.warehouse.kind = WarehouseKind::Postgres;
        config.warehouse.postgres_url = Some(url);
    }
    config.validate()?;
    let mut out = std::io::stdout();
    match cli.command {
        Command::LakeStatus { date } => {
            let store = inlet_batch::run::open_store(&config).await?;
            let status = inlet_batch::completeness::day_status(&store, date, config.tz()).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
            return Ok(if status.complete { ExitCode::SUCCESS } else { ExitCode::from(NOT_YET) });
        }
        Command::Retention { dry_run } => {
            let store = inlet_batch::run::open_store(&config).await?;
            let today = chrono::Utc::now().date_naive();
            let report = inlet_batch::retention::expire(&store, &config.retention, today, dry_run).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        Command::Steps => {
            writeln!(out, "{STATE_STEP:<22} after: -")?;
            for table in Table::ALL {
                let inputs: Vec<&str> = table.depends_on().iter().map(|t| t.name()).collect();
                let inputs = if inputs.is_empty() { STATE_STEP.to_owned() } else { inputs.join(", ") };
                writeln!(out, "{:<22} after: {inputs}", table.name())?;
            }
        }
        Command::Tables { command: TablesCommand::List } => {
            for (database, database_config) in &config.databases {
                for (table, table_config) in &database_config.tables {
                    let mode = serde_json::to_value(table_config.mode)?;
                    writeln!(out, "{database}.{table} {}", mode.as_str().unwrap_or_default())?;
                }
            }
        }
        Command::Tables { command: TablesCommand::Ddl { schema } } => {
            write!(out, "{}", inlet_batch::product_tables::spectrum_ddl(&config, &schema).await?)?;
        }
        Command::Tables { command: TablesCommand::Run { tables, date } } => {
            let yesterday = chrono::Utc::now().with_timezone(&config.tz()).date_naive().pred_opt();
            let date = date.or(yesterday).context("no --date")?;
            let reports = inlet_batch::product_tables::run(&config, &tables, date).await?;
            for report in &reports {
                writeln!(out, "{}", serde_json::to_string(report)?)?;
            }
            if let Some(failed) = reports.iter().find(|r| r.error.is_some()) {
                eprintln!(
                    "inlet-batch: {}.{}: {}",
                    failed.database,
                    failed.table,
                    failed.error.as_deref().unwrap_or_default()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Ddl { dialect } => {
            let dialect = match dialect {
                DialectArg::Postgres => Dialect::Postgres,
                DialectArg::Redshift => Dialect::Redshift,
            };
            for statement in create_tables_sql(dialect, &config.warehouse.schema, &config.trait_columns) {
                writeln!(out, "{statement};\n")?;
            }
        }
        Command::Run { from, to, steps, source, lookback, full, engine, dry_run, quiet } => {
            if let Some(days) = lookback {
                config.lookback_days = days;
            }
            if let Some(engine) = engine {
                config.engine = engine;
            }
            let yesterday = chrono::Utc::now().with_timezone(&config.tz()).date_naive().pred_opt();
            let to = to.or(yesterday).context("no --to")?;
            let update_state = steps.is_empty() || steps.iter().any(|s| s == STATE_STEP);
            let steps = if steps.is_empty() {
                Table::ALL.to_vec()
            } else {
                steps
                    .iter()
                    .filter(|s| *s != STATE_STEP)
                    .map(|s| Table::parse(s).with_context(|| format!("unknown step {s:?} (see `inlet-batch steps`)")))
                    .collect::<anyhow::Result<Vec<_>>>()?
            };
            let mut request = RunRequest {
                from: from.unwrap_or(to),
                to,
                steps,
                sources: (!source.is_empty()).then_some(source),
                full,
                update_state,
            };
            if config.engine == Engine::Warehouse {
                config.validate()?;
                let store = inlet_batch::run::open_store(&config).await?;
                let mut engine = WarehouseEngine::open(config).await?;
                let erasures = match update_state && !dry_run {
                    true => inlet_batch::privacy::pending_erasures(&store).await?,
                    false => Default::default(),
                };
                if !erasures.is_empty() {
                    let ids: Vec<String> = erasures.ids.iter().cloned().collect();
                    engine.erase(&ids).await?;
                    request.full = true;
                }
                let plan = engine.plan(&request).await?;
                if dry_run {
                    write!(out, "{plan}")?;
                    return Ok(ExitCode::SUCCESS);
                }
                let reports = engine.run(&plan, request.sources.as_deref()).await?;
                if !erasures.is_empty() {
                    inlet_batch::privacy::record_erased(&store, &erasures, 0).await?;
                }
                write!(out, "{}", inlet_batch::run::summary(&reports))?;
                return Ok(ExitCode::SUCCESS);
            }
            if dry_run {
                // Planning reads the state's manifest and lists the lake; nothing is written.
                config.warehouse.kind = WarehouseKind::None;
            }
            let mut batch = Batch::open(config).await?;
            // Deletions whose lake files are erased: their warehouse rows go now, and the state is
            // rebuilt from the erased lake (see `inlet_batch::privacy`).
            let erasures = match update_state && !dry_run {
                true => inlet_batch::privacy::pending_erasures(batch.store()).await?,
                false => Default::default(),
            };
            let mut erased_rows = 0;
            if !erasures.is_empty() {
                let ids: Vec<String> = erasures.ids.iter().cloned().collect();
                erased_rows = batch.erase_from_warehouse(&ids).await?;
                tracing::info!(
                    regulations = erasures.regulations.len(),
                    rows = erased_rows,
                    "deletions applied to the warehouse; rebuilding the state from the lake"
                );
                request.full = true;
            }
            let plan = batch.plan(&request).await?;
            if dry_run {
                write!(out, "{plan}")?;
                return Ok(ExitCode::SUCCESS);
            }
            let reports = batch.run(&plan, request.sources.as_deref(), !quiet).await?;
            if !erasures.is_empty() {
                inlet_batch::privacy::record_erased(batch.store(), &erasures, erased_rows).await?;
            }
            write!(out, "{}", inlet_batch::run::summary(&reports))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
