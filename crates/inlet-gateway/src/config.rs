//! Typed configuration: defaults < TOML file < `INLET_*` environment variables.
//!
//! Every field is documented in `docs/config.md`. Unknown keys are refused, and
//! [`Config::validate`] checks what types cannot, so a bad configuration stops the program at
//! start with a message naming the key.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inlet_lake::layout::{SAFE_NAME_RULE, is_safe_name};
use inlet_segment::IpPolicy;
use inlet_wal::FsyncPolicy;
use ipnet::IpNet;
use serde::Deserialize;

/// Prefix of environment overrides; `__` separates nested keys (`INLET_WAL__FSYNC=never`).
pub const ENV_PREFIX: &str = "INLET_";
/// The variable naming the config file; not itself an override.
pub const CONFIG_PATH_ENV: &str = "INLET_CONFIG";
/// Variables of the batch job (`inlet-batch`), which may share an environment with the gateway.
pub const BATCH_ENV_PREFIX: &str = "INLET_BATCH_";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the WAL and development files live unless configured elsewhere.
    pub data_dir: PathBuf,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `inlet_gateway=debug,info`, …).
    pub log_level: String,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub limits: LimitsConfig,
    pub wal: WalSettings,
    pub dedupe: DedupeConfig,
    pub lake: LakeConfig,
    pub privacy: PrivacyConfig,
    /// Write key → source. Empty: a development source is created (see `docs/config.md`).
    pub sources: Vec<SourceConfig>,
    /// Where events are forwarded (Amplitude, GA4); see `docs/destinations.md`.
    pub destinations: Vec<inlet_destinations::DestinationConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The URL SDKs reach this gateway at; served in the settings endpoint as `apiHost`.
    /// Default: derived from `listen` (and TLS).
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, CDNs), as CIDRs.
    pub trusted_proxies: Vec<IpNet>,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace_secs: u64,
    /// A request body must arrive within this time (slow clients get 408).
    pub body_read_timeout_secs: u64,
    /// After `body_rate_grace_secs`, a body must keep arriving at this many bytes a second on
    /// average (slower clients get 408).
    pub min_body_bytes_per_sec: u64,
    pub body_rate_grace_secs: u64,
    /// A connection's first request must start within this time of its accept (or TLS
    /// handshake), or the connection is closed.
    pub first_request_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed (HTTP/1 and HTTP/2).
    pub idle_timeout_secs: u64,
    /// A connection older than this is asked to close after its current requests.
    pub max_connection_age_secs: u64,
    /// HTTP/2: a ping this often, which must be answered within the same time.
    pub http2_keepalive_secs: u64,
    pub http2_max_concurrent_streams: u32,
    /// Connections open at once; beyond it new ones wait in the listen backlog. What bounds
    /// the memory of many idle or slow clients (each connection costs tens of KiB).
    pub max_connections: usize,
    /// Connections one client address may hold open (peers in `trusted_proxies` excepted).
    pub max_connections_per_client: usize,
    /// Connections the kernel completes and queues before the gateway accepts them (capped
    /// by `net.core.somaxconn`). Beyond it SYNs are dropped and clients retry a second later.
    pub listen_backlog: u32,
    pub tls: Option<TlsConfig>,
}

