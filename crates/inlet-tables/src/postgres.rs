//! PostgreSQL: one `REPEATABLE READ, READ ONLY, DEFERRABLE` transaction per run (every table
//! read from the same snapshot; on a hot-standby replica, where `SERIALIZABLE` is refused, this
//! is the strongest level), rows read by `COPY (SELECT …) TO STDOUT (FORMAT binary)`: the
//! server's fastest output, decoded here without a row object per row.

use std::pin::Pin;
use std::str::FromStr;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, CopyOutStream, NoTls};

use crate::config::{DatabaseConfig, TlsMode};
use crate::copy::{SourceColumn, TableSink};

#[derive(Debug)]
pub struct PostgresSource {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE; \
    SET LOCAL TIME ZONE 'UTC'; SET LOCAL statement_timeout = 0; SET LOCAL extra_float_digits = 3";

impl PostgresSource {
    pub async fn open(config: &DatabaseConfig, password: Option<String>) -> Result<PostgresSource, String> {
        let mut settings = tokio_postgres::Config::from_str(&config.url).map_err(|e| e.to_string())?;
        if let Some(password) = password {
            settings.password(password);
        }
        settings.application_name("inlet-tables");
        let connection = match config.tls {
            TlsMode::Disable => {
                settings.ssl_mode(SslMode::Disable);
                let (client, connection) = settings.connect(NoTls).await.map_err(|e| error_text(&e))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
            TlsMode::Require | TlsMode::VerifyFull => {
                settings.ssl_mode(SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(crate::tls::client_config(config)?);
                let (client, connection) = settings.connect(tls).await.map_err(|e| error_text(&e))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
        };
        let (client, connection) = connection;
        client.batch_execute(SNAPSHOT).await.map_err(|e| error_text(&e))?;
        Ok(PostgresSource { client, connection })
    }

    pub async fn describe(&mut self, schema: &str, table: &str) -> Result<Vec<SourceColumn>, String> {
        // Domains are read as their base type.
        let rows = self
            .client
            .query(
                "SELECT a.attname::text, \
                        format_type(COALESCE(NULLIF(t.typbasetype, 0), a.atttypid), \
                                    CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END), \
                        COALESCE(b.typcategory, t.typcategory)::text \
                 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 LEFT JOIN pg_type b ON b.oid = NULLIF(t.typbasetype, 0) \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&schema, &table],
            )
            .await
            .map_err(|e| error_text(&e))?;
        Ok(rows
            .iter()
            .map(|row| SourceColumn {
                name: row.get(0),
                type_name: row.get(1),
                category: row.get::<_, String>(2).chars().next(),
            })
            .collect())
    }

    pub async fn max_cursor(&mut self, from: &str, condition: &str, cursor: &str) -> Result<Option<String>, String> {
        let row = self
            .client
            .query_one(&format!("SELECT max({cursor})::text FROM {from} WHERE {condition}"), &[])
            .await
            .map_err(|e| error_text(&e))?;
        Ok(row.get(0))
    }

    pub async fn stream(&mut self, select: &str, sink: &mut TableSink) -> Result<(), String> {
        let stream = self
            .client
            .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
            .await
            .map_err(|e| error_text(&e))?;
        let mut reader = CopyReader { stream: Box::pin(stream), buffer: BytesMut::new(), header_read: false };
        let width = sink.width();
        let mut fields: Vec<Option<(usize, usize)>> = Vec::with_capacity(width);
        loop {
            let Some(tuple) = reader.next_tuple(width, &mut fields).await? else { return Ok(()) };
            for (index, field) in fields.iter().enumerate() {
                let value = field.map(|(start, end)| &tuple[start..end]);
                sink.column(index).append_postgres(value).map_err(|e| sink.value_error(index, e))?;
            }
            sink.end_row().await?;
        }
    }

    pub async fn close(self) {
        // Ends the snapshot at once; a read-only transaction has nothing to commit.
        let _ = self.client.batch_execute("ROLLBACK").await;
        drop(self.client);
        let _ = self.connection.await;
    }
}

/// The binary `COPY` format: an 11-byte signature, flags and an extension area, then per row a
/// 16-bit field count and per field a 32-bit length (-1: NULL) and the bytes; a count of -1
/// ends the data.
struct CopyReader {
    stream: Pin<Box<CopyOutStream>>,
    buffer: BytesMut,
    header_read: bool,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

impl CopyReader {
    async fn fill(&mut self) -> Result<bool, String> {
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                self.buffer.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(e)) => Err(error_text(&e)),
            None => Ok(false),
        }
    }

    /// The next row's bytes, with each field's range in `fields`; `None` at the end.
    async fn next_tuple(
        &mut self,
        width: usize,
        fields: &mut Vec<Option<(usize, usize)>>,
    ) -> Result<Option<Bytes>, String> {
        loop {
            if !self.header_read {
                if self.buffer.len() >= SIGNATURE.len() + 8 {
                    if &self.buffer[..SIGNATURE.len()] != SIGNATURE {
                        return Err("COPY output is not in binary format".into());
                    }
                    let extension = u32::from_be_bytes(self.buffer[15..19].try_into().unwrap_or_default()) as usize;
                    if self.buffer.len() >= 19 + extension {
                        self.buffer.advance(19 + extension);
                        self.header_read = true;
                        continue;
                    }
                }
            } else if let Some(length) = tuple_length(&self.buffer, width, fields)? {
                return Ok(length.map(|length| self.buffer.split_to(length).freeze()));
            }
            if !self.fill().await? {
                return if self.buffer.is_empty() && self.header_read {
                    Ok(None)
                } else {
                    Err("COPY output ended in the middle of a row".into())
                };
            }
        }
    }
}

/// `Some(Some(length))` when a whole row is buffered (its fields' ranges in `fields`),
/// `Some(None)` at the trailer, `None` when more bytes are needed.
fn tuple_length(
    buffer: &[u8],
    width: usize,
    fields: &mut Vec<Option<(usize, usize)>>,
) -> Result<Option<Option<usize>>, String> {
    if buffer.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([buffer[0], buffer[1]]);
    if count == -1 {
        return Ok(Some(None));
    }
    if count as usize != width {
        return Err(format!("COPY row has {count} fields, expected {width}"));
    }
    fields.clear();
    let mut at = 2;
    for _ in 0..width {
        if buffer.len() < at + 4 {
            return Ok(None);
        }
        let length = i32::from_be_bytes(buffer[at..at + 4].try_into().unwrap_or_default());
        at += 4;
        if length < 0 {
            fields.push(None);
            continue;
        }
        let end = at + length as usize;
        if buffer.len() < end {
            return Ok(None);
        }
        fields.push(Some((at, end)));
        at = end;
    }
    Ok(Some(Some(at)))
}

fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => inlet_lake::store::error_text(error),
    }
}
