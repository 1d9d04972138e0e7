//! Regulations, their steps' statuses and the audit log, as stored in the lake (see the crate
//! documentation for the layout).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use inlet_lake::LakeStore;
use inlet_lake::store::StoreError;
use serde::{Deserialize, Serialize};

pub const PRIVACY_PREFIX: &str = "_inlet/privacy";
const REGULATIONS_PREFIX: &str = "_inlet/privacy/regulations/";
const STATUS_PREFIX: &str = "_inlet/privacy/status/";
const AUDIT_PREFIX: &str = "_inlet/privacy/audit/";
const QUOTA_PREFIX: &str = "_inlet/privacy/quota/";

/// Ids per regulation, as Segment's regulations API allows: a larger erasure is several
/// regulations, each one bounded in what one worker pass must do.
pub const MAX_TARGETS: usize = 5_000;
/// Longest id accepted in a regulation, in bytes (the gateway refuses longer ids in events).
const MAX_ID_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key} is not readable: {message}")]
    Corrupt { key: String, message: String },
    #[error("{key}: {source}")]
    Parquet { key: String, source: parquet::errors::ParquetError },
    #[error("a task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegulationKind {
    /// Accept the ids' events with `200`, store and forward none.
    Suppress,
    /// Suppress, and erase every stored copy of the ids' events.
    Delete,
    /// Lift the ids' suppression (erased data stays erased).
    Unsuppress,
}

impl RegulationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RegulationKind::Suppress => "suppress",
            RegulationKind::Delete => "delete",
            RegulationKind::Unsuppress => "unsuppress",
        }
    }
}

/// The ids a regulation is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub user_ids: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub anonymous_ids: BTreeSet<String>,
}

