//! Regulations in the gateway: the suppression set kept current from the lake, the operator
//! API that makes and lists regulations, and the worker that carries out deletions.
//!
//! A deletion runs in steps, each recorded in the lake (`inlet-privacy`): `lake` (find the
//! anonymous ids linked to the user ids, record them so every gateway suppresses them too,
//! then rewrite the event files that hold any id), `dead-letters` (after `lake`), and one
//! `destination-{name}` per destination (the vendor's deletion API, within its request size,
//! pace and daily quota, retried with the destination's retry policy). The `warehouse` step is `inlet-batch`'s. A step is
//! started only `privacy.settle_secs` after the regulation, once every gateway has read it and
//! ranges encoded before that are in the lake; it is repeated until done, so a crash anywhere
//! only repeats work.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use inlet_destinations::DestinationConfig;
use inlet_destinations::dead_letters::erase_dead_letters;
use inlet_destinations::deletions::{DeletionClient, DeletionOutcome, VendorDeletion};
use inlet_lake::Codec;
use inlet_privacy::{
    BloomIndex, PrivacyError, PrivacyStore, Regulation, RegulationKind, StepState, StepStatus, Targets, erase_events,
    stitched_anonymous_ids,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::routes::admin_refusal;
use crate::state::AppState;

/// Who the vendors are told asked for a deletion.
const REQUESTER: &str = "inlet";
/// Google's quotas reset at midnight Pacific time.
const QUOTA_TIME_ZONE: chrono_tz::Tz = chrono_tz::America::Los_Angeles;

/// Everything a deletion needs; built from the gateway's configuration.
#[derive(Debug)]
pub struct DeletionWorker {
    pub privacy: PrivacyStore,
    pub codec: Codec,
    /// Each destination and what it can delete, decided once (its key file read at start).
    pub destinations: Vec<(DestinationConfig, VendorDeletion)>,
    pub settle: Duration,
    pub http: DeletionClient,
    /// Regulations read so far, by key, and the deletions whose every step is settled (done or
    /// failed): a pass reads only what is new or unfinished.
    seen: Mutex<(BTreeMap<String, Regulation>, HashSet<String>)>,
}

impl DeletionWorker {
    /// The worker of a gateway with this configuration (no WAL: `inlet privacy run` uses it
    /// beside a running gateway).
    pub fn new(config: &Config) -> Result<DeletionWorker, crate::StartupError> {
        Ok(DeletionWorker {
            privacy: PrivacyStore::new(crate::lake::lake_store(config)?),
            codec: crate::lake::lake_codec(config)?,
            destinations: config.destinations.iter().map(|d| (d.clone(), VendorDeletion::of(d))).collect(),
            settle: Duration::from_secs(config.privacy.settle_secs),
            http: DeletionClient::default(),
            seen: Mutex::default(),
        })
    }

    /// Runs every step that is due, of every deletion old enough. Returns the statuses it
    /// recorded. `after_rewrite` sees each lake file replaced (crash tests stop there).
    pub async fn run(&self, after_rewrite: &(dyn Fn(&str) + Sync)) -> Result<Vec<StepStatus>, PrivacyError> {
        let mut recorded = Vec::new();
        let now = Utc::now();
        for regulation in self.unfinished_deletions().await? {
            let settled = regulation.created_at + chrono::Duration::from_std(self.settle).unwrap_or_default();
            if settled > now {
                continue;
            }
            // Kept current as steps are recorded, so settling is decided without reading again.
            let mut statuses = self.privacy.statuses(&regulation.id).await?;
            let lake = match statuses.get("lake") {
                Some(done) if done.state == StepState::Done => done.clone(),
                previous => {
                    let done = self.erase_lake(&regulation, previous, after_rewrite).await?;
                    statuses.insert(done.step.clone(), done.clone());
                    recorded.push(done.clone());
                    done
                }
            };
            // Every id whose stored copies go: the regulation's and those the lake links to them.
            let targets = regulation.targets.with_anonymous_ids(&lake.stitched_anonymous_ids);
            if statuses.get("dead-letters").is_none_or(|s| s.state != StepState::Done) {
                let erased = erase_dead_letters(self.privacy.lake(), &targets).await?;
                let mut status = StepStatus::new(&regulation.id, "dead-letters", StepState::Done);
                status.counts = erased.counts();
                self.privacy.record(&regulation, &status).await?;
                statuses.insert(status.step.clone(), status.clone());
                recorded.push(status);
            }
            for (destination, deletion) in &self.destinations {
                let step = format!("destination-{}", destination.name);
                let previous = statuses.get(&step);
                if previous.is_some_and(|s| s.state != StepState::Pending) {
                    continue;
                }
                if previous.and_then(|s| s.next_attempt_at).is_some_and(|due| due > now) {
                    continue;
                }
                if let Some(status) =
                    self.delete_at_vendor(&regulation, &targets, destination, deletion, &step, previous).await?
                {
                    statuses.insert(step, status.clone());
                    recorded.push(status);
                }
            }
            let steps = ["lake".to_owned(), "dead-letters".to_owned()]
                .into_iter()
                .chain(self.destinations.iter().map(|(d, _)| format!("destination-{}", d.name)));
            if steps.into_iter().all(|step| statuses.get(&step).is_some_and(|s| s.state != StepState::Pending)) {
                self.seen.lock().expect("never poisoned").1.insert(regulation.id.clone());
            }
        }
        Ok(recorded)
    }

    /// The deletions not yet settled, oldest first; regulation files are read once.
    async fn unfinished_deletions(&self) -> Result<Vec<Regulation>, PrivacyError> {
        let keys = self.privacy.regulation_keys().await?;
        let unread: Vec<String> = {
            let seen = self.seen.lock().expect("never poisoned");
            keys.into_iter().filter(|key| !seen.0.contains_key(key)).collect()
        };
        let mut read = Vec::new();
        for key in unread {
            read.extend(self.privacy.regulation_at(&key).await?.map(|regulation| (key, regulation)));
        }
        let mut seen = self.seen.lock().expect("never poisoned");
        seen.0.extend(read);
        let (regulations, finished) = &*seen;
        Ok(regulations
            .values()
            .filter(|r| r.kind == RegulationKind::Delete && !finished.contains(&r.id))
            .cloned()
            .collect())
    }

    async fn erase_lake(
        &self,
        regulation: &Regulation,
        previous: Option<&StepStatus>,
        after_rewrite: &(dyn Fn(&str) + Sync),
    ) -> Result<StepStatus, PrivacyError> {
        let lake = self.privacy.lake();
        let index = BloomIndex::load(lake).await?;
        let mut status = match previous {
            Some(started) => started.clone(),
            None => {
                // Recorded before any file changes, so every gateway suppresses these ids too.
                let (stitched, _) = stitched_anonymous_ids(lake, &index, &regulation.targets.user_ids).await?;
                let mut started = StepStatus::new(&regulation.id, "lake", StepState::Pending);
                started.stitched_anonymous_ids = stitched;
                self.privacy.record(regulation, &started).await?;
                started
            }
        };
        let targets = regulation.targets.with_anonymous_ids(&status.stitched_anonymous_ids);
        let erased = erase_events(lake, &index, &targets, self.codec, after_rewrite).await?;
        tracing::info!(
            regulation = %regulation.id,
            files = erased.files,
            files_read = erased.files_read,
            files_rewritten = erased.files_rewritten + erased.files_deleted,
            rows_deleted = erased.rows_deleted,
            "lake erasure done"
        );
        status.state = StepState::Done;
        status.counts = erased.counts();
        status.counts.insert("stitched_anonymous_ids".into(), status.stitched_anonymous_ids.len() as u64);
        status.updated_at = Utc::now();
        self.privacy.record(regulation, &status).await?;
        Ok(status)
    }

    /// Sends the regulation's ids to one destination's deletion API, request by request,
    /// resuming after the requests already answered, within the vendor's pace and daily quota.
    /// Returns the status recorded, if any.
    async fn delete_at_vendor(
        &self,
        regulation: &Regulation,
        targets: &Targets,
        destination: &DestinationConfig,
        deletion: &VendorDeletion,
        step: &str,
        previous: Option<&StepStatus>,
    ) -> Result<Option<StepStatus>, PrivacyError> {
        let mut status = previous.cloned().unwrap_or_else(|| StepStatus::new(&regulation.id, step, StepState::Pending));
        if let VendorDeletion::Unavailable(why) = deletion {
            if status.detail.as_deref() == Some(why.as_str()) {
                return Ok(None);
            }
            // Left pending: configuring the destination's deletion later resumes it.
            status.detail = Some(why.clone());
            status.updated_at = Utc::now();
            self.privacy.record(regulation, &status).await?;
            return Ok(Some(status));
        }
        let requests = deletion.requests(targets);
        let policy = destination.delivery.retry_policy();
        let mut done = status.counts.get("requests").copied().unwrap_or(0) as usize;
        let mut last_sent: Option<tokio::time::Instant> = None;
        // Requests counted on the vendor's current quota day: read once a day, then counted here.
        let mut quota: Option<(chrono::NaiveDate, u32)> = None;
        while done < requests.len() {
            let now = Utc::now();
            let quota_day = now.with_timezone(&QUOTA_TIME_ZONE).date_naive();
            if let Some(per_day) = deletion.requests_per_day() {
                let used = match quota {
                    Some((day, used)) if day == quota_day => used,
                    _ => self.privacy.requests_on(&destination.name, quota_day).await?,
                };
                if used >= per_day {
                    // The rest waits for the vendor's next quota day; the status keeps the place.
                    let next_day = quota_day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).expect("a next day");
                    let resumes = next_day.and_local_timezone(QUOTA_TIME_ZONE).earliest().map(|t| t.to_utc());
                    status.next_attempt_at = resumes;
                    status.detail =
                        Some(format!("the daily quota of {per_day} requests is used; resuming the next day"));
                    status.updated_at = now;
                    self.privacy.record(regulation, &status).await?;
                    return Ok(Some(status));
                }
                self.privacy.record_requests_on(&destination.name, quota_day, used + 1).await?;
                quota = Some((quota_day, used + 1));
            }
            if let (Some(pace), Some(last)) = (deletion.pace(), last_sent) {
                tokio::time::sleep_until(last + pace).await;
            }
            last_sent = Some(tokio::time::Instant::now());
            match self.http.send(deletion, &requests[done], REQUESTER).await {
                DeletionOutcome::Accepted => {
                    done += 1;
                    let ids = status.counts.get("ids_sent").copied().unwrap_or(0) + requests[done - 1].len() as u64;
                    status.counts.insert("ids_sent".into(), ids);
                    status.counts.insert("requests".into(), done as u64);
                    status.detail = None;
                    status.next_attempt_at = None;
                    status.first_attempt_at = None;
                    status.attempts = 0;
                }
                DeletionOutcome::Retry { detail, after } => {
                    status.attempts += 1;
                    let started = *status.first_attempt_at.get_or_insert(now);
                    if policy.expired(started, now) {
                        status.state = StepState::Failed;
                        status.detail = Some(format!("gave up after the retry deadline: {detail}"));
                    } else {
                        let delay = policy.backoff(status.attempts, after);
                        status.next_attempt_at = Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
                        status.detail = Some(detail);
                    }
                    status.updated_at = now;
                    self.privacy.record(regulation, &status).await?;
                    return Ok(Some(status));
                }
                DeletionOutcome::Refused { detail } => {
                    status.state = StepState::Failed;
                    status.detail = Some(detail);
                    status.updated_at = now;
                    self.privacy.record(regulation, &status).await?;
                    return Ok(Some(status));
                }
            }
            // Progress survives a crash: the next run resumes after the requests answered.
            status.updated_at = Utc::now();
            if done < requests.len() {
                self.privacy.record(regulation, &status).await?;
            }
        }
        status.state = StepState::Done;
        status.counts.insert("requests".into(), done as u64);
        status.updated_at = Utc::now();
        self.privacy.record(regulation, &status).await?;
        Ok(Some(status))
    }
}

