//! End to end: the unmodified @segment/analytics-node SDK → the gateway (SIGKILLed and
//! restarted mid-delivery) → the local Amplitude and GA4 receivers, which enforce the vendors'
//! contracts and inject faults. Every event reaches each receiver exactly once, invalid events
//! are in the dead letters with their reason, and `inlet replay` re-sends a time range.
//!
//! Needs node and `tests/sdk/node_modules` (`tests/run.sh` installs them): run with `--ignored`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inlet_receivers::{Fault, Receivers};
use serde_json::Value;

const KEY: &str = "dest-e2e-write-key";
const PER_RUN: usize = 60;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn gateway_env(command: &mut Command, dir: &Path, port: u16, receivers: &Receivers) {
    let delivery = "delivery = {backoff_base_ms = 100, backoff_max_secs = 1, request_timeout_secs = 2}";
    let destinations = format!(
        r#"[{{name = "amp", kind = "amplitude", api_key = "amp-key", sources = ["web"], endpoint = "{}", {delivery}}},
            {{name = "ga", kind = "ga4", measurement_id = "G-TEST", api_secret = "secret", sources = ["web"], endpoint = "{}", {delivery}}}]"#,
        receivers.amplitude_endpoint(),
        receivers.ga4_endpoint()
    );
    command
        .env("INLET_DATA_DIR", dir)
        .env("INLET_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("INLET_ADMIN__LISTEN", "127.0.0.1:0")
        .env("INLET_SOURCES", format!(r#"[{{name = "web", write_key = "{KEY}"}}]"#))
        .env("INLET_DESTINATIONS", destinations)
        .env("INLET_LAKE__MAX_AGE_SECS", "1")
        .env("INLET_LOG_LEVEL", "warn");
}

fn start(dir: &Path, port: u16, receivers: &Receivers) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
    gateway_env(&mut command, dir, port, receivers);
    let mut child = command.stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gateway did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Sends `PER_RUN` events with the official SDK; returns messageId → kind.
fn send_with_sdk(port: u16, prefix: &str) -> BTreeMap<String, String> {
    let output = Command::new("node")
        .arg(sdk_dir().join("destinations-client.mjs"))
        .args([format!("http://127.0.0.1:{port}"), KEY.into(), prefix.into(), PER_RUN.to_string()])
        .output()
        .expect("node runs (tests/run.sh installs it)");
    assert!(output.status.success(), "SDK client failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dead_letters(dir: &Path, destination: &str) -> BTreeMap<String, String> {
    let root = dir.join("lake/dead-letters").join(format!("destination={destination}"));
    let mut out = BTreeMap::new();
    for day in std::fs::read_dir(&root).into_iter().flatten() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            for line in std::fs::read_to_string(file.unwrap().path()).unwrap().lines() {
                let letter: Value = serde_json::from_str(line).unwrap();
                assert_eq!(letter["destination"], destination);
                let id = letter["event"]["messageId"].as_str().unwrap().to_owned();
                out.insert(id, letter["reason"].as_str().unwrap().to_owned());
            }
        }
    }
    out
}

fn amplitude_ids(receivers: &Receivers) -> BTreeSet<String> {
    receivers.amplitude.events().iter().map(|e| e["insert_id"].as_str().unwrap().to_owned()).collect()
}

/// GA4 has no event id: each event is identified by the `seq` parameter the client set.
fn ga4_counts(receivers: &Receivers) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in receivers.ga4.events() {
        *counts.entry(event.params["seq"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    counts
}

fn replay(dir: &Path, port: u16, receivers: &Receivers, args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
    gateway_env(&mut command, dir, port, receivers);
    let output = command.arg("replay").args(args).output().unwrap();
    assert!(output.status.success(), "replay failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and tests/sdk/node_modules; run by tests/run.sh"]
async fn sdk_events_reach_each_vendor_exactly_once_across_faults_and_sigkill() {
    let receivers = Receivers::start("amp-key", "G-TEST", "secret").await.unwrap();
    // GA4's first request hangs past the timeout, so the SIGKILL below lands while GA4 has
    // delivered nothing (GA4 has no dedupe key; see docs/destinations.md).
    receivers.ga4.faults.push([Fault::Hang(Duration::from_secs(5)), Fault::Status(503), Fault::CutResponse]);
    receivers.amplitude.faults.push([
        Fault::IngestThenStatus(500),
        Fault::Throttle { count: 3, retry_after_secs: Some(1) },
        Fault::Status(503),
        Fault::CutResponse,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let started = chrono::Utc::now() - chrono::Duration::minutes(1);

    let mut gateway = start(dir.path(), port, &receivers);
    let mut sent = tokio::task::spawn_blocking(move || send_with_sdk(port, "first")).await.unwrap();
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    let mut gateway = start(dir.path(), port, &receivers);
    sent.extend(tokio::task::spawn_blocking(move || send_with_sdk(port, "second")).await.unwrap());

    let want_amplitude: BTreeSet<String> =
        sent.iter().filter(|(_, k)| *k != "bad_ids").map(|(id, _)| id.clone()).collect();
    let want_ga4: BTreeSet<String> =
        sent.iter().filter(|(_, k)| !matches!(k.as_str(), "reserved" | "identify")).map(|(id, _)| id.clone()).collect();
    let (r, want) = (receivers.clone(), want_amplitude.len());
    wait_until("Amplitude has every event", || amplitude_ids(&r).len() >= want);
    let want = want_ga4.len();
    wait_until("GA4 has every event", || ga4_counts(&r).len() >= want);
    assert_eq!(amplitude_ids(&receivers), want_amplitude);
    let ga4 = ga4_counts(&receivers);
    assert_eq!(ga4.keys().cloned().collect::<BTreeSet<_>>(), want_ga4);
    assert!(ga4.values().all(|n| *n == 1), "GA4 got an event twice: {ga4:?}");
    assert!(receivers.ga4.invalid().is_empty(), "GA4 would have dropped: {:?}", receivers.ga4.invalid());
    assert_eq!(receivers.amplitude.faults.pending() + receivers.ga4.faults.pending(), 0, "every fault was met");

    // Invalid events are in the dead letters, with their reason.
    let expect_dead = |kind: &str, reason: &str| -> BTreeMap<String, String> {
        sent.iter().filter(|(_, k)| *k == kind).map(|(id, _)| (id.clone(), reason.to_owned())).collect()
    };
    let (d, amp_dead) = (dir.path().to_owned(), expect_dead("bad_ids", "invalid_ids"));
    wait_until("Amplitude's dead letters are stored", || dead_letters(&d, "amp").len() >= amp_dead.len());
    assert_eq!(dead_letters(dir.path(), "amp"), amp_dead);
    let ga_dead = expect_dead("reserved", "reserved_name");
    wait_until("GA4's dead letters are stored", || dead_letters(&d, "ga").len() >= ga_dead.len());
    assert_eq!(dead_letters(dir.path(), "ga"), ga_dead);

    // Stop cleanly (the lake gets its final flush), then replay the range from the lake.
    let pid = gateway.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(gateway.wait().unwrap().success());
    let (from, to) = (started.to_rfc3339(), (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339());
    let duplicates_before = receivers.amplitude.duplicates();
    let report = replay(dir.path(), port, &receivers, &["--destination", "amp", "--from", &from, "--to", &to]);
    assert_eq!(report["events"], sent.len());
    assert_eq!(report["delivered"], want_amplitude.len(), "{report}");
    assert_eq!(report["dead_lettered"], amp_dead.len());
    // Amplitude drops the replayed copies by insert_id: nothing counted twice.
    assert_eq!(amplitude_ids(&receivers), want_amplitude);
    assert_eq!(receivers.amplitude.duplicates() - duplicates_before, want_amplitude.len());

    let report =
        replay(dir.path(), port, &receivers, &["--destination", "ga", "--from", &from, "--to", &to, "--source", "web"]);
    assert_eq!(report["delivered"], want_ga4.len(), "{report}");
    assert_eq!(report["skipped"], sent.values().filter(|k| *k == "identify").count());
    assert!(ga4_counts(&receivers).values().all(|n| *n == 2), "each GA4 event re-sent once");

    // Replaying the dead letters sends them again; still invalid, they are dead-lettered again.
    let report =
        replay(dir.path(), port, &receivers, &["--destination", "ga", "--from", &from, "--to", &to, "--dead-letters"]);
    assert_eq!(report["events"], ga_dead.len());
    assert_eq!(report["dead_lettered"], ga_dead.len());
    eprintln!(
        "destinations e2e: {} events sent, Amplitude {} once each ({} repeats dropped by insert_id), GA4 {} once each, dead letters {} + {}",
        sent.len(),
        want_amplitude.len(),
        duplicates_before,
        want_ga4.len(),
        amp_dead.len(),
        ga_dead.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and tests/sdk/node_modules; run by tests/run.sh"]
async fn sdk_group_alias_and_consent_reach_each_vendor_as_configured_and_status_reports_it() {
    const TOKEN: &str = "operator-token-for-the-e2e-test";
    let receivers = Receivers::start("amp-key", "G-TEST", "secret").await.unwrap();
    receivers.amplitude.faults.push([Fault::Status(503)]);
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let delivery = "delivery = {backoff_base_ms = 100, backoff_max_secs = 1, request_timeout_secs = 2}";
    let destinations = format!(
        r#"[{{name = "amp", kind = "amplitude", api_key = "amp-key", sources = ["web"], endpoint = "{}",
              user_mapping_endpoint = "{}", group_type = "clinic", types = ["track", "group", "alias"],
              consent = {{categories = ["Analytics"], without_consent = "withhold"}}, {delivery}}},
            {{name = "ga", kind = "ga4", measurement_id = "G-TEST", api_secret = "secret", sources = ["web"], endpoint = "{}", {delivery}}}]"#,
        receivers.amplitude_endpoint(),
        receivers.amplitude_user_mapping_endpoint(),
        receivers.ga4_endpoint()
    );
    let configure = |command: &mut Command| {
        command
            .env("INLET_DATA_DIR", dir.path())
            .env("INLET_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("INLET_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("INLET_ADMIN__TOKEN", TOKEN)
            .env("INLET_SOURCES", format!(r#"[{{name = "web", write_key = "{KEY}"}}]"#))
            .env("INLET_DESTINATIONS", &destinations)
            .env("INLET_LOG_LEVEL", "warn");
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
    configure(&mut command);
    let mut gateway = command.stdout(Stdio::null()).spawn().unwrap();
    wait_until("the gateway listens", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(sdk_dir().join("calls-client.mjs"))
            .args([format!("http://127.0.0.1:{port}"), KEY.into()])
            .output()
            .expect("node runs (tests/run.sh installs it)")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "SDK client failed: {}", String::from_utf8_lossy(&output.stderr));
    let sent: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
    let of_kind = |kinds: &[&str]| -> BTreeSet<String> {
        sent.iter().filter(|(_, k)| kinds.contains(&k.as_str())).map(|(id, _)| id.clone()).collect()
    };

    // Amplitude requires the Analytics category: granted (Segment's and RudderStack's shapes)
    // are sent; refused and no consent (withhold) are not; the bad ids are dead-lettered.
    let want_amplitude = of_kind(&["granted", "rudderstack"]);
    let r = receivers.clone();
    wait_until("Amplitude has the consented events, the group and the alias", || {
        amplitude_ids(&r).len() >= want_amplitude.len()
            && !r.amplitude.group_identifies().is_empty()
            && !r.amplitude.user_mappings().is_empty()
    });
    assert_eq!(amplitude_ids(&receivers), want_amplitude);
    for event in receivers.amplitude.events() {
        let id = event["insert_id"].as_str().unwrap();
        let want_group = if sent[id] == "granted" { serde_json::json!({"clinic": "clinic-7"}) } else { Value::Null };
        assert_eq!(event["groups"], want_group, "{id}: context.groupId becomes groups");
    }
    let identifications = receivers.amplitude.identifications();
    assert_eq!(identifications.len(), 1);
    assert_eq!(identifications[0]["user_id"], "user-0001");
    assert_eq!(identifications[0]["groups"], serde_json::json!({"clinic": "clinic-7"}));
    assert_eq!(
        receivers.amplitude.group_identifies(),
        vec![serde_json::json!({"group_type": "clinic", "group_value": "clinic-7",
            "group_properties": {"$set": {"name": "Seoul Dental", "plan": "pro"}}})]
    );
    assert_eq!(
        receivers.amplitude.user_mappings(),
        vec![serde_json::json!({"user_id": "guest-0001", "global_user_id": "user-0001"})]
    );

    // GA4 has no consent setting: every track and the group (as join_group); alias is not sent.
    let want_ga4 = of_kind(&["granted", "refused", "rudderstack", "none", "bad_ids"]);
    wait_until("GA4 has every track and the group", || r.ga4.events().len() > want_ga4.len());
    let ga4 = receivers.ga4.events();
    let tracked: BTreeSet<String> =
        ga4.iter().filter_map(|e| e.params.get("seq").and_then(Value::as_str)).map(str::to_owned).collect();
    assert_eq!(tracked, want_ga4);
    let joins: Vec<_> = ga4.iter().filter(|e| e.name == "join_group").collect();
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].params["group_id"], "clinic-7");
    assert!(receivers.ga4.invalid().is_empty(), "GA4 would have dropped: {:?}", receivers.ga4.invalid());

    // The status report, as an operator sees it.
    let mut status = Value::Null;
    wait_until("the status shows every event resolved and the dead letter counted", || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
        configure(&mut command);
        let output = command.args(["destinations", "status"]).output().unwrap();
        assert!(output.status.success(), "status failed: {}", String::from_utf8_lossy(&output.stderr));
        status = serde_json::from_slice(&output.stdout).unwrap();
        let amp = &status["destinations"][0];
        amp["cursor"] == amp["durable_lsn"] && amp["dead_letters"]["invalid_ids"] == 1
    });
    let amp = &status["destinations"][0];
    assert_eq!(amp["name"], "amp");
    assert_eq!(amp["vendor"], "amplitude");
    assert_eq!(amp["backlog_events"], 0);
    assert_eq!(amp["dead_letters"], serde_json::json!({"invalid_ids": 1}));
    let errors = amp["recent_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["status"], 503);
    assert_eq!(errors[0]["api"], "events");
    assert_eq!(status["destinations"][1]["name"], "ga");

    // The operator token is required.
    let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
    configure(&mut command);
    let output = command
        .env("INLET_ADMIN__TOKEN", "a-wrong-token-of-enough-length")
        .args(["destinations", "status"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"), "{}", String::from_utf8_lossy(&output.stderr));

    let pid = gateway.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(gateway.wait().unwrap().success());
    eprintln!(
        "destinations e2e: calls: {} sent; Amplitude {} consented events, 1 identify, 1 group identify, 1 user mapping; GA4 {} tracks and 1 join_group; status: {}",
        sent.len(),
        want_amplitude.len(),
        want_ga4.len(),
        serde_json::to_string(amp).unwrap()
    );
}
