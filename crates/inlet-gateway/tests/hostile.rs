//! Hostile clients against a running gateway binary, while a well-behaved client sends batches:
//! amplifying batches, silent sockets, squatters declaring large bodies, slow-drip bodies, a
//! source sending ten times its rate, and a write-key scan. Each attacker comes from its own
//! loopback address (127.0.0.2 and up), as distinct machines would; the well-behaved client
//! from 127.0.0.1.
//!
//! What must hold: the gateway neither crashes nor grows past a memory bound; every attack is
//! refused or timed out with its documented status; the well-behaved client gets no `429` and no
//! `503`. Its throughput with and without the attacks is printed, not asserted: speed is for
//! the benchmarks (`docs/benchmarks.md`), which run this against a release build. The
//! well-behaved client runs on a runtime of its own, so the attackers' thousands of tasks do not
//! delay it inside this process; the CPU time of the gateway, of this process and of the machine
//! is printed per phase, because on one machine the attackers compete with both for the cores.
//! `GATEWAY_BIN` selects the binary (default: this build's `inlet`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;

const WEB_KEY: &str = "hostile-web-key";
const IOS_KEY: &str = "hostile-ios-key";
/// The ios source's configured rate; its attacker sends ten times as much.
const IOS_RATE: u32 = 200;
const SILENT_SOCKETS: usize = 1000;
const SQUATTERS: usize = 300;
const DRIPPERS: usize = 50;
const PHASE: Duration = Duration::from_secs(8);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_gateway(dir: &std::path::Path, port: u16, admin_port: u16) -> Child {
    let bin = std::env::var("GATEWAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_inlet").to_owned());
    let sources = format!(
        r#"[{{name = "web", write_key = "{WEB_KEY}"}}, {{name = "ios", write_key = "{IOS_KEY}", events_per_sec = {IOS_RATE}, burst_events = {IOS_RATE}}}]"#
    );
    Command::new(bin)
        .env("INLET_DATA_DIR", dir)
        .env("INLET_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("INLET_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("INLET_SOURCES", sources)
        // Shorter than the defaults, so the test sees every deadline pass within its phases.
        .env("INLET_SERVER__FIRST_REQUEST_TIMEOUT_SECS", "2")
        .env("INLET_SERVER__BODY_RATE_GRACE_SECS", "2")
        .env("INLET_LAKE__MAX_AGE_SECS", "2")
        .env("INLET_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("gateway.log")).unwrap())
        .spawn()
        .unwrap()
}

async fn connect_from(ip: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ip, 0)))?;
    socket.connect(target).await
}

/// Reads one response's status line and headers (and its body if it has a length); `None` if
/// the connection closed first.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let status = head.split_whitespace().nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            while received.len() < end + 4 + length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    break;
                }
                received.extend_from_slice(&chunk[..read]);
            }
            let body = String::from_utf8_lossy(&received[end + 4..]).into_owned();
            return Some((status, body));
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        received.extend_from_slice(&chunk[..read]);
    }
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).ok().and_then(|v| v["code"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// What the attackers saw: `status code` → count.
type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

async fn count(tally: &Tally, what: String) {
    *tally.lock().await.entry(what).or_default() += 1;
}

/// The well-behaved client: four connections sending batches of 20 events back to back.
async fn well_behaved(
    url: String,
    run: &'static str,
    stop: Arc<AtomicBool>,
) -> (u64, BTreeMap<u16, u64>, Vec<Duration>) {
    let client = reqwest::Client::builder().local_address(std::net::IpAddr::from(Ipv4Addr::LOCALHOST)).build().unwrap();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, url, stop) = (client.clone(), url.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let (mut events, mut statuses, mut latencies) = (0u64, BTreeMap::<u16, u64>::new(), Vec::new());
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> = (0..20)
                    .map(|i| {
                        json!({"type": "track", "event": "Viewed", "userId": format!("u{worker}"),
                               "messageId": format!("{run}-{worker}-{seq}-{i}"), "properties": {"page": "/home"}})
                    })
                    .collect();
                seq += 1;
                let started = Instant::now();
                let status = match client
                    .post(format!("{url}/v1/batch"))
                    .basic_auth(WEB_KEY, Some(""))
                    .json(&json!({"batch": batch}))
                    .send()
                    .await
                {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                latencies.push(started.elapsed());
                *statuses.entry(status).or_default() += 1;
                if status == 200 {
                    events += 20;
                }
            }
            (events, statuses, latencies)
        }));
    }
    let (mut events, mut statuses, mut latencies) = (0, BTreeMap::new(), Vec::new());
    for task in tasks {
        let (e, s, l) = task.await.unwrap();
        events += e;
        for (status, n) in s {
            *statuses.entry(status).or_default() += n;
        }
        latencies.extend(l);
    }
    latencies.sort();
    (events, statuses, latencies)
}