/// The running poller (and worker).
#[derive(Debug)]
pub struct PrivacyTask {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PrivacyTask {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Reads the regulations once (so the lake writer and destinations start with them), then keeps
/// reading them every `privacy.poll_secs` and, with `privacy.worker`, carries out deletions.
pub async fn start(state: &Arc<AppState>) -> Result<PrivacyTask, crate::StartupError> {
    state.regulations_unread.store(true, Ordering::Release);
    refresh(state).await;
    let worker = state.config.privacy.worker.then(|| DeletionWorker::new(&state.config)).transpose()?;
    let (shutdown, mut stopped) = watch::channel(false);
    let state = Arc::clone(state);
    let poll = Duration::from_secs(state.config.privacy.poll_secs);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            refresh(&state).await;
            if let Some(worker) = &worker {
                // A deletion in progress is finished before a stop is noticed; its steps are
                // recorded as they complete, so a harder stop only repeats work.
                match worker.run(&|_| {}).await {
                    Ok(recorded) if !recorded.is_empty() => refresh(&state).await,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "privacy worker: a deletion step failed; retrying next round"),
                }
            }
        }
    });
    Ok(PrivacyTask { shutdown, task })
}

async fn refresh(state: &AppState) {
    match state.suppressions.refresh(&state.privacy).await {
        Ok(size) => {
            state.metrics.privacy_suppressed_ids.set(size as i64);
            state.regulations_unread.store(false, Ordering::Release);
        }
        Err(error) => tracing::warn!(%error, "reading the regulations failed; the last ones read still apply"),
    }
}

