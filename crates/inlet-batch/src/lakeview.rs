//! The lake as DataFusion sees it: `events` over `{lake}/events/source=/dt=/hour=/*.parquet`
//! (the folders become the `source`, `dt` and `hour` columns, so a filter on them skips whole
//! partitions), and each metrics table over `{lake}/metrics/{table}/`. Local directories and
//! S3 (with a custom endpoint) are read through `object_store`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use inlet_lake::LakeLocation;
use inlet_lake::layout::EVENTS_PREFIX;
use inlet_lake::schema::LAKE_SCHEMA;
use serde_json::Value;

use crate::config::BatchConfig;
use crate::sql::{Params, Query};
use crate::state::DaySummary;
use crate::tables::Table;

/// Folder of the metrics tables, beside `events/`.
pub const METRICS_PREFIX: &str = "metrics";

#[derive(Debug, thiserror::Error)]
pub enum LakeViewError {
    #[error("query {query}: {error}")]
    InQuery { query: &'static str, error: DataFusionError },
    #[error("lake location: {0}")]
    Location(String),
    #[error("S3 client: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error(transparent)]
    Query(#[from] DataFusionError),
    #[error(transparent)]
    Sql(#[from] crate::sql::SqlError),
}

/// A DataFusion session over one lake.
pub struct LakeView {
    pub ctx: SessionContext,
    root: String,
    trait_columns: Vec<String>,
}

impl std::fmt::Debug for LakeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeView").field("root", &self.root).finish()
    }
}

impl LakeView {
    pub fn open(config: &BatchConfig) -> Result<LakeView, LakeViewError> {
        let location = LakeLocation::parse(&config.lake_url).map_err(|e| LakeViewError::Location(e.to_string()))?;
        let mut session = SessionConfig::new().with_information_schema(false).with_target_partitions(num_partitions());
        crate::sql::session_options(session.options_mut())?;
        // Sorts, aggregations and windows spill to temporary files beyond the limit.
        let pool = FairSpillPool::new(
            usize::try_from(config.memory_limit_mb).unwrap_or(usize::MAX).saturating_mul(1024 * 1024),
        );
        let runtime = RuntimeEnvBuilder::new().with_memory_pool(Arc::new(pool));
        let ctx = SessionContext::new_with_config_rt(session, runtime.build_arc()?);
        let root = match &location {
            LakeLocation::Local(path) => {
                let absolute = std::path::absolute(path).map_err(|e| LakeViewError::Location(e.to_string()))?;
                format!("{}/", absolute.display().to_string().trim_end_matches('/'))
            }
            LakeLocation::S3 { bucket, prefix } => {
                let settings = inlet_lake::S3Settings {
                    endpoint: config.s3.endpoint.clone(),
                    region: config.s3.region.clone(),
                    force_path_style: config.s3.force_path_style,
                    ..inlet_lake::S3Settings::default()
                };
                let objects = inlet_lake::store::s3_object_store(bucket, &settings)
                    .map_err(|e| LakeViewError::Location(e.to_string()))?;
                let url =
                    url::Url::parse(&format!("s3://{bucket}")).map_err(|e| LakeViewError::Location(e.to_string()))?;
                ctx.register_object_store(&url, objects);
                if prefix.is_empty() { format!("s3://{bucket}/") } else { format!("s3://{bucket}/{prefix}/") }
            }
        };
        ctx.register_udf(json_text_udf());
        ctx.register_udf(json_element_text_udf());
        Ok(LakeView { ctx, root, trait_columns: config.trait_columns.clone() })
    }

    /// Registers `events`. The files also hold `source`; the folder's value is used instead,
    /// so that filters on it prune partitions.
    pub async fn register_events(&self) -> Result<(), LakeViewError> {
        let fields = LAKE_SCHEMA.fields().iter().filter(|f| f.name() != "source").cloned().collect::<Vec<_>>();
        let file_schema = Arc::new(Schema::new(fields));
        let partitions = ["source", "dt", "hour"].map(|c| (c.to_owned(), DataType::Utf8)).to_vec();
        self.register_listing("events", &format!("{EVENTS_PREFIX}/"), file_schema, partitions).await
    }

    /// (Re-)registers a metrics table over the files `keys` (an empty table without any), so a
    /// step reads what the steps before it wrote, and only the days it needs.
    pub async fn register_metrics(&self, table: Table, keys: &[String]) -> Result<(), LakeViewError> {
        let schema = table.schema(&self.trait_columns);
        self.ctx.deregister_table(table.name())?;
        if keys.is_empty() {
            let empty = MemTable::try_new(schema, vec![vec![]])?;
            self.ctx.register_table(table.name(), Arc::new(empty))?;
            return Ok(());
        }
        let urls = keys
            .iter()
            .map(|key| ListingTableUrl::parse(format!("{}{key}", self.root)))
            .collect::<Result<Vec<_>, _>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
        self.ctx.register_table(table.name(), Arc::new(ListingTable::try_new(config)?))?;
        Ok(())
    }