/// The operators' listener: `/metrics`, the probes with their details, and operator APIs.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where it listens. Keep it on loopback or a private network: `/metrics` needs no token.
    pub listen: SocketAddr,
    /// `false`: no admin listener at all.
    pub enabled: bool,
    /// The bearer token operator APIs require (`/admin/…`). Without it they answer `401`.
    pub token: Option<String>,
    /// A file holding the token (read at start, surrounding whitespace trimmed).
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> AdminConfig {
        AdminConfig { listen: SocketAddr::from(([127, 0, 0, 1], 8081)), enabled: true, token: None, token_file: None }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("enabled", &self.enabled)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// What `Debug` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_event_bytes: usize,
    /// Largest request body, after decompression.
    pub max_request_bytes: usize,
    pub max_batch_events: usize,
    /// Request bytes being decoded or waiting for the WAL; beyond it requests get 429.
    pub max_inflight_bytes: usize,
    /// Ingestion requests being handled at once; beyond it requests get 429.
    pub max_inflight_requests: usize,
    /// Of those, how many one client address may have (beyond it that client gets 429).
    pub max_inflight_requests_per_client: usize,
    /// What one request's events may add up to once normalised (the batch's context merged
    /// into each); beyond it the request gets 413.
    pub max_stored_request_bytes: usize,
    /// The share (0–1] of the in-flight budgets and of `wal.max_disk_bytes` one source may
    /// hold when more than one source is configured; beyond it that source gets 429.
    pub source_share: f64,
    /// Failed authentications one client address may make per minute (a burst of as many);
    /// beyond it its requests get 429 until the rate falls back.
    pub failed_auth_per_minute: u32,
    /// Requests one client address may have refused for their content (`400`, `413`) per
    /// minute (a burst of as many); beyond it its requests get 429 until the rate falls back.
    pub refused_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WalSettings {
    /// Default: `{data_dir}/wal`.
    pub dir: Option<PathBuf>,
    /// `always` (fsync before acknowledging), `interval` or `never`.
    pub fsync: FsyncMode,
    /// With `fsync = "interval"`: the longest an acknowledged record stays unsynced.
    pub fsync_interval_ms: u64,
    pub segment_bytes: u64,
    /// Above this much WAL on disk, ingestion answers 503 until consumers catch up.
    pub max_disk_bytes: u64,
    /// Zero-fill each next segment ahead of time, so syncs write data only.
    pub preallocate: bool,
    /// With `preallocate`: confirmed segments kept to be zero-filled in place as the next
    /// spares, instead of deleted while new files are filled.
    pub recycled_segments: usize,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeConfig {
    pub window_secs: u64,
    /// Upper bound on remembered message ids (about 40 bytes each); beyond it the oldest
    /// hour of ids is forgotten early.
    pub max_entries: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// `s3://bucket/prefix` or a local directory. Default: `{data_dir}/lake`.
    pub url: Option<String>,
    /// S3 endpoint for S3-compatible stores (Garage, MinIO, …); default: AWS.
    pub s3_endpoint: Option<String>,
    /// Default: the AWS default chain (`AWS_REGION`, profile, instance metadata).
    pub s3_region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub s3_force_path_style: bool,
    /// Files larger than this are uploaded in parts (at least 5 MiB + 1, S3's part minimum).
    pub s3_multipart_threshold_bytes: usize,
    /// Names this instance's files and watermark. Default: generated once, kept in
    /// `{data_dir}/instance-id`.
    pub instance_id: Option<String>,
    /// A WAL range is flushed to the lake at the latest this long after it started.
    pub max_age_secs: u64,
    /// After an hour ends, wait this long for its late arrivals before flushing.
    pub hour_grace_secs: u64,
    /// Flush a range once it holds this many events.
    pub max_range_records: u64,
    /// A range holds at most this many bytes of events: bounds the writer's memory.
    pub max_range_bytes: usize,
    /// Events dated before this day (UTC) are partitioned by `receivedAt`.
    pub min_event_date: String,
    /// Parquet page compression: `gzip` (default), `zstd` or `snappy` (see `docs/lake.md`).
    pub compression: String,
    /// On shutdown, how long the final flush may take before it is left to the next start.
    pub shutdown_flush_secs: u64,
}

/// Regulations (suppress, delete, unsuppress): see `docs/privacy.md`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// How often the gateway reads the lake's regulations: the longest a regulation made
    /// elsewhere (another gateway, the CLI) takes to apply here.
    pub poll_secs: u64,
    /// Whether this gateway carries out deletions (lake files, dead letters, vendors' deletion
    /// APIs). With several gateways on one lake, one is enough.
    pub worker: bool,
    /// A deletion starts erasing this long after it was made: time for every gateway to read
    /// it and for lake ranges encoded before that to be uploaded.
    pub settle_secs: u64,
}

impl Default for PrivacyConfig {
    fn default() -> PrivacyConfig {
        PrivacyConfig { poll_secs: 10, worker: true, settle_secs: 120 }
    }
}

impl Default for LakeConfig {
    fn default() -> LakeConfig {
        LakeConfig {
            url: None,
            s3_endpoint: None,
            s3_region: None,
            s3_force_path_style: false,
            s3_multipart_threshold_bytes: inlet_lake::store::MULTIPART_THRESHOLD,
            instance_id: None,
            max_age_secs: 3600,
            hour_grace_secs: 60,
            max_range_records: 250_000,
            max_range_bytes: 128 * 1024 * 1024,
            min_event_date: "2015-01-01".into(),
            compression: "gzip".into(),
            shutdown_flush_secs: 30,
        }
    }
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Stored with every event (`source` in the lake); lowercase letters, digits, `-`, `_`.
    pub name: String,
    pub write_key: String,
    /// A sustained rate (events a second) this source may send; beyond it, `429`. Unset: no rate limit.
    #[serde(default)]
    pub events_per_sec: Option<u32>,
    /// The burst above `events_per_sec` (default: one second's worth, at least a full batch).
    #[serde(default)]
    pub burst_events: Option<u32>,
    /// What is kept of the client's IP address: `full`, `truncate` (default) or `drop`.
    #[serde(default)]
    pub ip_policy: IpPolicy,
    /// The source's tracking plan, if it has one (docs/tracking-plans.md).
    #[serde(default)]
    pub tracking_plan: Option<TrackingPlanConfig>,
}

/// `sources[].tracking_plan`: the plan file and what to do with events that break it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrackingPlanConfig {
    /// YAML (or JSON, by extension) plan file; a relative path is from the working directory.
    pub file: PathBuf,
    /// `observe` (default), `flag` or `block`.
    #[serde(default)]
    pub mode: inlet_plans::Mode,
}

