//! `inlet-batch tables`: the product databases' tables copied into the lake by
//! `inlet-tables`, then made queryable beside the metrics: loaded into PostgreSQL (the local
//! stand-in), or their new day added as a Spectrum partition on Redshift.
//!
//! The copy lives in its own crate (two database clients, no DataFusion) and runs from this
//! binary so one configuration file, one image and one Airflow DAG drive both.

use chrono::NaiveDate;
use inlet_tables::catalog::{self, CatalogTable};
use inlet_tables::{CopyRequest, TableReport, copy_database};

use crate::config::{BatchConfig, WarehouseKind};
use crate::run::open_store;
use crate::warehouse::checked_schema;

#[derive(Debug, thiserror::Error)]
pub enum TablesRunError {
    #[error(transparent)]
    Tables(#[from] inlet_tables::TablesError),
    #[error("{0}")]
    Request(String),
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::WarehouseError),
    #[error(transparent)]
    Batch(#[from] crate::BatchError),
}

/// A database and the tables of it to copy (`None`: all configured).
pub type Selection = Vec<(String, Option<Vec<String>>)>;

/// `database.table` names (or a bare `database` for all its tables), as the CLI takes them.
pub fn selection(config: &BatchConfig, names: &[String]) -> Result<Selection, TablesRunError> {
    if config.databases.is_empty() {
        return Err(TablesRunError::Request("no [databases.NAME] in the configuration".into()));
    }
    if names.is_empty() {
        return Ok(config.databases.keys().map(|d| (d.clone(), None)).collect());
    }
    let mut selected: Vec<(String, Option<Vec<String>>)> = Vec::new();
    for name in names {
        let (database, table) = match name.split_once('.') {
            Some((database, table)) => (database, Some(table)),
            None => (name.as_str(), None),
        };
        let Some(configured) = config.databases.get(database) else {
            return Err(TablesRunError::Request(format!("no database {database:?} configured")));
        };
        if let Some(table) = table
            && !configured.tables.contains_key(table)
        {
            return Err(TablesRunError::Request(format!("no table {table:?} configured in {database}")));
        }
        let entry = match selected.iter_mut().find(|(d, _)| d == database) {
            Some(entry) => entry,
            None => {
                selected.push((database.to_owned(), Some(Vec::new())));
                selected.last_mut().expect("just pushed")
            }
        };
        match (table, &mut entry.1) {
            (None, tables) => *tables = None,
            (Some(table), Some(tables)) => tables.push(table.to_owned()),
            (Some(_), None) => {}
        }
    }
    Ok(selected)
}

/// Copies the selected tables for `date`, then registers the committed days in the warehouse.
pub async fn run(config: &BatchConfig, names: &[String], date: NaiveDate) -> Result<Vec<TableReport>, TablesRunError> {
    let store = open_store(config).await?;
    let mut reports = Vec::new();
    for (database, tables) in selection(config, names)? {
        let database_config = &config.databases[&database];
        let request = CopyRequest { date, tables };
        let copied = copy_database(&store, &database, database_config, &request).await?;
        let committed: Vec<String> = copied.iter().filter(|r| r.error.is_none()).map(|r| r.table.clone()).collect();
        register(config, &store, &database, &committed, date).await?;
        reports.extend(copied);
    }
    Ok(reports)
}

/// Makes `tables` of `database` queryable in the configured warehouse.
async fn register(
    config: &BatchConfig,
    store: &inlet_lake::LakeStore,
    database: &str,
    tables: &[String],
    date: NaiveDate,
) -> Result<(), TablesRunError> {
    if tables.is_empty() {
        return Ok(());
    }
    let schema = checked_schema(&config.warehouse.schema)?;
    match config.warehouse.kind {
        WarehouseKind::None => {}
        WarehouseKind::Postgres => {
            let url = config.warehouse.postgres_url.as_deref().unwrap_or_default();
            let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| TablesRunError::Request(format!("PostgreSQL: {e}")))?;
            tokio::spawn(connection);
            for table in tables {
                let days = inlet_tables::copy::manifests(store, database, table).await?;
                let catalog_table = CatalogTable::from_manifests(database, table, days)?;
                let primary_key = &config.databases[database].tables[table].primary_key;
                let loaded = catalog::load_postgres(&mut client, schema, store, &catalog_table, primary_key).await?;
                tracing::info!(database, table = table.as_str(), days = loaded.len(), "loaded into PostgreSQL");
            }
            if let Some(view) = members_view(config, schema, schema, false) {
                client.batch_execute(&view).await.map_err(|e| TablesRunError::Request(format!("PostgreSQL: {e}")))?;
            }
        }
        WarehouseKind::Redshift => {
            let Some(external) = config.warehouse.redshift.tables_schema.as_deref() else {
                tracing::warn!("warehouse.redshift.tables_schema is not set: no Spectrum partition added");
                return Ok(());
            };
            let external = checked_schema(external)?;
            let redshift = crate::warehouse::redshift::Redshift::connect(
                &config.warehouse.redshift,
                schema,
                &config.trait_columns,
                store.clone(),
            )
            .await?;
            let statements = tables
                .iter()
                .map(|table| catalog::spectrum_partition(store.location(), external, database, table, date))
                .collect();
            redshift.execute(statements).await?;
        }
    }
    Ok(())
}

/// `{schema}.members` (user_id, profession, specialty) over the configured member table's
/// `_current` view in `tables_schema`: SQL that PostgreSQL and Redshift share, late-binding on
/// Redshift (views over external tables must be).
pub fn members_view(config: &BatchConfig, schema: &str, tables_schema: &str, late_binding: bool) -> Option<String> {
    let members = config.members.as_ref()?;
    let (database, table) = members.table.split_once('.')?;
    let column = |name: &Option<String>| match name {
        Some(name) => format!("CAST(\"{name}\" AS VARCHAR(256))"),
        None => "CAST(NULL AS VARCHAR(256))".into(),
    };
    Some(format!(
        "DROP VIEW IF EXISTS {schema}.members;\nCREATE VIEW {schema}.members AS SELECT CAST(\"{}\" AS VARCHAR(256)) AS user_id, \
         {} AS profession, {} AS specialty FROM {tables_schema}.{database}__{table}_current{};",
        members.user_id,
        column(&members.profession),
        column(&members.specialty),
        if late_binding { " WITH NO SCHEMA BINDING" } else { "" },
    ))
}

/// Spectrum DDL of every copied table of every configured database.
pub async fn spectrum_ddl(config: &BatchConfig, schema: &str) -> Result<String, TablesRunError> {
    let schema = checked_schema(schema)?;
    let store = open_store(config).await?;
    let mut ddl = String::new();
    for (database, database_config) in &config.databases {
        for table in catalog::tables_of(&store, database).await? {
            let primary_key =
                database_config.tables.get(&table.table).map(|t| t.primary_key.clone()).unwrap_or_default();
            ddl.push_str(&catalog::spectrum_ddl(store.location(), schema, &table, &primary_key));
            ddl.push('\n');
        }
    }
    if let Some(view) = members_view(config, &config.warehouse.schema, schema, true) {
        ddl.push_str(&view);
        ddl.push('\n');
    }
    Ok(ddl)
}
