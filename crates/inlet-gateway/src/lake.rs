//! Runs the lake writer beside the HTTP server, with the gateway's configuration.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use inlet_lake::{LakeLocation, LakeStore, S3Settings};
use inlet_lake_writer::{LakeMetrics, LakeSettings, LakeWriter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::StartupError;
use crate::state::AppState;

/// The running lake writer.
#[derive(Debug)]
pub struct LakeTask {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), inlet_lake_writer::LakeError>>,
    wal: Arc<inlet_wal::WalHandle>,
    flush_budget: Duration,
}

/// The lake writer's settings from the gateway configuration.
pub fn lake_settings(config: &Config) -> Result<LakeSettings, StartupError> {
    let lake = &config.lake;
    let min_date = NaiveDate::parse_from_str(&lake.min_event_date, "%Y-%m-%d")
        .map_err(|e| StartupError::Setting { setting: "lake.min_event_date", message: e.to_string() })?;
    let (location, s3) = lake_location(config)?;
    Ok(LakeSettings {
        location,
        s3,
        instance_id: match &lake.instance_id {
            Some(id) => id.clone(),
            None => persisted_instance_id(config)?,
        },
        state_dir: config.data_dir.join("lake-writer"),
        max_age: Duration::from_secs(lake.max_age_secs),
        hour_grace: Duration::from_secs(lake.hour_grace_secs),
        max_range_records: lake.max_range_records,
        max_range_bytes: lake.max_range_bytes,
        min_event_time: min_date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc(),
        codec: lake_codec(config)?,
        suppressions: Arc::default(),
    })
}

/// The lake, opened with the gateway's settings (for regulations and erasures; the writer opens
/// its own).
pub fn lake_store(config: &Config) -> Result<LakeStore, StartupError> {
    let (location, s3) = lake_location(config)?;
    Ok(LakeStore::open(location, &s3)?)
}

/// The codec of new lake files (and of files rewritten by an erasure).
pub fn lake_codec(config: &Config) -> Result<inlet_lake::Codec, StartupError> {
    let lake = &config.lake;
    inlet_lake::Codec::parse(&lake.compression).ok_or_else(|| StartupError::Setting {
        setting: "lake.compression",
        message: format!("unknown codec {:?}", lake.compression),
    })
}

fn lake_location(config: &Config) -> Result<(LakeLocation, S3Settings), StartupError> {
    let lake = &config.lake;
    let s3 = S3Settings {
        endpoint: lake.s3_endpoint.clone(),
        region: lake.s3_region.clone(),
        force_path_style: lake.s3_force_path_style,
        multipart_threshold: lake.s3_multipart_threshold_bytes,
    };
    Ok((LakeLocation::parse(&config.lake_url())?, s3))
}

/// Starts the lake writer: it flushes WAL ranges to the lake until [`LakeTask::stop`].
pub async fn start(state: &Arc<AppState>) -> Result<LakeTask, StartupError> {
    let mut settings = lake_settings(&state.config)?;
    settings.suppressions = Arc::clone(&state.suppressions);
    tracing::info!(lake = %settings.location.url_of(""), instance = %settings.instance_id, "lake writer starting");
    let metrics = LakeMetrics::register(state.metrics.registry());
    let writer = LakeWriter::new(settings, Arc::clone(&state.wal), metrics)?;
    let (shutdown, receiver) = watch::channel(false);
    let final_flush = Duration::from_secs(state.config.lake.shutdown_flush_secs);
    let state = Arc::clone(state);
    let wal = Arc::clone(&state.wal);
    let task = tokio::spawn(async move {
        let result = writer.run(receiver, final_flush).await;
        if let Err(error) = &result {
            // Events stay in the WAL; readiness fails so the instance gets restarted.
            tracing::error!(%error, "lake writer stopped; events stay in the WAL until the gateway restarts");
            let _ = state.lake_failed.set(error.to_string());
        }
        result
    });
    Ok(LakeTask { shutdown, task, wal, flush_budget: final_flush })
}

impl LakeTask {
    /// Flushes what is durable one last time (bounded by `lake.shutdown_flush_secs`) and stops.
    /// Logs how many acknowledged events, if any, stay in the WAL only, and why: a node whose
    /// volume is deleted after this stop loses them.
    pub async fn stop(self) -> Result<(), StartupError> {
        let started = std::time::Instant::now();
        let _ = self.shutdown.send(true);
        let result = self.task.await.map_err(StartupError::from).and_then(|r| r.map_err(StartupError::from));
        let cursor = self.wal.cursor(inlet_lake_writer::LAKE_CONSUMER).unwrap_or_else(|| self.wal.oldest_lsn());
        let left = self.wal.durable_lsn().saturating_sub(cursor);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match (&result, left) {
            (Ok(()), 0) => tracing::info!(elapsed_ms, "the lake holds every acknowledged event"),
            (Ok(()), _) => tracing::warn!(
                events = left,
                elapsed_ms,
                budget_secs = self.flush_budget.as_secs(),
                "acknowledged events stay in the WAL only: the final lake flush ran out of lake.shutdown_flush_secs \
                 (a backlog, or the lake's store failing); the next start on this data directory flushes them"
            ),
            (Err(error), _) => tracing::error!(
                events = left,
                %error,
                "acknowledged events stay in the WAL only: the lake writer failed; the next start flushes them"
            ),
        }
        result
    }
}

fn persisted_instance_id(config: &Config) -> Result<String, StartupError> {
    let path = config.data_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartupError::file("reading", &path)(e)),
    }
    let id = format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    std::fs::create_dir_all(&config.data_dir).map_err(StartupError::file("creating", &config.data_dir))?;
    // Durable before use: a crash must not name a second instance's files after this one's.
    inlet_durable::durable_replace(&path, id.as_bytes()).map_err(StartupError::file("writing", &path))?;
    Ok(id)
}
