//! The batch job over a lake on S3 (Garage, a real S3 server, through a custom endpoint):
//! events written where the gateway writes them, metrics read back from S3 and PostgreSQL.
//! Run by `tests/run.sh` with Garage and PostgreSQL up.

mod common;

use common::{event, fresh_schema, lake_files, postgres_url, rows};
use inlet_batch::config::{BatchConfig, WarehouseKind};
use inlet_batch::{Batch, RunRequest, Table};
use inlet_lake::{LakeLocation, LakeStore, S3Settings};
use serde_json::json;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: run through tests/run.sh, which starts Garage"))
}

#[tokio::test]
#[ignore = "needs Garage and PostgreSQL: run by tests/run.sh"]
async fn metrics_are_built_from_a_lake_on_s3() {
    let prefix = format!("batch-{}", std::process::id());
    let location = LakeLocation::S3 { bucket: env("GARAGE_BUCKET"), prefix: prefix.clone() };
    let settings =
        S3Settings { endpoint: Some(env("GARAGE_ENDPOINT")), force_path_style: true, ..S3Settings::default() };
    let store = LakeStore::open(location, &settings).expect("open the lake");
    let events: Vec<_> =
        [("a1", "2026-11-02T01:00:00Z"), ("a2", "2026-11-02T02:00:00Z"), ("a1", "2026-11-03T01:00:00Z")]
            .iter()
            .enumerate()
            .map(|(i, (anonymous, time))| {
                event(
                    "web",
                    json!({"messageId": format!("m{i}"), "type": "page", "anonymousId": anonymous,
                "timestamp": time, "context": {"page": {"path": "/home"}}}),
                )
            })
            .collect();
    for (key, bytes) in lake_files("gw1", &events) {
        store.put(&key, bytes.into()).await.expect("upload");
    }

    let mut config = BatchConfig { lake_url: format!("s3://{}/{prefix}", env("GARAGE_BUCKET")), ..Default::default() };
    config.s3.endpoint = Some(env("GARAGE_ENDPOINT"));
    config.s3.force_path_style = true;
    config.warehouse.kind = WarehouseKind::Postgres;
    config.warehouse.postgres_url = Some(postgres_url());
    config.warehouse.schema = "on_s3".into();
    let client = fresh_schema("on_s3").await;

    let mut batch = Batch::open(config).await.expect("open");
    let request = RunRequest {
        from: "2026-11-02".parse().expect("date"),
        to: "2026-11-03".parse().expect("date"),
        steps: Table::ALL.to_vec(),
        sources: None,
        full: false,
        update_state: true,
    };
    let plan = batch.plan(&request).await.expect("plan");
    batch.run(&plan, None, false).await.expect("run");

    assert_eq!(
        rows(&client, "SELECT activity_date, dau, wau, mau FROM on_s3.active_users ORDER BY 1").await,
        ["2026-11-02|2|2|2", "2026-11-03|1|2|2"]
    );
    let files = store.list("metrics/").await.expect("list");
    for table in ["daily_user_activity", "active_users", "retention", "page_views", "sessions"] {
        assert!(files.iter().any(|f| f.starts_with(&format!("metrics/{table}/"))), "{table} on S3: {files:?}");
    }
    eprintln!("batch on S3: {} metrics files under s3://…/{prefix}/metrics/", files.len());
}
