//! # inlet-batch: the metrics tables, from the lake to the warehouse
//!
//! A separate binary from the gateway (DataFusion is large, and a batch job's memory should
//! not share a process with ingestion). It reduces each reporting day of the lake once to
//! summaries kept in `{lake}/state/`, merges what history contributes into state tables there,
//! runs each metric's SQL over those in dependency order, writes each table as Parquet under
//! `{lake}/metrics/` and publishes it to PostgreSQL or Redshift.
//!
//! | module | owns |
//! |---|---|
//! | `config` | the TOML configuration and its validation |
//! | `calendar` | reporting days, weeks and months; the UTC partitions a day spans |
//! | `tables` | each table's columns, types and replacement rule |
//! | `plan` | the step graph and which dates a run replaces |
//! | `sql` | the SQL of each step and summary (`src/sql/*.sql`), bound parameters |
//! | `sessions` | splitting calls into sessions and merging stitched ones (a sweep) |
//! | `state` | day summaries and merged state in the lake, what changed since the last run |
//! | `lakeview` | the DataFusion session over the lake (local or S3) |
//! | `output` | the metrics Parquet files |
//! | `users` | merging identify traits |
//! | `warehouse` | publishing: PostgreSQL over the wire, Redshift through the Data API |
//! | `product_tables` | `tables run`: product database tables copied (`inlet-tables`) and registered |
//! | `run` | running a plan, progress and summary |
//!
//! Every step is idempotent per key date and source: it replaces that slice of its table in
//! the files and in the warehouse (one transaction), so re-runs, retries and backfills are safe.

pub mod calendar;
pub mod completeness;
pub mod config;
pub mod lakeview;
pub mod output;
pub mod plan;
pub mod privacy;
pub mod product_tables;
pub mod retention;
pub mod run;
pub mod sessions;
pub mod sql;
pub mod state;
pub mod tables;
pub mod users;
pub mod warehouse;

pub use config::BatchConfig;
pub use run::{Batch, BatchError, RunRequest, StepReport};
pub use tables::Table;