/// The attackers' runtime, apart from the test's and the well-behaved client's.
fn attacker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

/// Runs the well-behaved client on its own two-thread runtime, away from the attackers' tasks.
async fn well_behaved_apart(
    url: String,
    run: &'static str,
    stop: Arc<AtomicBool>,
) -> (u64, BTreeMap<u16, u64>, Vec<Duration>) {
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(well_behaved(url, run, stop))
    });
    tokio::task::spawn_blocking(move || thread.join().unwrap()).await.unwrap()
}

/// CPU seconds used so far by process `pid` (user + system).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// The machine's busy and total CPU seconds so far, over all cores.
fn machine_cpu_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: Vec<u64> = stat.lines().next().unwrap().split_whitespace().skip(1).map(|t| t.parse().unwrap()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks[4]; // idle + iowait
    ((total - idle) as f64 / 100.0, total as f64 / 100.0)
}

/// CPU use over one phase: the gateway's and this process's in cores, the machine's busy share.
struct CpuUse {
    gateway: f64,
    this_process: f64,
    machine_busy: f64,
}

struct CpuMark {
    gateway_pid: u32,
    gateway: f64,
    this_process: f64,
    machine: (f64, f64),
    at: Instant,
}

impl CpuMark {
    fn now(gateway_pid: u32) -> Self {
        CpuMark {
            gateway_pid,
            gateway: cpu_secs(gateway_pid),
            this_process: cpu_secs(std::process::id()),
            machine: machine_cpu_secs(),
            at: Instant::now(),
        }
    }

    fn since(&self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64();
        let (busy, total) = machine_cpu_secs();
        CpuUse {
            gateway: (cpu_secs(self.gateway_pid) - self.gateway) / wall,
            this_process: (cpu_secs(std::process::id()) - self.this_process) / wall,
            machine_busy: (busy - self.machine.0) / (total - self.machine.1).max(0.01),
        }
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gateway {:.2} cores, test process {:.2} cores, machine {:.0} % busy",
            self.gateway,
            self.this_process,
            self.machine_busy * 100.0
        )
    }
}

fn p99(latencies: &[Duration]) -> Duration {
    latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap()
}