impl SourceConfig {
    pub fn new(name: impl Into<String>, write_key: impl Into<String>) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            write_key: write_key.into(),
            events_per_sec: None,
            burst_events: None,
            ip_policy: IpPolicy::default(),
            tracking_plan: None,
        }
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("write_key", &REDACTED)
            .field("events_per_sec", &self.events_per_sec)
            .field("burst_events", &self.burst_events)
            .field("ip_policy", &self.ip_policy)
            .field("tracking_plan", &self.tracking_plan)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("inlet-data"),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            server: ServerConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
            wal: WalSettings::default(),
            dedupe: DedupeConfig::default(),
            lake: LakeConfig::default(),
            privacy: PrivacyConfig::default(),
            sources: Vec::new(),
            destinations: Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            trusted_proxies: Vec::new(),
            shutdown_grace_secs: 30,
            body_read_timeout_secs: 30,
            min_body_bytes_per_sec: 1024,
            body_rate_grace_secs: 5,
            first_request_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_connection_age_secs: 3600,
            http2_keepalive_secs: 30,
            http2_max_concurrent_streams: 100,
            max_connections: 10_000,
            max_connections_per_client: 256,
            listen_backlog: 4096,
            tls: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_event_bytes: 32 * 1024,
            max_request_bytes: 500 * 1024,
            max_batch_events: 2500,
            max_inflight_bytes: 128 * 1024 * 1024,
            max_inflight_requests: 1024,
            max_inflight_requests_per_client: 128,
            max_stored_request_bytes: 2 * 1024 * 1024,
            source_share: 0.5,
            failed_auth_per_minute: 30,
            refused_per_minute: 120,
        }
    }
}

