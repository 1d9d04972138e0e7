//! Redshift (Serverless) through the Redshift Data API. A step's files are already on S3 under
//! `metrics/{table}/`; a manifest listing exactly those files is written beside them
//! (`metrics/_manifests/`), and one `BatchExecuteStatement` — which Redshift runs as a single
//! transaction — deletes the slice and `COPY`s the files (`FORMAT AS PARQUET`, columns matched
//! by position, which is why the files keep table order).
//!
//! Not run against a live Redshift here (no AWS account reachable); the SQL is unit-tested for
//! the constructs Redshift refuses.

use std::time::Duration;

use aws_sdk_redshiftdata::types::StatusString;
use bytes::Bytes;
use inlet_lake::{LakeLocation, LakeStore};
use serde_json::json;

use super::{Dialect, Publication, WarehouseError, checked_schema, create_tables_sql, delete_sql};
use crate::config::RedshiftConfig;
use crate::lakeview::METRICS_PREFIX;
use crate::output::WrittenFile;

/// How often a running statement is polled, and for how long at most.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
const STATEMENT_DEADLINE: Duration = Duration::from_secs(60 * 60);

/// The manifest `COPY … MANIFEST` reads. Columnar formats require `content_length`.
pub fn manifest(location: &LakeLocation, files: &[WrittenFile]) -> String {
    let entries: Vec<_> = files
        .iter()
        .map(|f| json!({"url": location.url_of(&f.key), "mandatory": true, "meta": {"content_length": f.bytes}}))
        .collect();
    json!({"entries": entries}).to_string()
}

/// The statements of one publication, run as one transaction.
pub fn publish_sql(
    schema: &str,
    iam_role: &str,
    publication: &Publication<'_>,
    manifest_url: Option<&str>,
) -> Vec<String> {
    let mut statements = vec![delete_sql(schema, publication.table, publication.keys, publication.sources)];
    if let Some(manifest_url) = manifest_url {
        statements.push(format!(
            "COPY {schema}.{} FROM '{manifest_url}' IAM_ROLE '{}' FORMAT AS PARQUET MANIFEST",
            publication.table.name(),
            iam_role.replace('\'', "''")
        ));
    }
    statements
}

#[derive(Debug)]
pub struct Redshift {
    client: aws_sdk_redshiftdata::Client,
    config: RedshiftConfig,
    schema: String,
    store: LakeStore,
    run_id: String,
}

/// The HTTPS client of the Redshift Data API client: rustls with the `ring` provider, so no C
/// toolchain (aws-lc) is needed.
pub fn aws_http_client() -> aws_sdk_redshiftdata::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// A Data API client for the configured region (or endpoint), credentials from the default
/// AWS chain.
pub async fn data_api_client(config: &RedshiftConfig) -> aws_sdk_redshiftdata::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(aws_http_client());
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    aws_sdk_redshiftdata::Client::new(&loader.load().await)
}

impl Redshift {
    pub async fn connect(
        config: &RedshiftConfig,
        schema: &str,
        trait_columns: &[String],
        store: LakeStore,
    ) -> Result<Redshift, WarehouseError> {
        let schema = checked_schema(schema)?;
        let client = data_api_client(config).await;
        let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ").to_string();
        let redshift = Redshift { client, config: config.clone(), schema: schema.to_owned(), store, run_id };
        redshift.execute(create_tables_sql(Dialect::Redshift, schema, trait_columns)).await?;
        Ok(redshift)
    }

    pub async fn publish(&self, publication: &Publication<'_>) -> Result<u64, WarehouseError> {
        let manifest_url = if publication.files.is_empty() {
            None
        } else {
            let key = format!("{METRICS_PREFIX}/_manifests/{}-{}.manifest", publication.table.name(), self.run_id);
            let body = manifest(self.store.location(), publication.files);
            self.store.put(&key, Bytes::from(body)).await?;
            Some(self.store.location().url_of(&key))
        };
        self.execute(publish_sql(&self.schema, &self.config.iam_role, publication, manifest_url.as_deref())).await?;
        Ok(publication.rows.num_rows() as u64)
    }

