//! Black-box harness: a real gateway on port 0 over a temporary data directory.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use inlet_gateway::config::SourceConfig;
use inlet_gateway::{AppState, Clock, Config, SystemClock, serve, serve_admin};
use inlet_segment::StoredEvent;
use inlet_wal::WalReader;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const WEB_KEY: &str = "web-write-key";
pub const IOS_KEY: &str = "ios-write-key";

#[derive(Debug)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

pub struct TestGateway {
    pub url: String,
    /// The admin listener's (`/metrics`, probes with reasons, `/admin/…`).
    pub admin_url: String,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    shutdown: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    lake: Option<inlet_gateway::LakeTask>,
    pub dir: tempfile::TempDir,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        sources: vec![SourceConfig::new("web", WEB_KEY), SourceConfig::new("ios", IOS_KEY)],
        ..Config::default()
    }
}

/// A client that accepts the self-signed certificates of the TLS tests.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap()
}

/// One row of a lake file, with the file's key.
#[derive(Debug, Clone)]
pub struct LakeRow {
    pub key: String,
    pub message_id: String,
    pub message_type: String,
    pub timestamp_micros: i64,
    pub user_id: Option<String>,
    pub source: String,
}

/// Every row of every Parquet file under `events/` of a lake, read back with arrow-rs.
pub async fn read_lake(store: &inlet_lake::LakeStore) -> Vec<LakeRow> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    let mut rows = Vec::new();
    for key in store.list("events").await.unwrap() {
        let bytes = store.get(&key).await.unwrap().unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let text = |name: &str| batch.column_by_name(name).unwrap().as_string::<i32>().clone();
            let (ids, types, users, sources) = (text("message_id"), text("type"), text("user_id"), text("source"));
            let ts = batch.column_by_name("timestamp").unwrap().as_primitive::<TimestampMicrosecondType>().clone();
            for i in 0..batch.num_rows() {
                rows.push(LakeRow {
                    key: key.clone(),
                    message_id: ids.value(i).to_owned(),
                    message_type: types.value(i).to_owned(),
                    timestamp_micros: ts.value(i),
                    user_id: users.is_valid(i).then(|| users.value(i).to_owned()),
                    source: sources.value(i).to_owned(),
                });
            }
        }
    }
    rows
}

/// The lake of a gateway started with the default (local) lake location.
pub async fn local_lake(dir: &std::path::Path) -> inlet_lake::LakeStore {
    inlet_lake::LakeStore::open(inlet_lake::LakeLocation::Local(dir.join("lake")), &inlet_lake::S3Settings::default())
        .expect("open the lake")
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        TestGateway::start_with(Arc::new(SystemClock), |_| {}).await
    }

    pub async fn start_with(clock: Arc<dyn Clock>, adjust: impl FnOnce(&mut Config)) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        TestGateway::start_in(dir, config, clock, None).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        config: Config,
        clock: Arc<dyn Clock>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> TestGateway {
        let listener = tokio::net::TcpListener::bind(config.server.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new(AppState::open(config, clock).unwrap());
        let lake = inlet_gateway::start_lake(&state).await.unwrap();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin_listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        tokio::spawn(serve_admin(Arc::clone(&state), admin_listener, stopped()));
        let task = tokio::spawn(serve(Arc::clone(&state), tls, listener, stopped()));
        TestGateway {
            url: format!("{scheme}://{addr}"),
            admin_url: format!("http://{admin_addr}"),
            state,
            client: client(),
            shutdown: Some(tx),
            task: Some(task),
            lake: Some(lake),
            dir,
        }
    }

    /// Every event in the WAL, in order.
    pub fn stored(&self) -> Vec<StoredEvent> {
        let wal = &self.state.wal;
        WalReader::open(&wal.config().dir, 0, wal.durable_lsn(), wal.config().max_record_bytes)
            .unwrap()
            .map(|r| StoredEvent::decode(&r.unwrap().payload).unwrap())
            .collect()
    }

    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self.state.metrics.render(&self.state.wal);
        text.lines()
            .find_map(|line| line.strip_prefix(name_and_labels).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    pub async fn stop(mut self) {
        self.begin_stop();
        self.finish_stop().await;
    }

    /// Signals shutdown, as SIGTERM does: the listener closes, in-flight requests go on.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
    }

    /// Waits for in-flight requests to finish, flushes the lake, then closes the WAL.
    pub async fn finish_stop(&mut self) {
        self.task.take().unwrap().await.unwrap().unwrap();
        self.lake.take().unwrap().stop().await.unwrap();
        self.state.wal.shutdown().unwrap();
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }
}
