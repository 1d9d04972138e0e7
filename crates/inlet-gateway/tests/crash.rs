//! Crash test: clients send events and record which were acknowledged; the gateway process is
//! killed with SIGKILL mid-stream and restarted, several times; afterwards every acknowledged
//! event is in the WAL or the lake, exactly once.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ROUNDS: usize = 4;
const CLIENTS: usize = 8;
const EVENTS_PER_REQUEST: usize = 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_inlet"))
        .env("INLET_DATA_DIR", dir)
        .env("INLET_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("INLET_ADMIN__LISTEN", "127.0.0.1:0")
        .env("INLET_SOURCES", format!(r#"[{{name = "web", write_key = "{}"}}]"#, common::WEB_KEY))
        .env("INLET_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway did not become healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let client = common::client();
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut sent = 0usize;
    for round in 0..ROUNDS {
        let mut child = start(dir.path(), port);
        wait_healthy(&client, &url).await;
        let mut tasks = Vec::new();
        for task in 0..CLIENTS {
            let (client, url, acknowledged) = (client.clone(), url.clone(), Arc::clone(&acknowledged));
            tasks.push(tokio::spawn(async move {
                let mut attempts = 0;
                for seq in 0.. {
                    let ids: Vec<String> =
                        (0..EVENTS_PER_REQUEST).map(|i| format!("r{round}-c{task}-s{seq}-e{i}")).collect();
                    let batch: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type": "track", "event": "Crash Test", "userId": format!("u{task}"), "messageId": id, "properties": {"round": round}}))
                        .collect();
                    attempts += ids.len();
                    let sent = client
                        .post(format!("{url}/v1/batch"))
                        .basic_auth(common::WEB_KEY, Some(""))
                        .json(&json!({"batch": batch}))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 200 => acknowledged.lock().unwrap().extend(ids),
                        _ => break,
                    }
                }
                attempts
            }));
        }
        // Let the load run for a while that differs each round, then kill without warning.
        tokio::time::sleep(Duration::from_millis(300 + 250 * round as u64)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        for task in tasks {
            sent += task.await.unwrap();
        }
    }
    // A last clean start recovers the torn tail; a graceful stop syncs.
    let mut child = start(dir.path(), port);
    wait_healthy(&client, &url).await;
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "graceful shutdown exits 0");

    let dump = Command::new(env!("CARGO_BIN_EXE_inlet"))
        .args(["wal", "dump"])
        .env("INLET_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    // The final stop flushes the lake, which may let the WAL delete its oldest segments: an
    // event is stored once in the WAL, or once in the lake, or in both while its segment waits.
    let mut in_wal: HashMap<String, usize> = HashMap::new();
    let mut last_lsn = None;
    for line in String::from_utf8(dump.stdout).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        let lsn = record["lsn"].as_u64().unwrap();
        if let Some(last) = last_lsn {
            assert_eq!(lsn, last + 1, "LSNs are dense");
        }
        last_lsn = Some(lsn);
        *in_wal.entry(record["event"]["messageId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let mut in_lake: HashMap<String, usize> = HashMap::new();
    for row in common::read_lake(&common::local_lake(dir.path()).await).await {
        *in_lake.entry(row.message_id).or_default() += 1;
    }
    let duplicated = in_wal.values().chain(in_lake.values()).filter(|&&n| n > 1).count();
    let stored: HashSet<&String> = in_wal.keys().chain(in_lake.keys()).collect();
    let acknowledged = acknowledged.lock().unwrap();
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    eprintln!(
        "crash test: {ROUNDS} SIGKILLs, {sent} events sent, {} acknowledged, {} in the WAL or the lake, {} missing, {duplicated} duplicated",
        acknowledged.len(),
        stored.len(),
        missing.len()
    );
    assert!(acknowledged.len() > 1000, "the load should have been acknowledged for a while");
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(duplicated, 0);
}
