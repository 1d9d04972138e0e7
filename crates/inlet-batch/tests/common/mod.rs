//! Writing lake files as the gateway's lake writer does, and reading PostgreSQL back.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use inlet_lake::parquet_file::ParquetFile;
use inlet_lake::schema::EventColumns;
use inlet_lake::{Codec, Partition};
use inlet_segment::{StoredEvent, StoredRecord};
use serde_json::{Value, json};

/// An event as the gateway stores it; `receivedAt` is a second after `timestamp` unless given.
pub fn event(source: &str, mut fields: Value) -> StoredEvent {
    let object = fields.as_object_mut().unwrap();
    let timestamp = object["timestamp"].as_str().unwrap().to_owned();
    if !object.contains_key("receivedAt") {
        let time: DateTime<Utc> = timestamp.parse().unwrap();
        object.insert("receivedAt".into(), json!((time + Duration::seconds(1)).to_rfc3339()));
    }
    object.entry("originalTimestamp").or_insert(json!(timestamp));
    object.entry("context").or_insert(json!({"library": {"name": "test", "version": "1"}}));
    StoredEvent::new(source, object.clone())
}

/// Writes `events` into hourly partition files under `lake`, named `{tag}-…` like one flush of
/// a gateway instance.
pub fn write_lake(lake: &Path, tag: &str, events: &[StoredEvent]) {
    for (key, bytes) in lake_files(tag, events) {
        let path = lake.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// The lake files (key, Parquet bytes) of `events`.
pub fn lake_files(tag: &str, events: &[StoredEvent]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let min_time = "2015-01-01T00:00:00Z".parse().unwrap();
    let records: Vec<Vec<u8>> = events.iter().map(StoredEvent::encode).collect();
    let mut partitions: std::collections::BTreeMap<Partition, Vec<StoredRecord<'_>>> = Default::default();
    for record in &records {
        let record = StoredRecord::decode(record).unwrap();
        partitions.entry(Partition::of(&record, min_time)).or_default().push(record);
    }
    for (partition, records) in partitions {
        let mut columns = EventColumns::default();
        for record in &records {
            columns.append(record);
        }
        let mut file = ParquetFile::new(Codec::Gzip);
        file.write(&columns.finish()).unwrap();
        files.push((partition.file_key(tag, 0, 1), file.finish().unwrap()));
    }
    files
}

/// The PostgreSQL the test script started (`tests/postgres/postgres.sh`).
pub fn postgres_url() -> String {
    std::env::var("PG_TEST_URL").expect("PG_TEST_URL: run through tests/run.sh, which starts PostgreSQL")
}

/// A connection to that PostgreSQL, and `schema` emptied (dropped; the batch job creates it).
pub async fn fresh_schema(schema: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
    client
}

/// Every row of `query` as text (the simple protocol gives text), columns joined by `|`,
/// NULL as `NULL`.
pub async fn rows(client: &tokio_postgres::Client, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    for message in client.simple_query(query).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            let cells: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("NULL")).collect();
            out.push(cells.join("|"));
        }
    }
    out
}
