//! End to end on real parts: a member uses the app on two devices (two anonymous ids, then a
//! login) through the unmodified @segment/analytics-node SDK, beside other members; the gateway
//! writes the lake on Garage, Amplitude dead-letters the first batches, `inlet-batch` publishes
//! the metrics to PostgreSQL. Then the member is deleted through the operator API: the deletion
//! is killed (SIGABRT, like kill -9) after its first file rewrite and run again, and afterwards
//! no lake file, dead letter or warehouse row holds any of the member's ids, Amplitude got the
//! deletion call, every other member's rows are unchanged, and the member's new events are
//! acknowledged and never stored.
//!
//! Needs node (`tests/sdk/node_modules`), Garage and PostgreSQL (`tests/run.sh` starts them and
//! sets GARAGE_* and PG_TEST_URL): run with `--ignored`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use inlet_lake::{LakeLocation, LakeStore, S3Settings};
use inlet_receivers::amplitude::SECRET_KEY;
use inlet_receivers::ga4_deletion::{CLIENT_EMAIL, PROPERTY_ID, UPSERT_PATH};
use inlet_receivers::{Fault, Receivers};
use serde_json::{Value, json};

const KEY: &str = "privacy-e2e-write-key";
const TOKEN: &str = "privacy-e2e-operator-token";
const MEMBER: &str = "member-to-delete";
const DEVICES: [&str; 2] = ["device-a-anon", "device-b-anon"];

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run this test through tests/run.sh"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Setup {
    prefix: String,
    port: u16,
    admin_port: u16,
    receivers: Receivers,
    dir: PathBuf,
}

impl Setup {
    fn lake(&self) -> LakeStore {
        let settings =
            S3Settings { endpoint: Some(env("GARAGE_ENDPOINT")), force_path_style: true, ..S3Settings::default() };
        LakeStore::open(LakeLocation::S3 { bucket: env("GARAGE_BUCKET"), prefix: self.prefix.clone() }, &settings)
            .unwrap()
    }