impl Default for WalSettings {
    fn default() -> WalSettings {
        WalSettings {
            dir: None,
            fsync: FsyncMode::Always,
            fsync_interval_ms: 50,
            segment_bytes: 64 * 1024 * 1024,
            max_disk_bytes: 10 * 1024 * 1024 * 1024,
            preallocate: true,
            recycled_segments: 4,
        }
    }
}

impl Default for DedupeConfig {
    fn default() -> DedupeConfig {
        DedupeConfig { window_secs: 24 * 3600, max_entries: 2_000_000 }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (if any), then every `INLET_*` variable of `env`.
    /// `env` is passed in so tests never touch the process environment.
    pub fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else { continue };
            if name == CONFIG_PATH_ENV || name.starts_with(BATCH_ENV_PREFIX) {
                continue;
            }
            let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
            set_path(&mut table, &path, env_value(value)).map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
        }
        let config: Config =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let l = &self.limits;
        if l.max_event_bytes == 0 || l.max_request_bytes == 0 || l.max_batch_events == 0 || l.max_inflight_requests == 0
        {
            return invalid("limits must be greater than zero".into());
        }
        let server = &self.server;
        for (key, value) in [
            ("server.max_connections", server.max_connections as u64),
            ("server.max_connections_per_client", server.max_connections_per_client as u64),
            ("server.listen_backlog", u64::from(server.listen_backlog)),
            ("server.first_request_timeout_secs", server.first_request_timeout_secs),
            ("server.idle_timeout_secs", server.idle_timeout_secs),
            ("server.max_connection_age_secs", server.max_connection_age_secs),
            ("server.http2_keepalive_secs", server.http2_keepalive_secs),
            ("server.http2_max_concurrent_streams", u64::from(server.http2_max_concurrent_streams)),
            ("server.body_read_timeout_secs", server.body_read_timeout_secs),
            ("limits.max_inflight_requests_per_client", l.max_inflight_requests_per_client as u64),
            ("limits.failed_auth_per_minute", u64::from(l.failed_auth_per_minute)),
            ("limits.refused_per_minute", u64::from(l.refused_per_minute)),
        ] {
            if value == 0 {
                return invalid(format!("{key} must be greater than zero"));
            }
        }
        if !(l.source_share > 0.0 && l.source_share <= 1.0) {
            return invalid(format!("limits.source_share {} must be greater than 0 and at most 1", l.source_share));
        }
        if l.max_stored_request_bytes < l.max_request_bytes {
            return invalid("limits.max_stored_request_bytes must be at least limits.max_request_bytes".into());
        }
        if self.privacy.poll_secs == 0 {
            return invalid("privacy.poll_secs must be greater than zero".into());
        }
        if self.admin.token.is_some() && self.admin.token_file.is_some() {
            return invalid("admin.token and admin.token_file are exclusive: set one".into());
        }
        if self.admin.token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            return invalid("admin.token must be at least 16 characters".into());
        }
        if self.admin.enabled && self.admin.listen == self.server.listen && self.server.listen.port() != 0 {
            return invalid("admin.listen must differ from server.listen".into());
        }
        if l.max_event_bytes > l.max_request_bytes {
            return invalid("limits.max_event_bytes must not exceed limits.max_request_bytes".into());
        }
        // A compressed body and its decompressed form coexist while it is decoded.
        if l.max_inflight_bytes < 2 * l.max_request_bytes {
            return invalid("limits.max_inflight_bytes must be at least twice limits.max_request_bytes".into());
        }
        if self.wal.segment_bytes < 1024 * 1024 {
            return invalid("wal.segment_bytes must be at least 1 MiB".into());
        }
        if self.wal.max_disk_bytes < 2 * self.wal.segment_bytes {
            return invalid("wal.max_disk_bytes must be at least twice wal.segment_bytes".into());
        }
        if self.wal.fsync == FsyncMode::Interval && self.wal.fsync_interval_ms == 0 {
            return invalid("wal.fsync_interval_ms must be greater than zero".into());
        }
        if self.dedupe.window_secs == 0 {
            return invalid("dedupe.window_secs must be greater than zero".into());
        }
        if let Err(e) = inlet_lake::LakeLocation::parse(&self.lake_url()) {
            return invalid(format!("lake.url: {e}"));
        }
        if chrono::NaiveDate::parse_from_str(&self.lake.min_event_date, "%Y-%m-%d").is_err() {
            return invalid(format!("lake.min_event_date {:?} must be YYYY-MM-DD", self.lake.min_event_date));
        }
        if self.lake.s3_multipart_threshold_bytes <= inlet_lake::store::MULTIPART_PART_BYTES {
            return invalid(format!(
                "lake.s3_multipart_threshold_bytes must exceed the part size ({} bytes)",
                inlet_lake::store::MULTIPART_PART_BYTES
            ));
        }
        if inlet_lake::Codec::parse(&self.lake.compression).is_none() {
            return invalid(format!("lake.compression {:?} must be gzip, zstd or snappy", self.lake.compression));
        }
        if self.lake.max_age_secs == 0 || self.lake.max_range_records == 0 || self.lake.max_range_bytes == 0 {
            return invalid(
                "lake.max_age_secs, lake.max_range_records and lake.max_range_bytes must be greater than zero".into(),
            );
        }
        if let Some(id) = &self.lake.instance_id
            && !is_safe_name(id)
        {
            return invalid(format!("lake.instance_id {id:?} must be {SAFE_NAME_RULE}"));
        }
        if let Some(url) = &self.server.public_url
            && (!(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len())
        {
            return invalid(format!("server.public_url {url:?} must start with http:// or https://"));
        }
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for source in &self.sources {
            if !is_safe_name(&source.name) {
                return invalid(format!(
                    "source name {:?} must be {SAFE_NAME_RULE} (it becomes a lake partition)",
                    source.name
                ));
            }
            if source.write_key.trim().is_empty() || source.write_key.contains(':') {
                return invalid(format!("source {:?}: write_key must be non-empty and contain no ':'", source.name));
            }
            if !names.insert(&source.name) {
                return invalid(format!("source name {:?} appears twice", source.name));
            }
            if !keys.insert(&source.write_key) {
                return invalid(format!("source {:?}: its write_key is used by another source", source.name));
            }
            if source.events_per_sec == Some(0) || source.burst_events == Some(0) {
                return invalid(format!(
                    "source {:?}: events_per_sec and burst_events must be greater than zero",
                    source.name
                ));
            }
            if source.burst_events.is_some() && source.events_per_sec.is_none() {
                return invalid(format!("source {:?}: burst_events needs events_per_sec", source.name));
            }
        }
        // Without configured sources the development source is created at start.
        let known: Vec<&str> = if self.sources.is_empty() {
            vec![crate::dev::DEV_SOURCE]
        } else {
            self.sources.iter().map(|s| s.name.as_str()).collect()
        };
        let mut destinations = HashSet::new();
        for destination in &self.destinations {
            destination.validate(&known).map_err(ConfigError::Invalid)?;
            if !destinations.insert(&destination.name) {
                return invalid(format!("destination name {:?} appears twice", destination.name));
            }
        }
        Ok(())
    }

    /// The lake root: the configured URL, or `{data_dir}/lake`.
    pub fn lake_url(&self) -> String {
        self.lake.url.clone().unwrap_or_else(|| self.data_dir.join("lake").display().to_string())
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.wal.dir.clone().unwrap_or_else(|| self.data_dir.join("wal"))
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        match self.wal.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => FsyncPolicy::Interval(Duration::from_millis(self.wal.fsync_interval_ms)),
            FsyncMode::Never => FsyncPolicy::Never,
        }
    }

    /// The URL SDKs should use: the configured one, or what `listen` implies.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.server.tls.is_some() { "https" } else { "http" };
                let listen = self.server.listen;
                let host = if listen.ip().is_unspecified() { "localhost".to_owned() } else { listen.ip().to_string() };
                let host = if listen.is_ipv6() && !listen.ip().is_unspecified() { format!("[{host}]") } else { host };
                format!("{scheme}://{host}:{}", listen.port())
            }
        }
    }
}

