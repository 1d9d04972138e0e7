//! MySQL and MariaDB: one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` per run (an
//! InnoDB read view taken at once, shared by every table), the session's `time_zone` set to
//! UTC so `TIMESTAMP` values arrive in UTC, and rows read through the binary protocol (a
//! prepared statement): numbers, dates and times arrive typed, floats exactly, and the result
//! streams from the socket as it is read.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts, Value};

use crate::config::{DatabaseConfig, TlsMode};
use crate::copy::{SourceColumn, TableSink};

#[derive(Debug)]
pub struct MysqlSource {
    conn: Conn,
}

impl MysqlSource {
    pub async fn open(config: &DatabaseConfig, password: Option<String>) -> Result<MysqlSource, String> {
        let url = config.url.replacen("mariadb://", "mysql://", 1);
        let opts = Opts::from_url(&url).map_err(|e| e.to_string())?;
        let mut builder = OptsBuilder::from_opts(opts).prefer_socket(false).pass(password);
        builder = match config.tls {
            TlsMode::Disable => builder.ssl_opts(None::<SslOpts>),
            TlsMode::Require => builder.ssl_opts(
                SslOpts::default().with_danger_accept_invalid_certs(true).with_danger_skip_domain_validation(true),
            ),
            TlsMode::VerifyFull => {
                let mut ssl = SslOpts::default();
                if let Some(path) = &config.tls_ca_file {
                    ssl = ssl.with_root_certs(vec![path.clone().into()]);
                }
                builder.ssl_opts(ssl)
            }
        };
        let mut conn = Conn::new(builder).await.map_err(|e| e.to_string())?;
        for statement in [
            "SET NAMES utf8mb4",
            "SET SESSION time_zone = '+00:00'",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        ] {
            conn.query_drop(statement).await.map_err(|e| e.to_string())?;
        }
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(|e| e.to_string())?;
        Ok(MysqlSource { conn })
    }

    pub async fn describe(&mut self, schema: Option<&str>, table: &str) -> Result<Vec<SourceColumn>, String> {
        let rows: Vec<(String, String)> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (schema, table),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|(name, type_name)| SourceColumn { name, type_name, category: None }).collect())
    }

    pub async fn max_cursor(&mut self, from: &str, condition: &str, cursor: &str) -> Result<Option<String>, String> {
        let value: Option<Option<String>> = self
            .conn
            .query_first(format!("SELECT CAST(MAX({cursor}) AS CHAR) FROM {from} WHERE {condition}"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(value.flatten())
    }

    pub async fn stream(&mut self, select: &str, sink: &mut TableSink) -> Result<(), String> {
        let mut result = self.conn.exec_iter(select, ()).await.map_err(|e| e.to_string())?;
        let width = sink.width();
        while let Some(row) = result.next().await.map_err(|e| e.to_string())? {
            for index in 0..width {
                let column = sink.column(index);
                let appended = match row.as_ref(index) {
                    None | Some(Value::NULL) => {
                        column.append_null();
                        Ok(())
                    }
                    Some(Value::Bytes(bytes)) => column.append_text(Some(bytes)),
                    Some(Value::Int(value)) => column.append_i64(*value),
                    Some(Value::UInt(value)) => column.append_u64(*value),
                    Some(Value::Float(value)) => column.append_f32(*value),
                    Some(Value::Double(value)) => column.append_f64(*value),
                    Some(Value::Date(year, month, day, hour, minute, second, micros)) => column.append_datetime([
                        u32::from(*year),
                        u32::from(*month),
                        u32::from(*day),
                        u32::from(*hour),
                        u32::from(*minute),
                        u32::from(*second),
                        *micros,
                    ]),
                    Some(Value::Time(negative, days, hours, minutes, seconds, micros)) => column.append_time(
                        *negative,
                        *days,
                        [u32::from(*hours), u32::from(*minutes), u32::from(*seconds), *micros],
                    ),
                };
                appended.map_err(|e| sink.value_error(index, e))?;
            }
            sink.end_row().await?;
        }
        Ok(())
    }

    pub async fn close(self) {
        let mut conn = self.conn;
        let _ = conn.query_drop("ROLLBACK").await;
        let _ = conn.disconnect().await;
    }
}
