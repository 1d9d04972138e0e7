//! The golden corpus (`tests/golden/*.json`): request bodies as each official SDK sends them,
//! and the events the gateway must store for them, compared field by field.
//!
//! `INLET_UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected events from what the
//! gateway stores now; review the diff before committing it.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use common::{FixedClock, TestGateway};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn run_case(path: &PathBuf, update: bool) -> Result<(), String> {
    let mut case: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let received_at = inlet_segment::parse_timestamp(case["received_at"].as_str().unwrap()).unwrap();
    let gateway = TestGateway::start_with(Arc::new(FixedClock(received_at)), |_| {}).await;
    let request = &case["request"];
    let mut body = serde_json::to_vec(&request["body"]).unwrap();
    if request["gzip"].as_bool().unwrap_or(false) {
        body = gzip(&body);
    }
    let mut builder = gateway.post(request["path"].as_str().unwrap());
    for (name, value) in request["headers"].as_object().unwrap() {
        builder = builder.header(name.as_str(), value.as_str().unwrap());
    }
    builder = if request["chunked"].as_bool().unwrap_or(false) {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(64).map(|c| Ok(c.to_vec())).collect();
        builder.body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
    } else {
        builder.body(body)
    };
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    let response_body: Value = response.json().await.unwrap();
    let stored: Vec<Value> =
        gateway.stored().into_iter().map(|e| serde_json::json!({"source": e.source, "event": e.event})).collect();
    gateway.stop().await;
    if status != case["response"]["status"].as_u64().unwrap() as u16 {
        return Err(format!("status {status}: {response_body}"));
    }
    if update {
        case["stored"] = Value::Array(stored);
        let mut text = serde_json::to_string_pretty(&case).unwrap();
        text.push('\n');
        std::fs::write(path, text).unwrap();
        return Ok(());
    }
    let expected = case["stored"].as_array().ok_or("no expected events; run with INLET_UPDATE_GOLDEN=1")?;
    if expected.len() != stored.len() {
        return Err(format!("expected {} events, stored {}", expected.len(), stored.len()));
    }
    for (i, (want, got)) in expected.iter().zip(&stored).enumerate() {
        if want != got {
            return Err(format!(
                "event {i} differs\nexpected: {}\nstored:   {}",
                serde_json::to_string(want).unwrap(),
                serde_json::to_string(got).unwrap()
            ));
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_sdk_request_in_the_corpus_is_stored_as_expected() {
    let update = std::env::var_os("INLET_UPDATE_GOLDEN").is_some();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "the corpus is missing");
    let mut failures = Vec::new();
    for path in &paths {
        if let Err(message) = run_case(path, update).await {
            failures.push(format!("{}: {message}", path.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), paths.len(), failures.join("\n"));
}
