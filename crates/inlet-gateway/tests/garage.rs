//! Faults against a real S3 server (Garage, started by `tests/run.sh`): an outage during
//! traffic, and SIGKILLs while ranges are being uploaded. Each ends with every acknowledged
//! event in the lake exactly once, read back with arrow-rs. Ignored by a bare `cargo test`
//! (they need Garage); `tests/run.sh` runs them with `--ignored`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestGateway, WEB_KEY};
use inlet_gateway::SystemClock;
use inlet_lake::{LakeLocation, LakeStore, S3Settings};
use serde_json::{Value, json};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run these tests through tests/run.sh"))
}

fn garage(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/garage/garage.sh");
    let status = Command::new("bash").arg(script).arg(action).arg(env("GARAGE_DIR")).status().unwrap();
    assert!(status.success(), "garage.sh {action} failed");
}

fn unique_prefix(name: &str) -> String {
    format!("{name}-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

async fn lake_store(prefix: &str) -> LakeStore {
    let settings =
        S3Settings { endpoint: Some(env("GARAGE_ENDPOINT")), force_path_style: true, ..S3Settings::default() };
    LakeStore::open(LakeLocation::S3 { bucket: env("GARAGE_BUCKET"), prefix: prefix.into() }, &settings)
        .expect("open the lake")
}

/// message_id → how many times it is in the lake; and the largest file's size.
async fn lake_contents(store: &LakeStore) -> (HashMap<String, usize>, usize) {
    let mut counts = HashMap::new();
    for row in common::read_lake(store).await {
        *counts.entry(row.message_id).or_default() += 1;
    }
    let mut largest = 0;
    for key in store.list("events").await.unwrap() {
        largest = largest.max(store.get(&key).await.unwrap().unwrap().len());
    }
    (counts, largest)
}

/// Waits until every durable WAL record of `gateway` is confirmed by the lake writer.
async fn wait_for_lake(gateway: &TestGateway, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway.state.wal.cursor(inlet_lake_writer::LAKE_CONSUMER) != Some(gateway.state.wal.durable_lsn()) {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many acknowledged ids are missing from the lake, and how many ids it holds twice or more.
fn reconcile<'a>(
    acknowledged: impl IntoIterator<Item = &'a String>,
    counts: &HashMap<String, usize>,
) -> (usize, usize) {
    let missing = acknowledged.into_iter().filter(|id| !counts.contains_key(*id)).count();
    (missing, counts.values().filter(|&&n| n > 1).count())
}

fn s3_lake_env(prefix: &str) -> Vec<(String, String)> {
    vec![
        ("INLET_LAKE__URL".into(), format!("s3://{}/{prefix}", env("GARAGE_BUCKET"))),
        ("INLET_LAKE__S3_ENDPOINT".into(), env("GARAGE_ENDPOINT")),
        ("INLET_LAKE__S3_FORCE_PATH_STYLE".into(), "true".into()),
        ("INLET_LAKE__MAX_AGE_SECS".into(), "1".into()),
    ]
}

/// One client's traffic: batches of `size` events with ~1 KB of hard-to-compress properties.
fn batch(tag: &str, seq: usize, size: usize) -> (Vec<String>, Value) {
    let ids: Vec<String> = (0..size).map(|i| format!("{tag}-{seq}-{i}")).collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            let noise: String = (0..64).map(|k| format!("{:016x}", xxhash(id, k))).collect();
            json!({"type": "track", "event": "Load", "userId": tag, "messageId": id, "properties": {"noise": noise}})
        })
        .collect();
    (ids, json!({"batch": events}))
}

fn xxhash(id: &str, k: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (id, k).hash(&mut h);
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Garage: run through tests/run.sh"]
async fn an_s3_outage_during_traffic_loses_and_duplicates_nothing() {
    let prefix = unique_prefix("outage");
    let gateway = TestGateway::start_with(Arc::new(SystemClock), |c| {
        c.lake.url = Some(format!("s3://{}/{prefix}", env("GARAGE_BUCKET")));
        c.lake.s3_endpoint = Some(env("GARAGE_ENDPOINT"));
        c.lake.s3_force_path_style = true;
        c.lake.max_age_secs = 1;
        // Low enough that ranges become multipart uploads, so the outage hits some mid-way.
        c.lake.s3_multipart_threshold_bytes = 6 * 1024 * 1024;
    })
    .await;
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..4 {
        let (http, url, acknowledged) = (gateway.client.clone(), gateway.url.clone(), Arc::clone(&acknowledged));
        clients.push(tokio::spawn(async move {
            let mut seq = 0;
            while started.elapsed() < Duration::from_secs(9) {
                let (ids, body) = batch(&format!("c{client}"), seq, 100);
                seq += 1;
                let response =
                    http.post(format!("{url}/v1/batch")).basic_auth(WEB_KEY, Some("")).json(&body).send().await;
                if response.is_ok_and(|r| r.status() == 200) {
                    acknowledged.lock().unwrap().extend(ids);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    garage("stop");
    // Down for at least 4 s, and until an upload has given up (the S3 client's own retries can
    // outlast a short outage), so the outage is seen by the writer on every run.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(4)
        || (gateway.metric("inlet_lake_upload_failures_total") == 0.0 && outage.elapsed() < Duration::from_secs(60))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures_during_outage = gateway.metric("inlet_lake_upload_failures_total");
    garage("restart");
    for client in clients {
        client.await.unwrap();
    }
    wait_for_lake(&gateway, "the backlog was not flushed after S3 came back").await;
    gateway.stop().await;

    let (counts, largest) = lake_contents(&lake_store(&prefix).await).await;
    let acknowledged = acknowledged.lock().unwrap();
    let (missing, duplicated) = reconcile(acknowledged.iter(), &counts);
    eprintln!(
        "S3 outage: {} acknowledged, {} in the lake, {missing} missing, {duplicated} duplicated, {failures_during_outage} failed uploads during the outage, largest file {largest} bytes",
        acknowledged.len(),
        counts.len()
    );
    assert!(failures_during_outage > 0.0, "the outage should have made uploads fail");
    assert!(largest > 6 * 1024 * 1024, "some files should have been multipart uploads");
    assert!(acknowledged.len() > 5_000);
    assert_eq!(missing, 0);
    assert_eq!(duplicated, 0);
}

fn start_binary(dir: &std::path::Path, port: u16, admin_port: u16, prefix: &str) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
    command
        .env("INLET_DATA_DIR", dir)
        .env("INLET_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("INLET_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("INLET_SOURCES", format!(r#"[{{name = "web", write_key = "{WEB_KEY}"}}]"#))
        .env("INLET_LOG_LEVEL", "warn")
        .env("INLET_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("gateway.log")).unwrap());
    for (k, v) in s3_lake_env(prefix) {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// A metric from the admin listener at `admin_url`.
async fn metric(client: &reqwest::Client, admin_url: &str, name: &str) -> Option<f64> {
    let text = client.get(format!("{admin_url}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Garage: run through tests/run.sh"]
async fn sigkill_while_flushing_to_s3_loses_and_duplicates_nothing() {
    let prefix = unique_prefix("sigkill");
    let dir = tempfile::tempdir().unwrap();
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, admin_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let admin_url = format!("http://127.0.0.1:{admin_port}");
    let http = common::client();
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    for round in 0..6u64 {
        let mut child = start_binary(dir.path(), port, admin_port, &prefix);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "gateway did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (client, target, acked) = (http.clone(), url.clone(), Arc::clone(&acknowledged));
        let load = tokio::spawn(async move {
            for seq in 0.. {
                let (ids, body) = batch(&format!("r{round}"), seq, 50);
                match client.post(format!("{target}/v1/batch")).basic_auth(WEB_KEY, Some("")).json(&body).send().await {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().extend(ids),
                    _ => break,
                }
            }
        });
        // Kill at different offsets into the one-second flush cycle.
        tokio::time::sleep(Duration::from_millis(1100 + 370 * round)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        load.await.unwrap();
    }
    let mut child = start_binary(dir.path(), port, admin_port, &prefix);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cursor = metric(&http, &admin_url, "inlet_lake_cursor_lsn").await;
        let durable = metric(&http, &admin_url, "inlet_wal_durable_lsn").await;
        if cursor.is_some() && cursor == durable && cursor > Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the lake did not catch up after the last restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success());
    assert!(child.wait().unwrap().success());

    let (counts, _) = lake_contents(&lake_store(&prefix).await).await;
    let acknowledged = acknowledged.lock().unwrap();
    let (missing, duplicated) = reconcile(acknowledged.iter(), &counts);
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
    let redone = log.matches("redoing the lake flush interrupted").count();
    eprintln!(
        "SIGKILL during flushes: 6 kills ({redone} landed mid-flush and were redone), {} acknowledged, {} in the lake, {missing} missing, {duplicated} duplicated",
        acknowledged.len(),
        counts.len()
    );
    assert!(acknowledged.len() > 1000);
    assert_eq!(missing, 0);
    assert_eq!(duplicated, 0);
}

/// A TCP proxy in front of Garage that, while `faulty` is set, cuts every connection once the
/// client has sent `cut_after` bytes on it: small requests pass, a multipart upload dies midway.
async fn flaky_proxy(target: String, faulty: Arc<std::sync::atomic::AtomicBool>, cut_after: usize) -> String {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let target = target.clone();
            let faulty = Arc::clone(&faulty);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = async move {
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        sent += n;
                        if faulty.load(Ordering::Relaxed) && sent > cut_after {
                            return; // drop both halves: the connection is cut mid-request
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                };
                tokio::select! {
                    () = upstream => {}
                    () = downstream => {}
                }
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Garage: run through tests/run.sh"]
async fn a_multipart_upload_cut_midway_is_retried_and_lands_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let prefix = unique_prefix("multipart");
    let faulty = Arc::new(AtomicBool::new(true));
    let garage_address = env("GARAGE_ENDPOINT").trim_start_matches("http://").to_owned();
    // Cut below the 5 MiB part size: every part dies midway, small requests pass.
    let proxy = flaky_proxy(garage_address, Arc::clone(&faulty), 3 * 1024 * 1024).await;
    let gateway = TestGateway::start_with(Arc::new(SystemClock), |c| {
        c.lake.url = Some(format!("s3://{}/{prefix}", env("GARAGE_BUCKET")));
        c.lake.s3_endpoint = Some(proxy.clone());
        c.lake.s3_force_path_style = true;
        // One range of exactly the 24,000 events below: a single file well over the cut.
        c.lake.max_age_secs = 600;
        c.lake.max_range_records = 24_000;
        c.lake.s3_multipart_threshold_bytes = 6 * 1024 * 1024;
    })
    .await;
    let mut acknowledged = HashSet::new();
    for seq in 0..60 {
        let (ids, body) = batch("mp", seq, 400);
        let response = gateway.post("/v1/batch").basic_auth(WEB_KEY, Some("")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        acknowledged.extend(ids);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.metric("inlet_lake_upload_failures_total") < 2.0 {
        assert!(Instant::now() < deadline, "the cut multipart upload should have failed and been retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures = gateway.metric("inlet_lake_upload_failures_total");
    faulty.store(false, Ordering::Relaxed);
    wait_for_lake(&gateway, "the lake did not catch up once the proxy healed").await;
    gateway.stop().await;
    let (counts, largest) = lake_contents(&lake_store(&prefix).await).await;
    let (missing, duplicated) = reconcile(acknowledged.iter(), &counts);
    eprintln!(
        "cut multipart: {} acknowledged, {} in the lake, {missing} missing, {duplicated} duplicated, {failures} failed uploads, largest file {largest} bytes",
        acknowledged.len(),
        counts.len()
    );
    assert!(largest > 6 * 1024 * 1024, "the file must have been a multipart upload");
    assert_eq!(missing, 0);
    assert_eq!(duplicated, 0);
    assert_eq!(counts.len(), acknowledged.len());
}

/// The lake written in `tests/sdk/run.sh` by the official SDKs, read back with arrow-rs and
/// compared with the WAL dump (pyarrow checks the same files independently).
#[tokio::test]
#[ignore = "needs Garage and the SDK run: run through tests/run.sh"]
async fn sdk_events_read_back_with_arrow_rs() {
    let results = std::path::PathBuf::from(env("SDK_RESULTS_DIR"));
    let prefix = std::fs::read_to_string(results.join("lake_prefix")).unwrap().trim().to_owned();
    let mut wal: HashMap<String, Value> = HashMap::new();
    for line in std::fs::read_to_string(results.join("dump.jsonl")).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        wal.insert(record["event"]["messageId"].as_str().unwrap().to_owned(), record);
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in common::read_lake(&lake_store(&prefix).await).await {
        let record = &wal[&row.message_id];
        let event = &record["event"];
        let id = &row.message_id;
        let ts = inlet_segment::parse_timestamp(event["timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(row.timestamp_micros, ts.timestamp_micros(), "{id}");
        assert_eq!(row.message_type, event["type"].as_str().unwrap(), "{id}");
        assert_eq!(row.user_id.as_deref(), event["userId"].as_str(), "{id}");
        assert_eq!(row.source, record["source"].as_str().unwrap());
        let folder = format!("events/source={}/dt={}/hour={}", row.source, ts.format("%Y-%m-%d"), ts.format("%H"));
        assert!(row.key.starts_with(&folder), "{id} is in {}, expected under {folder}", row.key);
        *seen.entry(row.message_id).or_default() += 1;
    }
    assert_eq!(seen.len(), wal.len(), "every stored event is in the lake");
    assert!(seen.values().all(|&n| n == 1), "and only once");
    eprintln!("lake verification (arrow-rs): {} SDK events, each exactly once, in its hour's partition", seen.len());
}