impl Targets {
    pub fn len(&self) -> usize {
        self.user_ids.len() + self.anonymous_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an event with these ids is one of the targets'.
    pub fn matches(&self, user_id: Option<&str>, anonymous_id: Option<&str>) -> bool {
        user_id.is_some_and(|id| self.user_ids.contains(id))
            || anonymous_id.is_some_and(|id| self.anonymous_ids.contains(id))
    }

    /// These targets and `anonymous_ids` besides.
    pub fn with_anonymous_ids(&self, anonymous_ids: &BTreeSet<String>) -> Targets {
        let mut targets = self.clone();
        targets.anonymous_ids.extend(anonymous_ids.iter().cloned());
        targets
    }

    fn validate(&self) -> Result<(), PrivacyError> {
        if self.is_empty() {
            return Err(PrivacyError::Invalid("a regulation needs at least one user id or anonymous id".into()));
        }
        if self.len() > MAX_TARGETS {
            return Err(PrivacyError::Invalid(format!(
                "{} ids in one regulation; at most {MAX_TARGETS} (split them over several)",
                self.len()
            )));
        }
        let ids = self.user_ids.iter().chain(&self.anonymous_ids);
        if let Some(bad) = ids.into_iter().find(|id| id.trim().is_empty() || id.len() > MAX_ID_BYTES) {
            return Err(PrivacyError::Invalid(format!(
                "id {:?} is empty or longer than {MAX_ID_BYTES} bytes",
                bad.chars().take(40).collect::<String>()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regulation {
    pub id: String,
    pub kind: RegulationKind,
    #[serde(flatten)]
    pub targets: Targets,
    pub created_at: DateTime<Utc>,
    /// Who asked, for the audit trail (a ticket number, an operator): free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Started, or waiting for a retry.
    Pending,
    Done,
    /// Given up on (a vendor refused the request for good); the detail says why.
    Failed,
}

/// Where one step of a deletion stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStatus {
    pub regulation: String,
    pub step: String,
    pub state: StepState,
    /// What the step did: files read and rewritten, rows and letters deleted, ids sent.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// `lake` step: the anonymous ids the lake links to the regulation's user ids.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub stitched_anonymous_ids: BTreeSet<String>,
    /// Vendor steps: failed tries of the current request, the first of them, and when the next
    /// try is due.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl StepStatus {
    pub fn new(regulation: &str, step: &str, state: StepState) -> StepStatus {
        StepStatus {
            regulation: regulation.to_owned(),
            step: step.to_owned(),
            state,
            counts: BTreeMap::new(),
            stitched_anonymous_ids: BTreeSet::new(),
            attempts: 0,
            first_attempt_at: None,
            next_attempt_at: None,
            detail: None,
            updated_at: Utc::now(),
        }
    }
}

/// One completed step, as the audit log keeps it: the regulation's ids, never event data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub regulation: String,
    pub kind: RegulationKind,
    #[serde(flatten)]
    pub targets: Targets,
    pub step: String,
    pub state: StepState,
    pub counts: BTreeMap<String, u64>,
    pub completed_at: DateTime<Utc>,
}

/// The regulations of one lake.
#[derive(Debug, Clone)]
pub struct PrivacyStore {
    store: LakeStore,
}

impl PrivacyStore {
    pub fn new(store: LakeStore) -> PrivacyStore {
        PrivacyStore { store }
    }

    pub fn lake(&self) -> &LakeStore {
        &self.store
    }

    /// Stores a new regulation; it applies from the moment this returns.
    pub async fn submit(
        &self,
        kind: RegulationKind,
        targets: Targets,
        requested_by: Option<String>,
    ) -> Result<Regulation, PrivacyError> {
        targets.validate()?;
        let created_at = Utc::now();
        let random = uuid::Uuid::new_v4().simple().to_string();
        let id = format!("{}-{}", created_at.format("%Y%m%dT%H%M%S%6fZ"), &random[..8]);
        let regulation = Regulation { id, kind, targets, created_at, requested_by };
        self.put_json(&regulation_key(&regulation.id), &regulation).await?;
        Ok(regulation)
    }

    /// Every regulation, oldest first.
    pub async fn regulations(&self) -> Result<Vec<Regulation>, PrivacyError> {
        let keys = self.store.list(REGULATIONS_PREFIX).await?;
        let mut regulations = Vec::with_capacity(keys.len());
        for key in keys.iter().filter(|key| key.ends_with(".json")) {
            regulations.extend(self.get_json::<Regulation>(key).await?);
        }
        Ok(regulations)
    }

    /// The regulation stored at `key` (one of [`PrivacyStore::regulation_keys`]).
    pub async fn regulation_at(&self, key: &str) -> Result<Option<Regulation>, PrivacyError> {
        self.get_json(key).await
    }

    /// The keys of every regulation, oldest first: what a poller compares with what it read.
    pub async fn regulation_keys(&self) -> Result<Vec<String>, PrivacyError> {
        Ok(self.store.list(REGULATIONS_PREFIX).await?.into_iter().filter(|key| key.ends_with(".json")).collect())
    }

    pub async fn regulation(&self, id: &str) -> Result<Option<Regulation>, PrivacyError> {
        if !is_regulation_id(id) {
            return Ok(None);
        }
        self.get_json(&regulation_key(id)).await
    }

    /// Every step status of a regulation, by step name.
    pub async fn statuses(&self, id: &str) -> Result<BTreeMap<String, StepStatus>, PrivacyError> {
        let mut statuses = BTreeMap::new();
        for key in self.store.list(&format!("{STATUS_PREFIX}{id}/")).await? {
            if let Some(status) = self.get_json::<StepStatus>(&key).await? {
                statuses.insert(status.step.clone(), status);
            }
        }
        Ok(statuses)
    }

    pub async fn status(&self, id: &str, step: &str) -> Result<Option<StepStatus>, PrivacyError> {
        self.get_json(&status_key(id, step)).await
    }

    /// Replaces a step's status; a step reaching `done` or `failed` is also written to the audit
    /// log (first, so a status never says done without its audit entry).
    pub async fn record(&self, regulation: &Regulation, status: &StepStatus) -> Result<(), PrivacyError> {
        if status.state != StepState::Pending {
            let entry = AuditEntry {
                regulation: regulation.id.clone(),
                kind: regulation.kind,
                targets: regulation.targets.clone(),
                step: status.step.clone(),
                state: status.state,
                counts: status.counts.clone(),
                completed_at: status.updated_at,
            };
            let key = format!(
                "{AUDIT_PREFIX}dt={}/{}-{}-{}.json",
                status.updated_at.format("%Y-%m-%d"),
                status.updated_at.timestamp_micros(),
                regulation.id,
                status.step
            );
            self.put_json(&key, &entry).await?;
        }
        self.put_json(&status_key(&regulation.id, &status.step), status).await
    }

    /// Deletion requests sent to `destination` on `day` (the vendor's quota day).
    pub async fn requests_on(&self, destination: &str, day: chrono::NaiveDate) -> Result<u32, PrivacyError> {
        Ok(self.get_json::<u32>(&format!("{QUOTA_PREFIX}{destination}/{day}.json")).await?.unwrap_or(0))
    }

    pub async fn record_requests_on(
        &self,
        destination: &str,
        day: chrono::NaiveDate,
        requests: u32,
    ) -> Result<(), PrivacyError> {
        self.put_json(&format!("{QUOTA_PREFIX}{destination}/{day}.json"), &requests).await
    }

    /// The audit log's entries, oldest first.
    pub async fn audit(&self) -> Result<Vec<AuditEntry>, PrivacyError> {
        let mut entries = Vec::new();
        for key in self.store.list(AUDIT_PREFIX).await? {
            entries.extend(self.get_json::<AuditEntry>(&key).await?);
        }
        Ok(entries)
    }

    async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), PrivacyError> {
        let bytes = serde_json::to_vec_pretty(value).expect("serialising to a Vec cannot fail");
        Ok(self.store.put(key, Bytes::from(bytes)).await?)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, PrivacyError> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| PrivacyError::Corrupt { key: key.to_owned(), message: e.to_string() }),
        }
    }
}

fn regulation_key(id: &str) -> String {
    format!("{REGULATIONS_PREFIX}{id}.json")
}

fn status_key(id: &str, step: &str) -> String {
    format!("{STATUS_PREFIX}{id}/{step}.json")
}

/// Ids are made here; anything else (a path from a URL) is not looked up.
fn is_regulation_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_lake::{LakeLocation, S3Settings};

    fn store(dir: &std::path::Path) -> PrivacyStore {
        let lake = LakeStore::open(LakeLocation::Local(dir.to_path_buf()), &S3Settings::default()).expect("lake");
        PrivacyStore::new(lake)
    }

    fn users(ids: &[&str]) -> Targets {
        Targets { user_ids: ids.iter().map(|id| id.to_string()).collect(), anonymous_ids: BTreeSet::new() }
    }

    #[tokio::test]
    async fn regulations_list_in_creation_order_and_steps_reach_the_audit_log() {
        let dir = tempfile::tempdir().expect("dir");
        let privacy = store(dir.path());
        let first = privacy.submit(RegulationKind::Suppress, users(&["u1"]), None).await.expect("submit");
        let second = privacy.submit(RegulationKind::Delete, users(&["u2"]), Some("ticket 7".into())).await.expect("s");
        let listed = privacy.regulations().await.expect("list");
        assert_eq!(listed, vec![first.clone(), second.clone()]);
        assert_eq!(privacy.regulation(&second.id).await.expect("get"), Some(second.clone()));
        assert_eq!(privacy.regulation("../etc").await.expect("get"), None);

        let mut status = StepStatus::new(&second.id, "lake", StepState::Pending);
        privacy.record(&second, &status).await.expect("pending");
        assert!(privacy.audit().await.expect("audit").is_empty(), "pending steps are not audited");
        status.state = StepState::Done;
        status.counts.insert("rows_deleted".into(), 3);
        privacy.record(&second, &status).await.expect("done");
        let audit = privacy.audit().await.expect("audit");
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].counts["rows_deleted"], 3);
        assert_eq!(audit[0].targets, users(&["u2"]));
        assert_eq!(privacy.statuses(&second.id).await.expect("statuses")["lake"].state, StepState::Done);
    }

    #[tokio::test]
    async fn empty_oversized_and_blank_targets_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let privacy = store(dir.path());
        for targets in [
            Targets::default(),
            users(&[" "]),
            Targets { user_ids: (0..=MAX_TARGETS).map(|i| i.to_string()).collect(), ..Targets::default() },
        ] {
            let refused = privacy.submit(RegulationKind::Delete, targets, None).await;
            assert!(matches!(refused, Err(PrivacyError::Invalid(_))), "{refused:?}");
        }
        assert!(privacy.regulations().await.expect("list").is_empty());
    }
}
