//! The application: configuration, the open WAL, and everything handlers share.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use inlet_destinations::{DestinationStatus, consumer_name};
use inlet_privacy::{PrivacyStore, Suppressions};
use inlet_segment::{Limits, Normaliser, StoredEventKey, parse_timestamp};
use inlet_wal::{WalConfig, WalHandle, WalReader};

use crate::auth::Sources;
use crate::config::Config;
use crate::debugger::Debugger;
use crate::dedupe::Deduplicator;
use crate::error::StartupError;
use crate::inflight::{BudgetLimits, InflightBudget};
use crate::metrics::{Metrics, WalMetrics};
use crate::plans::SourcePlans;
use crate::source_limits::SourceLimits;

/// The source of `receivedAt`; replaced in tests to make golden output deterministic.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Everything the handlers share; one per process, behind an `Arc`.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub public_url: String,
    pub sources: Sources,
    pub wal: Arc<WalHandle>,
    pub dedupe: Deduplicator,
    pub metrics: Arc<Metrics>,
    pub normaliser: Normaliser,
    pub inflight: Arc<InflightBudget>,
    pub source_limits: SourceLimits,
    /// The operator token of the admin API (`admin.token` or `admin.token_file`), if set.
    pub admin_token: Option<String>,
    pub clock: Arc<dyn Clock>,
    /// Ids whose events are acknowledged but not stored or forwarded (shared with the lake
    /// writer and the destinations).
    pub suppressions: Arc<Suppressions>,
    /// The lake's regulations.
    pub privacy: PrivacyStore,
    /// Set while the privacy task has not yet read the regulations: the gateway is not ready,
    /// as it could store a suppressed id's events.
    pub regulations_unread: AtomicBool,
    pub shutting_down: AtomicBool,
    /// Rate-limits warnings about refused requests.
    pub refusal_log: LogLimiter,
    /// Why the lake writer stopped, if it did (it only stops on a WAL failure or a bug).
    pub lake_failed: std::sync::OnceLock<String>,
    /// Each configured destination's state, by name (shown in `/readyz`).
    pub destinations: Vec<(String, Arc<DestinationStatus>)>,
    /// Each source's tracking plan, compiled.
    pub plans: SourcePlans,
    /// The live debugger's sample of stored events and rates.
    pub debugger: Debugger,
}

