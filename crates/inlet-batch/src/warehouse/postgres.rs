//! PostgreSQL (the local stand-in for Redshift, and enough for small teams): rows go over the
//! wire with `COPY … FROM STDIN (FORMAT binary)` inside the transaction that deleted the slice.

use std::pin::pin;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::{Dialect, Publication, WarehouseError, checked_schema, create_tables_sql, delete_sql, sql_type};
use crate::tables::Table;

#[derive(Debug)]
pub struct Postgres {
    client: Client,
    schema: String,
}

impl Postgres {
    /// Connects and creates the schema and tables that are missing, and the columns a table
    /// gained since it was created (trait columns, columns of a newer version).
    pub async fn connect(url: &str, schema: &str, trait_columns: &[String]) -> Result<Postgres, WarehouseError> {
        let schema = checked_schema(schema)?;
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL connection closed");
            }
        });
        for statement in create_tables_sql(Dialect::Postgres, schema, trait_columns) {
            client.batch_execute(&statement).await?;
        }
        for table in Table::ALL {
            for column in table.columns(trait_columns) {
                let sql_type = sql_type(Dialect::Postgres, column.sql_type, &column.name);
                let name = table.name();
                client
                    .batch_execute(&format!(
                        "ALTER TABLE {schema}.{name} ADD COLUMN IF NOT EXISTS {} {sql_type}",
                        column.name
                    ))
                    .await?;
            }
        }
        Ok(Postgres { client, schema: schema.to_owned() })
    }

    /// The connection, for the warehouse engine (which runs its own statements on it).
    pub fn into_client(self) -> Client {
        self.client
    }

    /// Deletes the rows of `ids` from the user-keyed tables in one transaction; returns how many.
    pub async fn erase(&mut self, ids: &[String]) -> Result<u64, WarehouseError> {
        let transaction = self.client.transaction().await?;
        let mut deleted = 0;
        for (table, columns) in super::USER_KEYED_TABLES {
            let matches: Vec<String> = columns.iter().map(|c| format!("{c} = ANY($1)")).collect();
            let statement = format!("DELETE FROM {}.{} WHERE {}", self.schema, table.name(), matches.join(" OR "));
            deleted += transaction.execute(&statement, &[&ids]).await?;
        }
        transaction.commit().await?;
        Ok(deleted)
    }

    /// Replaces the publication's slice in one transaction; returns the rows loaded.
    pub async fn publish(&mut self, publication: &Publication<'_>) -> Result<u64, WarehouseError> {
        let rows = publication.rows;
        let columns: Vec<String> = rows.schema().fields().iter().map(|f| f.name().clone()).collect();
        let transaction = self.client.transaction().await?;
        transaction
            .batch_execute(&delete_sql(&self.schema, publication.table, publication.keys, publication.sources))
            .await?;
        let copy = format!(
            "COPY {}.{} ({}) FROM STDIN (FORMAT binary)",
            self.schema,
            publication.table.name(),
            columns.join(", ")
        );
        let sink = transaction.copy_in(&copy).await?;
        let loaded = write_binary(sink, std::slice::from_ref(rows)).await?;
        transaction.commit().await?;
        Ok(loaded)
    }
}

/// Writes `batches` into a `COPY … FROM STDIN (FORMAT binary)` whose columns are theirs, in
/// order; returns the rows copied.
pub async fn write_binary(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    batches: &[datafusion::arrow::array::RecordBatch],
) -> Result<u64, WarehouseError> {
    let Some(first) = batches.first() else {
        return Ok(pin!(BinaryCopyInWriter::new(sink, &[])).finish().await?);
    };
    let types = first.schema().fields().iter().map(|f| postgres_type(f.data_type())).collect::<Result<Vec<_>, _>>()?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for rows in batches {
        let arrays: Vec<&ArrayRef> = rows.columns().iter().collect();
        for row in 0..rows.num_rows() {
            let values = arrays.iter().map(|a| cell(a, row)).collect::<Vec<_>>();
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&refs).await?;
        }
    }
    Ok(writer.finish().await?)
}

fn postgres_type(data_type: &DataType) -> Result<Type, WarehouseError> {
    Ok(match data_type {
        DataType::Date32 => Type::DATE,
        DataType::Timestamp(_, _) => Type::TIMESTAMP,
        DataType::Utf8 => Type::TEXT,
        DataType::Int32 => Type::INT4,
        DataType::Int64 => Type::INT8,
        DataType::Float64 => Type::FLOAT8,
        other => {
            return Err(WarehouseError::Column { column: format!("{other}"), message: "no PostgreSQL type".into() });
        }
    })
}

type Cell = Box<dyn ToSql + Sync + Send>;

/// One value of a metrics column (the types `tables::SqlType::arrow` produces), as an
/// `Option` of the matching Rust type so that NULLs are typed too.
fn cell(array: &ArrayRef, row: usize) -> Cell {
    let valid = array.is_valid(row);
    match array.data_type() {
        DataType::Date32 => Box::new(valid.then(|| array.as_primitive::<Date32Type>().value_as_date(row)).flatten()),
        DataType::Timestamp(_, _) => {
            Box::new(valid.then(|| array.as_primitive::<TimestampMicrosecondType>().value_as_datetime(row)).flatten())
        }
        DataType::Int32 => Box::new(valid.then(|| array.as_primitive::<Int32Type>().value(row))),
        DataType::Int64 => Box::new(valid.then(|| array.as_primitive::<Int64Type>().value(row))),
        DataType::Float64 => Box::new(valid.then(|| array.as_primitive::<Float64Type>().value(row))),
        _ => Box::new(valid.then(|| array.as_string::<i32>().value(row).to_owned())),
    }
}
