//! # inlet-tables: product database tables into the lake
//!
//! Copies the configured tables of PostgreSQL and MySQL/MariaDB databases (read replicas) into
//! the lake as Parquet, beside the events, so BI never queries production: one consistent
//! snapshot of all of a database's tables per run, rows streamed in batches to Parquet row
//! groups that are uploaded as they are written (memory bounded by one row group, whatever the
//! table's size), the connection closed as soon as the last row is read, and each day
//! committed by a manifest written last (`manifest` states the layout and invariants).
//!
//! | module | owns |
//! |---|---|
//! | `config` | databases and tables to copy, validated whole at start |
//! | `types` | each engine's column types → the lake's (docs/tables.md) |
//! | `columns` | Arrow columns from database values; hashing; zero dates |
//! | `postgres`, `mysql` | connections, snapshots, catalogs, row streams |
//! | `parts` | streaming Parquet parts to the store |
//! | `manifest` | layout, manifests, watermarks, schema changes |
//! | `copy` | one database's run: plan, copy, commit |
//! | `catalog` | Glue/Spectrum DDL and the PostgreSQL stand-in's tables |

pub mod catalog;
pub mod columns;
pub mod config;
pub mod copy;
pub mod manifest;
pub mod mysql;
pub mod parts;
pub mod postgres;
mod tls;
pub mod types;

pub use config::{DatabaseConfig, Engine, Mode, TableConfig};
pub use copy::{CopyRequest, ReadRun, TableReport, copy_database, read_database};

/// Errors of a copy, each naming the database, table or column at fault.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{database}: {message}")]
    Connect { database: String, message: String },
    #[error("{database}.{table}: {message}")]
    Table { database: String, table: String, message: String },
    #[error("lake: {0}")]
    Lake(String),
    #[error("warehouse: {0}")]
    Warehouse(String),
}

impl From<inlet_lake::store::StoreError> for TablesError {
    fn from(error: inlet_lake::store::StoreError) -> TablesError {
        TablesError::Lake(error.to_string())
    }
}