    /// Deletes the rows of `ids` from the user-keyed tables in one transaction (the Data API
    /// does not say how many).
    pub async fn erase(&self, ids: &[String]) -> Result<(), WarehouseError> {
        self.execute(super::erase_sql(&self.schema, ids, Dialect::Redshift)).await
    }

    /// Runs `statements` as one transaction and waits for the outcome.
    pub async fn execute(&self, statements: Vec<String>) -> Result<(), WarehouseError> {
        let failed = |e: String| WarehouseError::Redshift(e);
        let started = self
            .client
            .batch_execute_statement()
            .workgroup_name(&self.config.workgroup)
            .database(&self.config.database)
            .set_sqls(Some(statements))
            .send()
            .await
            .map_err(|e| failed(aws_sdk_redshiftdata::error::DisplayErrorContext(&e).to_string()))?;
        let id = started.id().ok_or_else(|| failed("BatchExecuteStatement answered without an id".into()))?;
        let deadline = tokio::time::Instant::now() + STATEMENT_DEADLINE;
        loop {
            let described = self
                .client
                .describe_statement()
                .id(id)
                .send()
                .await
                .map_err(|e| failed(aws_sdk_redshiftdata::error::DisplayErrorContext(&e).to_string()))?;
            match described.status() {
                Some(StatusString::Finished) => return Ok(()),
                Some(StatusString::Failed | StatusString::Aborted) => {
                    return Err(failed(described.error().unwrap_or("statement failed").to_owned()));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(failed(format!("statement {id} still running after {STATEMENT_DEADLINE:?}")));
                }
                _ => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Dates;
    use crate::plan::Keys;
    use crate::tables::Table;
    use chrono::NaiveDate;
    use datafusion::arrow::array::RecordBatch;

    #[test]
    fn generated_sql_is_redshift_sql() {
        let keys = Keys::Dates(Dates::range(
            NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
            NaiveDate::from_ymd_opt(2026, 11, 3).expect("date"),
        ));
        let files = vec![WrittenFile {
            key: "metrics/active_users/active_users-2026-11-01-web.parquet".into(),
            bytes: 1234,
            rows: 3,
        }];
        let rows = RecordBatch::new_empty(Table::ActiveUsers.schema(&[]));
        let publication =
            Publication { table: Table::ActiveUsers, keys: &keys, sources: None, rows: &rows, files: &files };
        let location = LakeLocation::parse("s3://lake/prod").expect("location");
        let manifest: serde_json::Value = serde_json::from_str(&manifest(&location, &files)).expect("json");
        assert_eq!(
            manifest["entries"][0]["url"],
            "s3://lake/prod/metrics/active_users/active_users-2026-11-01-web.parquet"
        );
        assert_eq!(manifest["entries"][0]["meta"]["content_length"], 1234);
        let statements =
            publish_sql("inlet", "arn:aws:iam::1:role/r", &publication, Some("s3://lake/prod/metrics/_manifests/m"));
        assert_eq!(
            statements,
            [
                "DELETE FROM inlet.active_users WHERE (activity_date BETWEEN DATE '2026-11-01' AND DATE '2026-11-03')",
                "COPY inlet.active_users FROM 's3://lake/prod/metrics/_manifests/m' IAM_ROLE 'arn:aws:iam::1:role/r' \
                 FORMAT AS PARQUET MANIFEST",
            ]
        );
        let mut all = create_tables_sql(Dialect::Redshift, "inlet", &["profession".into()]);
        all.extend(statements);
        for statement in all {
            let upper = statement.to_uppercase();
            for refused in ["ON CONFLICT", "STDIN", "GENERATE_SERIES", "STRING_AGG", "JSONB", " TEXT", "INTERVAL"] {
                assert!(!upper.contains(refused), "Redshift refuses {refused}: {statement}");
            }
        }
        assert!(publish_sql("inlet", "r", &publication, None).len() == 1, "no rows: only the DELETE");
    }
}