/// `POST /admin/privacy/regulations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRegulation {
    pub kind: RegulationKind,
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default)]
    pub anonymous_ids: Vec<String>,
    #[serde(default)]
    pub requested_by: Option<String>,
}

pub async fn create_regulation(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let request: NewRegulation = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return admin_refusal(StatusCode::BAD_REQUEST, "invalid_regulation", &error.to_string()),
    };
    let targets = Targets {
        user_ids: request.user_ids.into_iter().collect(),
        anonymous_ids: request.anonymous_ids.into_iter().collect(),
    };
    match state.privacy.submit(request.kind, targets, request.requested_by).await {
        Ok(regulation) => {
            state.suppressions.apply(&regulation);
            tracing::info!(regulation = %regulation.id, kind = regulation.kind.as_str(), ids = regulation.targets.len(), "regulation stored");
            (StatusCode::CREATED, Json(json!({"regulation": regulation}))).into_response()
        }
        Err(error) => privacy_refusal(&error),
    }
}

pub async fn list_regulations(State(state): State<Arc<AppState>>) -> Response {
    match regulations_with_status(&state.privacy, None).await {
        Ok(listed) => Json(json!({"regulations": listed})).into_response(),
        Err(error) => privacy_refusal(&error),
    }
}

pub async fn get_regulation(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match regulations_with_status(&state.privacy, Some(&id)).await {
        Ok(mut listed) if !listed.is_empty() => Json(listed.remove(0)).into_response(),
        Ok(_) => admin_refusal(StatusCode::NOT_FOUND, "unknown_regulation", &format!("no regulation {id:?}")),
        Err(error) => privacy_refusal(&error),
    }
}

/// Regulations (one, or all) with their steps' statuses, as `inlet privacy status` prints them.
pub async fn regulations_with_status(
    privacy: &PrivacyStore,
    only: Option<&str>,
) -> Result<Vec<serde_json::Value>, PrivacyError> {
    let regulations = match only {
        Some(id) => privacy.regulation(id).await?.into_iter().collect(),
        None => privacy.regulations().await?,
    };
    let mut listed = Vec::with_capacity(regulations.len());
    for regulation in regulations {
        let steps: BTreeMap<String, StepStatus> = privacy.statuses(&regulation.id).await?;
        let mut entry = serde_json::to_value(&regulation).expect("a regulation serialises");
        entry["steps"] = serde_json::to_value(steps).expect("statuses serialise");
        listed.push(entry);
    }
    Ok(listed)
}

fn privacy_refusal(error: &PrivacyError) -> Response {
    match error {
        PrivacyError::Invalid(message) => admin_refusal(StatusCode::BAD_REQUEST, "invalid_regulation", message),
        other => {
            tracing::error!(error = %other, "privacy API: the lake failed");
            admin_refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "lake_unavailable",
                "the lake could not be read or written; retry",
            )
        }
    }
}