/// 2,400 tiny messages under a batch `context` of `context_bytes`.
fn amplifying_batch(context_bytes: usize) -> Vec<u8> {
    let messages: Vec<Value> = (0..2400).map(|i| json!({"type": "track", "event": "e", "userId": i})).collect();
    serde_json::to_vec(&json!({"batch": messages, "writeKey": WEB_KEY, "context": {"blob": "x".repeat(context_bytes)}}))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_clients_are_refused_and_a_well_behaved_one_is_served() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let mut gateway = start_gateway(dir.path(), port, admin_port);
    let url = format!("http://127.0.0.1:{port}");
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Unattacked.
    let stop = Arc::new(AtomicBool::new(false));
    let calm = tokio::spawn(well_behaved_apart(url.clone(), "calm", Arc::clone(&stop)));
    let calm_mark = CpuMark::now(gateway.id());
    tokio::time::sleep(PHASE).await;
    let calm_cpu = calm_mark.since();
    stop.store(true, Ordering::Relaxed);
    let (calm_events, calm_statuses, calm_latencies) = calm.await.unwrap();

    // Attacked.
    let attacking = Arc::new(AtomicBool::new(true));
    let tally: Tally = Arc::default();
    let attackers = attacker_runtime();
    let mut attacks = Vec::new();
    // Amplifying batches: a context too large to merge into any message, and one that fits each
    // message but not 2,400 of them; both refused whole.
    for context_bytes in [95 * 1024, 10 * 1024] {
        let (attacking, tally) = (Arc::clone(&attacking), Arc::clone(&tally));
        attacks.push(attackers.spawn(async move {
            let client =
                reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
            let body = amplifying_batch(context_bytes);
            while attacking.load(Ordering::Relaxed) {
                let response = client.post(format!("http://{target}/v1/batch")).body(body.clone()).send().await;
                let Ok(response) = response else { continue };
                let status = response.status().as_u16();
                let code = code_of(&response.text().await.unwrap_or_default());
                count(&tally, format!("amplify {status} {code}")).await;
            }
        }));
    }
    // Silent sockets: connect and say nothing; each must be closed by the gateway.
    let silent_closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..SILENT_SOCKETS {
        let closed = Arc::clone(&silent_closed);
        let from = Ipv4Addr::new(127, 0, 1, 1 + (i / 250) as u8);
        attacks.push(attackers.spawn(async move {
            let Ok(mut stream) = connect_from(from, target).await else { return };
            let mut byte = [0u8; 1];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Squatters: a head declaring 500 KB, then nothing, over and over.
    for i in 0..SQUATTERS {
        let (attacking, tally) = (Arc::clone(&attacking), Arc::clone(&tally));
        let from = Ipv4Addr::new(127, 0, 2, 1 + (i / 100) as u8);
        attacks.push(attackers.spawn(async move {
            while attacking.load(Ordering::Relaxed) {
                let Ok(mut stream) = connect_from(from, target).await else { continue };
                let head = "POST /v1/batch HTTP/1.1\r\nHost: inlet\r\nContent-Type: application/json\r\nContent-Length: 512000\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                let outcome = match read_response(&mut stream).await {
                    Some((status, body)) => format!("squat {status} {}", code_of(&body)),
                    None => "squat closed".to_owned(),
                };
                count(&tally, outcome).await;
            }
        }));
    }
    // Slow drip: a byte every half second.
    for _ in 0..DRIPPERS {
        let (attacking, tally) = (Arc::clone(&attacking), Arc::clone(&tally));
        attacks.push(attackers.spawn(async move {
            while attacking.load(Ordering::Relaxed) {
                let Ok(mut stream) = connect_from(Ipv4Addr::new(127, 0, 3, 1), target).await else { continue };
                let head = format!(
                    "POST /v1/batch HTTP/1.1\r\nHost: inlet\r\nContent-Type: application/json\r\nContent-Length: 4096\r\nAuthorization: Basic {}\r\n\r\n",
                    base64_key(WEB_KEY)
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                let (mut reader, mut writer) = stream.into_split();
                let drip = tokio::spawn(async move {
                    for _ in 0..4096 {
                        if writer.write_all(b" ").await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                });
                let mut buf = vec![0u8; 4096];
                let read = reader.read(&mut buf).await.unwrap_or(0);
                drip.abort();
                let text = String::from_utf8_lossy(&buf[..read]).to_lowercase();
                let status = text.split_whitespace().nth(1).unwrap_or("closed").to_owned();
                let code = text.split("\r\n\r\n").nth(1).map(code_of).unwrap_or_default();
                count(&tally, format!("drip {status} {code}")).await;
            }
        }));
    }
    // The ios source at ten times its rate: batches of 50, twenty a second... for each second.
    let ios_accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (attacking, tally, accepted) = (Arc::clone(&attacking), Arc::clone(&tally), Arc::clone(&ios_accepted));
        attacks.push(attackers.spawn(async move {
            let client =
                reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 4, 1])).build().unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let mut seq = 0;
            while attacking.load(Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                let batch: Vec<Value> = (0..50)
                    .map(|i| json!({"type": "track", "event": "Tap", "anonymousId": format!("a{seq}-{i}")}))
                    .collect();
                let Ok(response) = client
                    .post(format!("http://{target}/v1/batch"))
                    .basic_auth(IOS_KEY, Some(""))
                    .json(&json!({"batch": batch}))
                    .send()
                    .await
                else {
                    continue;
                };
                let status = response.status().as_u16();
                if status == 200 {
                    accepted.fetch_add(50, Ordering::Relaxed);
                }
                let code = code_of(&response.text().await.unwrap_or_default());
                count(&tally, format!("flood {status} {code}")).await;
            }
        }));
    }
    // A write-key scan of the settings route.
    {
        let (attacking, tally) = (Arc::clone(&attacking), Arc::clone(&tally));
        attacks.push(attackers.spawn(async move {
            let client =
                reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 5, 1])).build().unwrap();
            let mut guess = 0u64;
            while attacking.load(Ordering::Relaxed) {
                guess += 1;
                let Ok(response) =
                    client.get(format!("http://{target}/v1/projects/guess-{guess}/settings")).send().await
                else {
                    continue;
                };
                let status = response.status().as_u16();
                let code = code_of(&response.text().await.unwrap_or_default());
                count(&tally, format!("scan {status} {code}")).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let attacked = tokio::spawn(well_behaved_apart(url.clone(), "attacked", Arc::clone(&stop)));
    let attack_started = Instant::now();
    let attacked_mark = CpuMark::now(gateway.id());
    tokio::time::sleep(PHASE).await;
    let attacked_cpu = attacked_mark.since();
    stop.store(true, Ordering::Relaxed);
    let (attacked_events, attacked_statuses, attacked_latencies) = attacked.await.unwrap();
    let attack_secs = attack_started.elapsed().as_secs_f64() + 1.0;
    attacking.store(false, Ordering::Relaxed);
    for attack in attacks {
        let _ = tokio::time::timeout(Duration::from_secs(15), attack).await;
    }
    attackers.shutdown_background();

    let rss_kib = peak_rss_kib(gateway.id());
    let alive = http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status() == 200);
    let tally = tally.lock().await.clone();
    let calm_rate = calm_events as f64 / PHASE.as_secs_f64();
    let attacked_rate = attacked_events as f64 / PHASE.as_secs_f64();
    eprintln!(
        "hostile: well-behaved client {calm_rate:.0} events/s (p99 {:.1} ms) unattacked, {attacked_rate:.0} events/s \
         (p99 {:.1} ms) attacked: {:.0} %; gateway peak RSS {} MiB; silent sockets closed {}/{SILENT_SOCKETS}; \
         ios accepted {} events in {attack_secs:.0} s at {IOS_RATE}/s; attacks {tally:?}\n\
         hostile: CPU unattacked: {calm_cpu}; attacked: {attacked_cpu}",
        p99(&calm_latencies).as_secs_f64() * 1000.0,
        p99(&attacked_latencies).as_secs_f64() * 1000.0,
        100.0 * attacked_rate / calm_rate.max(1.0),
        rss_kib / 1024,
        silent_closed.load(Ordering::Relaxed),
        ios_accepted.load(Ordering::Relaxed),
    );
    let _ = gateway.kill();
    let _ = gateway.wait();

    assert!(alive, "the gateway survives");
    assert_eq!(calm_statuses.keys().collect::<Vec<_>>(), [&200], "unattacked: {calm_statuses:?}");
    assert_eq!(attacked_statuses.keys().collect::<Vec<_>>(), [&200], "attacked, no 429 or 503: {attacked_statuses:?}");
    assert!(rss_kib < 512 * 1024, "peak RSS {rss_kib} KiB");
    assert_eq!(silent_closed.load(Ordering::Relaxed), SILENT_SOCKETS, "every silent socket is closed");
    let seen =
        |prefix: &str| tally.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let only = |prefix: &str, allowed: &[&str]| {
        let kinds = seen(prefix);
        assert!(!kinds.is_empty(), "{prefix}: no attempt");
        for kind in &kinds {
            assert!(
                allowed.iter().any(|a| kind == &format!("{prefix} {a}")),
                "{kind} is not a documented refusal: {tally:?}"
            );
        }
    };
    only("amplify", &["413 batch_context_too_large", "413 stored_request_too_large", "429 client_throttled"]);
    for refusal in ["413 batch_context_too_large", "413 stored_request_too_large", "429 client_throttled"] {
        assert!(tally.contains_key(&format!("amplify {refusal}")), "amplify {refusal}: {tally:?}");
    }
    only("squat", &["408 body_too_slow", "closed"]);
    only("drip", &["408 body_too_slow"]);
    only("flood", &["200 ", "429 source_rate_limited"]);
    assert!(tally.contains_key("flood 429 source_rate_limited"), "{tally:?}");
    let allowed_ios = f64::from(IOS_RATE) * (attack_secs + 2.0) + f64::from(IOS_RATE) + 50.0;
    assert!(ios_accepted.load(Ordering::Relaxed) as f64 <= allowed_ios, "ios got more than its rate");
    only("scan", &["401 invalid_write_key", "429 auth_throttled"]);
    // A burst of 30, then one every two seconds (30 a minute).
    let allowed_failures = 30.0 + attack_secs / 2.0 + 2.0;
    assert!(tally.get("scan 401 invalid_write_key").copied().unwrap_or(0) as f64 <= allowed_failures, "{tally:?}");
}

fn base64_key(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
}
