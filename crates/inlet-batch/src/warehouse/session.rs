//! One SQL session in the warehouse, for the warehouse engine: statements and queries inside
//! explicit transactions, so a step's `DELETE` and `INSERT … SELECT` commit together and the
//! state update can read what it just merged before it commits.
//!
//! - PostgreSQL: one connection; queries use the simple protocol (text cells).
//! - Redshift: a Data API session (`ExecuteStatement` with `SessionKeepAliveSeconds`, then the
//!   returned `SessionId`), one statement per call, each polled to its end; a query's rows come
//!   from `GetStatementResult`, page by page. Throttled or over-limit calls (`ThrottlingException`,
//!   `ActiveStatementsExceededException`, `ActiveSessionsExceededException`) are retried with the
//!   lake's backoff; a failed statement's error text is returned as Redshift wrote it.

use std::time::Duration;

use aws_sdk_redshiftdata::types::{Field, StatusString};
use inlet_lake::backoff::Backoff;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::WarehouseError;
use crate::config::RedshiftConfig;

/// A query's rows, cells as text (`None`: NULL).
pub type Rows = Vec<Vec<Option<String>>>;

#[derive(Debug)]
pub enum Session {
    Postgres(Client),
    Redshift(DataApiSession),
}

impl Session {
    pub async fn execute(&mut self, statement: &str) -> Result<(), WarehouseError> {
        tracing::debug!(statement, "warehouse statement");
        match self {
            Session::Postgres(client) => Ok(client.batch_execute(statement).await?),
            Session::Redshift(session) => session.run(statement, false).await.map(drop),
        }
    }

    pub async fn query(&mut self, statement: &str) -> Result<Rows, WarehouseError> {
        match self {
            Session::Postgres(client) => {
                let mut rows = Vec::new();
                for message in client.simple_query(statement).await? {
                    if let SimpleQueryMessage::Row(row) = message {
                        rows.push((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect());
                    }
                }
                Ok(rows)
            }
            Session::Redshift(session) => session.run(statement, true).await,
        }
    }

    /// Runs `statements` in one transaction; rolls back and returns the error if one fails.
    pub async fn transaction(&mut self, statements: &[String]) -> Result<(), WarehouseError> {
        self.execute("BEGIN").await?;
        for statement in statements {
            if let Err(error) = self.execute(statement).await {
                let _ = self.execute("ROLLBACK").await;
                return Err(error);
            }
        }
        self.execute("COMMIT").await
    }
}

/// How often a running statement is polled, and for how long at most.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const STATEMENT_DEADLINE: Duration = Duration::from_secs(60 * 60);
/// Idle time after which Redshift ends the session (the engine's pauses are far shorter).
const KEEP_ALIVE_SECONDS: i32 = 600;
/// Attempts of a throttled call before giving up.
const THROTTLED_ATTEMPTS: u32 = 8;
const THROTTLE_BACKOFF: Backoff = Backoff { base: Duration::from_millis(500), max: Duration::from_secs(20) };

#[derive(Debug)]
pub struct DataApiSession {
    client: aws_sdk_redshiftdata::Client,
    config: RedshiftConfig,
    session_id: Option<String>,
}

impl DataApiSession {
    pub fn new(client: aws_sdk_redshiftdata::Client, config: RedshiftConfig) -> DataApiSession {
        DataApiSession { client, config, session_id: None }
    }

    /// Runs one statement in the session and waits for it; the rows when `rows`.
    async fn run(&mut self, statement: &str, rows: bool) -> Result<Rows, WarehouseError> {
        let id = self.submit(statement).await?;
        let deadline = tokio::time::Instant::now() + STATEMENT_DEADLINE;
        loop {
            let described = retry_throttled(|| self.client.describe_statement().id(&id).send()).await?;
            match described.status() {
                Some(StatusString::Finished) => break,
                Some(StatusString::Failed | StatusString::Aborted) => {
                    let error = described.error().unwrap_or("statement failed");
                    return Err(WarehouseError::Redshift(format!("{error} (in: {})", first_line(statement))));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(WarehouseError::Redshift(format!(
                        "statement {id} still running after {STATEMENT_DEADLINE:?}"
                    )));
                }
                _ => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
        if !rows {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page =
                retry_throttled(|| self.client.get_statement_result().id(&id).set_next_token(token.clone()).send())
                    .await?;
            for record in page.records() {
                out.push(record.iter().map(field_text).collect());
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Starts `statement`; the first call opens the session.
    async fn submit(&mut self, statement: &str) -> Result<String, WarehouseError> {
        let answer = retry_throttled(|| {
            let call = self.client.execute_statement().sql(statement);
            match &self.session_id {
                Some(session) => call.session_id(session),
                None => call
                    .workgroup_name(&self.config.workgroup)
                    .database(&self.config.database)
                    .session_keep_alive_seconds(KEEP_ALIVE_SECONDS),
            }
            .send()
        })
        .await?;
        if self.session_id.is_none() {
            self.session_id = answer.session_id().map(str::to_owned);
        }
        answer
            .id()
            .map(str::to_owned)
            .ok_or_else(|| WarehouseError::Redshift("ExecuteStatement answered without an id".into()))
    }
}

fn first_line(statement: &str) -> &str {
    statement.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")).unwrap_or(statement)
}

fn field_text(field: &Field) -> Option<String> {
    match field {
        Field::IsNull(true) => None,
        Field::StringValue(text) => Some(text.clone()),
        Field::LongValue(value) => Some(value.to_string()),
        Field::DoubleValue(value) => Some(value.to_string()),
        Field::BooleanValue(value) => Some(if *value { "t" } else { "f" }.into()),
        _ => None,
    }
}

/// Whether a Data API error is a throttle or a concurrency limit, worth retrying as is.
fn throttled(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("ThrottlingException" | "ActiveStatementsExceededException" | "ActiveSessionsExceededException")
    )
}

async fn retry_throttled<T, E, F, Fut>(mut call: F) -> Result<T, WarehouseError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, aws_sdk_redshiftdata::error::SdkError<E>>>,
    E: aws_sdk_redshiftdata::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut retry = 0;
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(error) => {
                let code = error.as_service_error().and_then(|e| e.code()).map(str::to_owned);
                retry += 1;
                if !throttled(code.as_deref()) || retry >= THROTTLED_ATTEMPTS {
                    return Err(WarehouseError::Redshift(
                        aws_sdk_redshiftdata::error::DisplayErrorContext(&error).to_string(),
                    ));
                }
                tracing::warn!(code = code.as_deref(), retry, "Redshift Data API throttled; retrying");
                tokio::time::sleep(THROTTLE_BACKOFF.delay(retry)).await;
            }
        }
    }
}