/// An environment value as TOML if it parses as a TOML value (numbers, booleans, arrays,
/// inline tables, quoted strings), else as a plain string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        let entry = current.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, &env(&[])).expect("defaults are valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.public_url(), "http://127.0.0.1:8080");
        assert_eq!(config.fsync_policy(), FsyncPolicy::Always);
        assert_eq!(config.wal_dir(), PathBuf::from("inlet-data/wal"));
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let file = write(
            r#"
            data_dir = "/var/lib/inlet"
            [server]
            listen = "0.0.0.0:9000"
            [wal]
            fsync = "interval"
            [[sources]]
            name = "web"
            write_key = "from-file"
            "#,
        );
        let config = Config::load(
            Some(file.path()),
            &env(&[
                ("INLET_SERVER__LISTEN", "0.0.0.0:9100"),
                ("INLET_WAL__FSYNC_INTERVAL_MS", "20"),
                ("INLET_SERVER__PUBLIC_URL", "https://events.example.com/"),
                ("INLET_CONFIG", "ignored"),
                ("INLET_BATCH_LAKE_URL", "ignored: the batch job's"),
                ("OTHER", "ignored"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.server.listen, "0.0.0.0:9100".parse().expect("addr"));
        assert_eq!(config.fsync_policy(), FsyncPolicy::Interval(Duration::from_millis(20)));
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/inlet"));
        assert_eq!(config.sources[0].write_key, "from-file");
        assert_eq!(config.public_url(), "https://events.example.com");
        let config = Config::load(
            Some(file.path()),
            &env(&[("INLET_SOURCES", r#"[{name = "ios", write_key = "k1"}, {name = "android", write_key = "k2"}]"#)]),
        )
        .expect("valid");
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[1].name, "android");
    }

    #[test]
    fn refuses_bad_configurations_with_the_key_named() {
        let cases = [
            ("[server]\nlisten = \"nowhere\"", "listen"),
            ("[server]\nlistn = \"0.0.0.0:1\"", "listn"),
            ("[wal]\nfsync = \"sometimes\"", "sometimes"),
            ("[limits]\nmax_event_bytes = 600000", "max_event_bytes"),
            ("[[sources]]\nname = \"Web App\"\nwrite_key = \"k\"", "source name"),
            ("[[sources]]\nname = \"a\"\nwrite_key = \"k\"\n[[sources]]\nname = \"b\"\nwrite_key = \"k\"", "write_key"),
            ("[[sources]]\nname = \"a\"\nwrite_key = \"\"", "write_key"),
            ("[server]\npublic_url = \"events.example.com\"", "public_url"),
            ("[dedupe]\nwindow_secs = 0", "window_secs"),
            ("[wal]\nsegment_bytes = 10", "segment_bytes"),
            ("[lake]\nurl = \"gs://bucket\"", "lake.url"),
            ("[lake]\nmin_event_date = \"2015\"", "min_event_date"),
            ("[lake]\ninstance_id = \"Gateway 1\"", "instance_id"),
        ];
        for (text, needle) in cases {
            let file = write(text);
            let error = Config::load(Some(file.path()), &env(&[])).expect_err(text).to_string();
            assert!(error.contains(needle), "{text:?}: {error:?} should mention {needle:?}");
        }
        let error = Config::load(None, &env(&[("INLET_LIMITS__MAX_EVENT_BYTES", "lots")])).expect_err("bad env");
        assert!(error.to_string().contains("max_event_bytes"), "{error}");
        let error = Config::load(None, &env(&[("INLET_NOPE", "1")])).expect_err("unknown env");
        assert!(error.to_string().contains("nope"), "{error}");
        let file = write("[server");
        assert!(matches!(Config::load(Some(file.path()), &env(&[])), Err(ConfigError::Parse { .. })));
    }
}