    async fn register_listing(
        &self,
        name: &str,
        folder: &str,
        schema: SchemaRef,
        partitions: Vec<(String, DataType)>,
    ) -> Result<(), LakeViewError> {
        let url = ListingTableUrl::parse(format!("{}{folder}", self.root))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partitions);
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
        self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
        Ok(())
    }

    /// Runs one of the job's queries with its parameters bound.
    pub async fn run(&self, query: &Query, params: Params) -> Result<Vec<RecordBatch>, LakeViewError> {
        let started = std::time::Instant::now();
        let text = query.text(crate::sql::Dialect::DataFusion)?;
        let frame = self.ctx.sql(&text).await.map_err(|e| in_query(query, e))?;
        let frame = frame.with_param_values(params.into_values()).map_err(|e| in_query(query, e))?;
        let rows = frame.collect().await.map_err(|e| in_query(query, e))?;
        tracing::debug!(query = query.name, seconds = started.elapsed().as_secs_f64(), "query done");
        Ok(rows)
    }

    /// Starts one of the job's queries in the background (planned now, executed on the runtime).
    pub async fn start(
        &self,
        query: &Query,
        params: Params,
    ) -> Result<tokio::task::JoinHandle<Result<Vec<RecordBatch>, LakeViewError>>, LakeViewError> {
        let text = query.text(crate::sql::Dialect::DataFusion)?;
        let frame = self.ctx.sql(&text).await.map_err(|e| in_query(query, e))?;
        let frame = frame.with_param_values(params.into_values()).map_err(|e| in_query(query, e))?;
        let query = *query;
        Ok(tokio::spawn(async move { frame.collect().await.map_err(|e| in_query(&query, e)) }))
    }

    /// The columns a query returns, without running it.
    pub async fn plan_schema(&self, query: &Query) -> Result<SchemaRef, LakeViewError> {
        let text = query.text(crate::sql::Dialect::DataFusion)?;
        let frame = self.ctx.sql(&text).await.map_err(|e| in_query(query, e))?;
        Ok(frame.schema().inner().clone())
    }

    /// Registers rows held in memory as table `name`, spread over the partitions so scans of it
    /// use every core.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<(), LakeViewError> {
        let partitions = num_partitions();
        let mut spread: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
        for (i, batch) in batches.into_iter().filter(|b| b.num_rows() > 0).enumerate() {
            spread[i % partitions].push(batch);
        }
        self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, Arc::new(MemTable::try_new(schema, spread)?))?;
        Ok(())
    }

    /// Reads one Parquet file of the lake (`key` under its root) with the given columns.
    pub async fn read_file(&self, key: &str, schema: &SchemaRef) -> Result<Vec<RecordBatch>, LakeViewError> {
        let options = ParquetReadOptions::default().schema(schema);
        Ok(self.ctx.read_parquet(format!("{}{key}", self.root), options).await?.collect().await?)
    }

    /// Registers a day summary of the state: its folder, with the `day` folders as a column.
    pub async fn register_summary(&self, summary: DaySummary) -> Result<(), LakeViewError> {
        let partitions = vec![("day".to_owned(), DataType::Date32)];
        self.register_listing(&summary.table(), &summary.folder(), summary.schema(), partitions).await
    }
}

fn in_query(query: &Query, source: DataFusionError) -> LakeViewError {
    LakeViewError::InQuery { query: query.name, error: source }
}

fn num_partitions() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// `json_text(json, key)`: the top-level field `key` of a JSON object held as text, as text
/// (strings unquoted, other values as JSON); NULL when absent or not an object. The lake keeps
/// `properties` and `traits` as JSON text.
fn json_text_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "json_text",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let json = string_array(&arrays[0])?;
            let keys = string_array(&arrays[1])?;
            let mut out = StringBuilder::new();
            for row in 0..json.len() {
                let value = (json.is_valid(row) && keys.is_valid(row))
                    .then(|| field_text(json.value(row), keys.value(row)))
                    .flatten();
                out.append_option(value);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// `json_element_text(json, i, key)`: the field `key` of the object at position `i` (from 0) of a
/// JSON array held as text, as [`json_text`](json_text_udf) reads it; NULL when any is absent. The
/// lake keeps a tracking plan's `violations` as such an array.
fn json_element_text_udf() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "json_element_text",
        vec![DataType::Utf8, DataType::Int64, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let json = string_array(&arrays[0])?;
            let indexes = arrays[1]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Execution("json_element_text takes an integer position".into()))?;
            let keys = string_array(&arrays[2])?;
            let mut out = StringBuilder::new();
            for row in 0..json.len() {
                let value = (json.is_valid(row) && indexes.is_valid(row) && keys.is_valid(row))
                    .then(|| element_field_text(json.value(row), indexes.value(row), keys.value(row)))
                    .flatten();
                out.append_option(value);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

fn element_field_text(json: &str, index: i64, key: &str) -> Option<String> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else { return None };
    match items.get(usize::try_from(index).ok()?)?.as_object()?.get(key)? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn string_array(array: &ArrayRef) -> Result<&StringArray, DataFusionError> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Execution("json_text takes text arguments".into()))
}

fn field_text(json: &str, key: &str) -> Option<String> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(json) else { return None };
    match object.get(key)? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}