impl AppState {
    pub fn destination_status(&self, name: &str) -> Option<&Arc<DestinationStatus>> {
        self.destinations.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Each destination's backlog, for `/readyz`: a vendor outage shows here (and in metrics)
    /// without failing readiness, since ingestion and the lake are unaffected.
    pub fn destinations_report(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let entries = self.destinations.iter().map(|(name, s)| {
            let report = serde_json::json!({
                "backlog_events": s.backlog_events.load(Relaxed),
                "backlog_bytes": s.backlog_bytes.load(Relaxed),
                "over_budget": s.over_budget.load(Relaxed),
            });
            (name.clone(), report)
        });
        serde_json::Value::Object(entries.collect())
    }

    /// Each destination's full status (`GET /admin/destinations`, `inlet destinations status`).
    pub fn destinations_status(&self) -> Vec<serde_json::Value> {
        self.config
            .destinations
            .iter()
            .filter_map(|config| {
                let status = self.destination_status(&config.name)?;
                let mut report = serde_json::to_value(status.report()).ok()?;
                let vendor = match config.vendor {
                    inlet_destinations::VendorConfig::Amplitude { .. } => "amplitude",
                    inlet_destinations::VendorConfig::Ga4 { .. } => "ga4",
                };
                let object = report.as_object_mut()?;
                object.insert("name".into(), config.name.clone().into());
                object.insert("vendor".into(), vendor.into());
                object.insert("durable_lsn".into(), self.wal.durable_lsn().into());
                Some(report)
            })
            .collect()
    }
}

/// The operator token (`admin.token`, or read from `admin.token_file`), if one is set.
pub fn operator_token(config: &Config) -> Result<Option<String>, StartupError> {
    match (&config.admin.token, &config.admin.token_file) {
        (Some(token), _) => Ok(Some(token.trim().to_owned())),
        (None, Some(path)) => {
            let token = std::fs::read_to_string(path).map_err(StartupError::file("reading admin.token_file", path))?;
            if token.trim().len() < 16 {
                return Err(StartupError::Setting {
                    setting: "admin.token_file",
                    message: "the token must be at least 16 characters".to_owned(),
                });
            }
            Ok(Some(token.trim().to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// Lets one log line through per second, so repeated per-request errors cannot flood the logs.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last_second: AtomicU64,
}

impl LogLimiter {
    pub fn allow(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_second.swap(now, Ordering::Relaxed) != now
    }
}

impl AppState {
    /// Opens the WAL (recovering it), rebuilds the dedupe index from it, and builds the state.
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, StartupError> {
        config.validate()?;
        // Before the WAL is opened: a broken plan stops the start with nothing touched.
        let plans = SourcePlans::load(&config.sources)?;
        let metrics = Arc::new(Metrics::new());
        let sources = Sources::new(&config.sources);
        metrics.init_labels(sources.names());
        let wal_config = WalConfig {
            dir: config.wal_dir(),
            segment_bytes: config.wal.segment_bytes,
            preallocate: config.wal.preallocate,
            recycled_segments: config.wal.recycled_segments,
            fsync: config.fsync_policy(),
            // A stored event is the message plus what normalisation adds (ids, timestamps, ip).
            max_record_bytes: config.limits.max_event_bytes + 64 * 1024,
            consumers: std::iter::once(inlet_lake_writer::LAKE_CONSUMER.to_owned())
                .chain(config.destinations.iter().map(|d| consumer_name(&d.name)))
                .collect(),
        };
        let (wal, report) = WalHandle::start(wal_config, Some(Arc::new(WalMetrics(Arc::clone(&metrics)))))?;
        tracing::info!(
            dir = %config.wal_dir().display(),
            segments = report.segments,
            oldest_lsn = report.oldest_lsn,
            next_lsn = report.next_lsn,
            truncated_bytes = report.truncated_bytes,
            "write-ahead log open"
        );
        let wal = Arc::new(wal);
        let window = Duration::from_secs(config.dedupe.window_secs);
        let dedupe = Deduplicator::new(window, config.dedupe.max_entries);
        let limits = &config.limits;
        let source_limits = SourceLimits::new(
            &config.sources,
            config.wal.max_disk_bytes,
            limits.source_share,
            limits.failed_auth_per_minute,
            limits.refused_per_minute,
        );
        seed_from_wal(&dedupe, &source_limits, &wal, window, clock.now())?;
        metrics.dedupe_entries.set(dedupe.len() as i64);
        let source_names = config.sources.iter().map(|s| Arc::<str>::from(s.name.as_str()));
        let inflight = InflightBudget::new(
            BudgetLimits {
                bytes: limits.max_inflight_bytes,
                requests: limits.max_inflight_requests,
                requests_per_client: limits.max_inflight_requests_per_client,
                source_share: limits.source_share,
            },
            source_names,
            metrics.inflight_bytes.clone(),
            metrics.inflight_requests.clone(),
        );
        let admin_token = operator_token(&config)?;
        let destinations = config.destinations.iter().map(|d| (d.name.clone(), Arc::default())).collect();
        let lake = crate::lake::lake_store(&config)?;
        let debugger = Debugger::new(config.sources.iter().map(|s| s.name.as_str()));
        Ok(AppState {
            plans,
            debugger,
            suppressions: Arc::new(Suppressions::new()),
            privacy: PrivacyStore::new(lake),
            regulations_unread: AtomicBool::new(false),
            destinations,
            public_url: config.public_url(),
            normaliser: Normaliser::new(Limits {
                max_event_bytes: config.limits.max_event_bytes,
                max_batch_events: config.limits.max_batch_events,
            }),
            inflight,
            source_limits,
            admin_token,
            config,
            sources,
            wal,
            dedupe,
            metrics,
            clock,
            shutting_down: AtomicBool::new(false),
            refusal_log: LogLimiter::default(),
            lake_failed: std::sync::OnceLock::new(),
        })
    }

    /// Why the gateway should not receive traffic now, if it should not: only when it cannot
    /// accept work it would otherwise accept. The reason goes to the admin listener's
    /// `/readyz` and the log; the public probe answers with a status alone.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Some("shutting down".into());
        }
        if let Some(message) = self.wal.poisoned() {
            return Some(format!("write-ahead log failed: {message}"));
        }
        if self.wal.disk_bytes() >= self.config.wal.max_disk_bytes {
            return Some("write-ahead log is over its disk budget".into());
        }
        if self.regulations_unread.load(Ordering::Acquire) {
            return Some("the privacy regulations have not been read from the lake yet".into());
        }
        if let Some(error) = self.lake_failed.get() {
            return Some(format!("lake writer stopped: {error}"));
        }
        if let Some((name, status)) = self.destinations.iter().find(|(_, s)| s.failed.get().is_some()) {
            return Some(format!("destination {name} stopped: {}", status.failed.get().map_or("", String::as_str)));
        }
        // Not the in-flight budgets: clients fill them, and a full one is answered 429 at once;
        // failing readiness for it would let a few squatting clients take every replica out
        // of its Service at the same moment.
        None
    }
}

/// Remembers the message ids of the retained WAL records received within the window, so a
/// client retrying after a crash (its request stored, the answer lost) is not stored twice;
/// and counts each source's retained bytes, which its share of the WAL starts from.
fn seed_from_wal(
    dedupe: &Deduplicator,
    source_limits: &SourceLimits,
    wal: &WalHandle,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<(), inlet_wal::WalError> {
    let started = Instant::now();
    let cutoff = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let reader =
        WalReader::open(&wal.config().dir, wal.oldest_lsn(), wal.durable_lsn(), wal.config().max_record_bytes)?;
    let mut keys = Vec::new();
    let mut unreadable = 0u64;
    for record in reader {
        let record = record?;
        match serde_json::from_slice::<StoredEventKey<'_>>(&record.payload) {
            Ok(key) => {
                source_limits.record_append(&key.source, record.lsn, record.payload.len() as u64);
                if parse_timestamp(&key.event.received_at).is_some_and(|t| t >= cutoff) {
                    keys.push(dedupe.key(&key.source, &key.event.message_id));
                }
            }
            Err(_) => unreadable += 1,
        }
    }
    let seeded = keys.len();
    dedupe.insert_all(keys);
    tracing::info!(
        seeded,
        unreadable,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "dedupe index rebuilt from the write-ahead log"
    );
    Ok(())
}