    fn inlet(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_inlet"));
        let delivery = "delivery = {backoff_base_ms = 100, backoff_max_secs = 1, request_timeout_secs = 5}";
        let destinations = format!(
            r#"[{{name = "amp", kind = "amplitude", api_key = "amp-key", secret_key = "{SECRET_KEY}", sources = ["web"],
                 endpoint = "{}", deletion_endpoint = "{}/api/2/deletions/users", {delivery}}},
                {{name = "ga", kind = "ga4", measurement_id = "G-TEST", api_secret = "secret", sources = ["web"],
                 endpoint = "{}", property_id = "{PROPERTY_ID}", service_account_file = "{}",
                 deletion_endpoint = "{}{UPSERT_PATH}", deletion_requests_per_day = 2, {delivery}}}]"#,
            self.receivers.amplitude_endpoint(),
            self.receivers.url,
            self.receivers.ga4_endpoint(),
            self.dir.join("service-account.json").display(),
            self.receivers.url,
        );
        command
            .env("INLET_DATA_DIR", &self.dir)
            .env("INLET_SERVER__LISTEN", format!("127.0.0.1:{}", self.port))
            .env("INLET_ADMIN__LISTEN", format!("127.0.0.1:{}", self.admin_port))
            .env("INLET_ADMIN__TOKEN", TOKEN)
            .env("INLET_SOURCES", format!(r#"[{{name = "web", write_key = "{KEY}", ip_policy = "truncate"}}]"#))
            .env("INLET_DESTINATIONS", destinations)
            .env("INLET_LAKE__URL", format!("s3://{}/{}", env("GARAGE_BUCKET"), self.prefix))
            .env("INLET_LAKE__S3_ENDPOINT", env("GARAGE_ENDPOINT"))
            .env("INLET_LAKE__S3_FORCE_PATH_STYLE", "true")
            .env("INLET_LAKE__MAX_AGE_SECS", "1")
            .env("INLET_PRIVACY__POLL_SECS", "1")
            .env("INLET_PRIVACY__SETTLE_SECS", "2")
            // Deletions run from `inlet privacy run` below, so that one can be killed midway.
            .env("INLET_PRIVACY__WORKER", "false")
            .env("INLET_LOG_LEVEL", "warn");
        command
    }

    fn start_gateway(&self) -> Child {
        let child = self.inlet().stdout(Stdio::null()).spawn().unwrap();
        wait_until("the gateway listens", || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok());
        child
    }

    /// Sends `calls` through analytics-node; returns once the SDK flushed (every call acknowledged).
    fn send(&self, calls: &[Value]) {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk");
        let mut child = Command::new("node")
            .arg(sdk.join("privacy-client.mjs"))
            .args([format!("http://127.0.0.1:{}", self.port), KEY.into()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs (tests/run.sh installs it)");
        let mut stdin = child.stdin.take().unwrap();
        for call in calls {
            writeln!(stdin, "{call}").unwrap();
        }
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "SDK client failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn batch(&self, args: &[&str]) -> String {
        let config = self.dir.join("batch.toml");
        std::fs::write(
            &config,
            format!(
                "lake_url = \"s3://{}/{}\"\n[s3]\nendpoint = \"{}\"\nforce_path_style = true\n\
                 [warehouse]\nkind = \"postgres\"\nschema = \"{}\"\npostgres_url = \"{}\"\n",
                env("GARAGE_BUCKET"),
                self.prefix,
                env("GARAGE_ENDPOINT"),
                self.schema(),
                env("PG_TEST_URL")
            ),
        )
        .unwrap();
        let bin = Path::new(env!("CARGO_BIN_EXE_inlet")).with_file_name("inlet-batch");
        assert!(bin.exists(), "{} is missing: build the workspace first", bin.display());
        let output = Command::new(bin).arg("--config").arg(&config).args(args).output().unwrap();
        assert!(output.status.success(), "inlet-batch {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn schema(&self) -> String {
        self.prefix.replace('-', "_")
    }

    fn sql(&self, query: &str) -> String {
        let output = Command::new("psql").arg(env("PG_TEST_URL")).args(["-At", "-c", query]).output().unwrap();
        assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

/// A service account key for GA4's deletions (generated by openssl), the receiver trusting it.
fn service_account(setup: &Setup) {
    let key = setup.dir.join("key.pem");
    let run = |args: &[&str]| {
        let output = Command::new("openssl").args(args).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.to_str().unwrap()]);
    let public = run(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    setup.receivers.ga4_deletion.set_public_key(&String::from_utf8(public).unwrap());
    setup.receivers.ga4_deletion.set_requests_per_day(2);
    let account = json!({
        "type": "service_account",
        "client_email": CLIENT_EMAIL,
        "private_key": std::fs::read_to_string(&key).unwrap(),
        "token_uri": setup.receivers.ga4_deletion.token_url(),
    });
    std::fs::write(setup.dir.join("service-account.json"), account.to_string()).unwrap();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn wait_for<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn call(call: &str, id: &str, user_id: Option<&str>, anonymous_id: Option<&str>, at: DateTime<Utc>) -> Value {
    let mut value = json!({"call": call, "messageId": id, "timestamp": at.to_rfc3339()});
    match call {
        "track" => value["event"] = json!("Lesson Viewed"),
        "page" => value["name"] = json!("Home"),
        _ => value["traits"] = json!({"profession": "dentist"}),
    }
    if let Some(user_id) = user_id {
        value["userId"] = json!(user_id);
    }
    if let Some(anonymous_id) = anonymous_id {
        value["anonymousId"] = json!(anonymous_id);
    }
    value
}

/// Every lake file: key → bytes.
async fn lake_files(lake: &LakeStore) -> BTreeMap<String, Bytes> {
    let mut files = BTreeMap::new();
    for key in lake.list("events/").await.unwrap() {
        files.insert(key.clone(), lake.get(&key).await.unwrap().unwrap());
    }
    files
}

/// Every lake row as its stored event's JSON, with its file.
fn rows(files: &BTreeMap<String, Bytes>) -> Vec<(String, Value)> {
    let mut rows = Vec::new();
    for (key, bytes) in files {
        for stored in inlet_lake::read::read_events(bytes.clone()).unwrap() {
            rows.push((key.clone(), serde_json::to_value(&stored).unwrap()));
        }
    }
    rows
}

fn is_members(event: &Value) -> bool {
    let event = &event["event"];
    event["userId"] == MEMBER || DEVICES.iter().any(|d| event["anonymousId"] == *d || event["previousId"] == *d)
}

async fn dead_letters(lake: &LakeStore) -> BTreeMap<String, Vec<Value>> {
    let mut letters = BTreeMap::new();
    for key in lake.list("dead-letters/").await.unwrap() {
        let bytes = lake.get(&key).await.unwrap().unwrap();
        let parsed = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap());
        letters.insert(key, parsed.collect());
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node, Garage and PostgreSQL; run by tests/run.sh"]
async fn a_deleted_member_is_gone_from_lake_dead_letters_warehouse_and_vendors_and_stays_suppressed() {
    // reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let receivers = Receivers::start("amp-key", "G-TEST", "secret").await.unwrap();
    // Amplitude refuses the first batches for good: those events go to the dead letters.
    receivers.amplitude.faults.push((0..20).map(|_| Fault::Status(400)));
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        prefix: format!("privacy-{}", std::process::id()),
        port: free_port(),
        admin_port: free_port(),
        receivers,
        dir: dir.path().to_path_buf(),
    };
    service_account(&setup);
    let lake = setup.lake();
    let mut gateway = setup.start_gateway();

    // Two days, several hours each: files with and without the member.
    let day = |days_ago: i64, hour: u32| {
        let date = (Utc::now() - chrono::Duration::days(days_ago)).date_naive();
        date.and_hms_opt(hour, 15, 0).unwrap().and_utc()
    };
    let mut calls = vec![
        call("page", "m-a-1", None, Some(DEVICES[0]), day(2, 9)),
        call("track", "m-a-2", None, Some(DEVICES[0]), day(2, 9)),
        call("identify", "m-a-3", Some(MEMBER), Some(DEVICES[0]), day(2, 10)),
        call("track", "m-a-4", Some(MEMBER), Some(DEVICES[0]), day(2, 10)),
        call("track", "m-b-1", None, Some(DEVICES[1]), day(1, 20)),
        call("identify", "m-b-2", Some(MEMBER), Some(DEVICES[1]), day(1, 20)),
        call("page", "m-b-3", Some(MEMBER), Some(DEVICES[1]), day(1, 21)),
    ];
    for n in 0..40 {
        let (user, anonymous) = (format!("member-{}", n % 8), format!("anon-{}", n % 8));
        let at = day(1 + n as i64 % 2, [9, 10, 14, 20, 21][n % 5]);
        let kind = ["track", "page", "identify"][n % 3];
        let user = (n % 4 != 0).then_some(user.as_str());
        calls.push(call(kind, &format!("o-{n}"), user, Some(&anonymous), at));
    }
    setup.send(&calls);
    wait_for("every event is in the lake and Amplitude dead-lettered some", || async {
        let (files, letters) = (lake_files(&lake).await, dead_letters(&lake).await);
        let letters: Vec<&Value> = letters.values().flatten().collect();
        rows(&files).len() == calls.len()
            && letters.iter().any(|l| is_members(l))
            && letters.iter().any(|l| !is_members(l))
    })
    .await;
    setup.receivers.amplitude.faults.clear();
    let (first, last) = (day(2, 0).date_naive().to_string(), day(1, 0).date_naive().to_string());
    setup.batch(&["run", "--from", &first, "--to", &last, "--quiet"]);
    let schema = setup.schema();
    let member_rows = |table: &str, column: &str| {
        let ids = format!("'{MEMBER}', '{}', '{}'", DEVICES[0], DEVICES[1]);
        setup.sql(&format!("SELECT count(*) FROM {schema}.{table} WHERE {column} IN ({ids})"))
    };
    assert_ne!(member_rows("users", "user_id"), "0", "the member is published");
    assert_ne!(member_rows("daily_user_activity", "user_key"), "0");
    assert_ne!(member_rows("identity_map", "anonymous_id"), "0");

    let before = lake_files(&lake).await;
    let letters_before = dead_letters(&lake).await;

    // The operator API refuses without the token, then stores the regulation.
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{}/admin/privacy/regulations", setup.admin_port);
    let body = json!({"kind": "delete", "user_ids": [MEMBER], "requested_by": "ticket PRIV-1"});
    let refused = http.post(&api).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let created = http.post(&api).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["regulation"]["id"].as_str().unwrap().to_owned();
    let invalid = http.post(&api).bearer_auth(TOKEN).json(&json!({"kind": "delete"})).send().await.unwrap();
    assert_eq!(invalid.status(), 400);
    assert_eq!(invalid.json::<Value>().await.unwrap()["code"], "invalid_regulation");

    // Suppressed at once: the member's new events are acknowledged and never stored.
    let marker = call("track", "after-deletion-marker", Some("member-0"), Some("anon-0"), Utc::now());
    setup.send(&[call("track", "m-after-1", Some(MEMBER), None, Utc::now()), marker]);

    // A deletion killed after its first file rewrite, then run again to the end.
    std::thread::sleep(Duration::from_secs(3));
    let crashed = setup.inlet().args(["privacy", "run", "--abort-after-rewrites", "1"]).output().unwrap();
    assert!(!crashed.status.success(), "the run was to abort");
    let statuses = || {
        let output = setup.inlet().args(["privacy", "status", &id]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()[0]["steps"].clone()
    };
    let midway = statuses();
    assert_eq!(midway["lake"]["state"], "pending", "{midway}");
    let stitched: BTreeSet<&str> =
        midway["lake"]["stitched_anonymous_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(stitched, BTreeSet::from(DEVICES), "both devices are linked to the member");
    let completed = setup.inlet().args(["privacy", "run"]).output().unwrap();
    assert!(completed.status.success(), "{}", String::from_utf8_lossy(&completed.stderr));
    let steps = statuses();
    assert_eq!(steps["lake"]["state"], "done", "{steps}");
    assert_eq!(steps["dead-letters"]["state"], "done");
    assert_eq!(steps["destination-amp"]["state"], "done");
    assert_eq!(steps["destination-amp"]["counts"]["ids_sent"], 1);
    // GA4: one id per request, paced and within the daily quota (2 here): the third id waits for
    // the next quota day, its place kept in the status.
    let ga = &steps["destination-ga"];
    assert_eq!(ga["state"], "pending", "{steps}");
    assert_eq!(ga["counts"]["ids_sent"], 2, "{steps}");
    assert!(ga["next_attempt_at"].as_str().is_some() && ga["detail"].as_str().unwrap().contains("quota"), "{steps}");
    let ga4_calls = setup.receivers.ga4_deletion.accepted();
    assert_eq!(ga4_calls[0], ("USER_ID".to_owned(), MEMBER.to_owned()));
    assert_eq!(ga4_calls[1].0, "CLIENT_ID");
    assert!(setup.receivers.ga4_deletion.refused().is_empty(), "{:?}", setup.receivers.ga4_deletion.refused());
    let lake_counts = &steps["lake"]["counts"];
    assert!(lake_counts["files_read"].as_u64() < lake_counts["files"].as_u64(), "bloom filters skipped files: {steps}");

    // The lake: no row of the member; every other row as it was, once; untouched files unchanged.
    wait_for("the marker sent after the deletion is in the lake", || async {
        rows(&lake_files(&lake).await).iter().any(|(_, row)| row["event"]["messageId"] == "after-deletion-marker")
    })
    .await;
    let after = lake_files(&lake).await;
    let after_rows = rows(&after);
    assert!(after_rows.iter().all(|(_, row)| !is_members(row)), "a row of the member is left");
    let others = |rows: Vec<(String, Value)>| {
        let mut kept: Vec<String> = rows
            .into_iter()
            .filter(|(_, row)| !is_members(row) && row["event"]["messageId"] != "after-deletion-marker")
            .map(|(_, row)| row.to_string())
            .collect();
        kept.sort();
        kept
    };
    assert_eq!(others(rows(&before)), others(after_rows.clone()), "other members' rows changed, were lost or doubled");
    let holding_member: BTreeSet<String> =
        rows(&before).into_iter().filter(|(_, row)| is_members(row)).map(|(key, _)| key).collect();
    for (key, bytes) in &before {
        if !holding_member.contains(key) {
            assert_eq!(after.get(key), Some(bytes), "{key} held no row of the member and must be untouched");
        }
    }

    // Dead letters: none of the member's; the others' unchanged.
    let letters_after = dead_letters(&lake).await;
    let all_after: Vec<&Value> = letters_after.values().flatten().collect();
    assert!(all_after.iter().all(|l| !is_members(l)), "a dead letter of the member is left");
    let others_letters = |letters: &BTreeMap<String, Vec<Value>>| {
        let mut kept: Vec<String> =
            letters.values().flatten().filter(|l| !is_members(l)).map(Value::to_string).collect();
        kept.sort();
        kept
    };
    assert_eq!(others_letters(&letters_before), others_letters(&letters_after));

    // Vendors: one deletion request with the member's id; no event of the member after it.
    assert_eq!(setup.receivers.amplitude.deletions(), vec![vec![MEMBER.to_owned()]]);
    assert_eq!(setup.receivers.amplitude.refused_deletions(), 0);
    let sent_to_amplitude = setup.receivers.amplitude.events();
    assert!(sent_to_amplitude.iter().all(|e| e["insert_id"] != "m-after-1"), "a suppressed event was forwarded");

    // A stitched device, seen by the gateway within a poll: its new events are not stored either.
    std::thread::sleep(Duration::from_secs(2));
    let marker = call("track", "after-stitch-marker", Some("member-1"), Some("anon-1"), Utc::now());
    setup.send(&[call("track", "m-after-2", None, Some(DEVICES[1]), Utc::now()), marker]);
    wait_for("the second marker is in the lake", || async {
        rows(&lake_files(&lake).await).iter().any(|(_, row)| row["event"]["messageId"] == "after-stitch-marker")
    })
    .await;
    assert!(rows(&lake_files(&lake).await).iter().all(|(_, row)| !is_members(row)));
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", setup.admin_port)).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("inlet_ingest_events_suppressed_total{source=\"web\"} 2"), "{metrics}");

    // The warehouse: the next run deletes the member's rows and records the step.
    setup.batch(&["run", "--from", &first, "--to", &last, "--quiet"]);
    assert_eq!(member_rows("users", "user_id"), "0");
    assert_eq!(member_rows("daily_user_activity", "user_key"), "0");
    assert_eq!(member_rows("identity_map", "anonymous_id"), "0");
    assert_eq!(member_rows("identity_map", "user_id"), "0");
    assert_ne!(setup.sql(&format!("SELECT count(*) FROM {schema}.users")), "0", "other members stay");
    let steps = statuses();
    assert_eq!(steps["warehouse"]["state"], "done", "{steps}");

    // IPs were truncated before anything was stored.
    assert!(after_rows.iter().all(|(_, row)| row["event"]["context"]["ip"] == "127.0.0.0"), "IPs kept whole");

    gateway.kill().unwrap();
    gateway.wait().unwrap();
}
