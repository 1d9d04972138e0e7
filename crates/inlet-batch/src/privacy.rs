//! Deletions in the warehouse and the metrics: the `warehouse` step of a `delete` regulation
//! (`inlet-privacy`), taken by the run that updates the state once the lake step is done.
//!
//! That run deletes the ids' rows from the user-keyed tables (`users`, `identity_map`,
//! `daily_user_activity`), then rebuilds the state from the erased lake (as `--full` does:
//! merged state only adds, so the ids' traces would otherwise stay), which marks every
//! aggregate's dates for recomputation by the steps that follow. The step is recorded done
//! when that run has committed; a run that fails repeats it (the deletes find nothing left).

use std::collections::BTreeSet;

use inlet_lake::LakeStore;
use inlet_privacy::{PrivacyError, PrivacyStore, Regulation, RegulationKind, StepState, StepStatus};

pub const WAREHOUSE_STEP: &str = "warehouse";

/// Deletions whose lake step is done and whose warehouse step is not.
#[derive(Debug, Default)]
pub struct PendingErasures {
    pub regulations: Vec<Regulation>,
    /// Every id they erase: user ids, anonymous ids and the anonymous ids stitched to them.
    pub ids: BTreeSet<String>,
}

impl PendingErasures {
    pub fn is_empty(&self) -> bool {
        self.regulations.is_empty()
    }
}

pub async fn pending_erasures(store: &LakeStore) -> Result<PendingErasures, PrivacyError> {
    let privacy = PrivacyStore::new(store.clone());
    let mut pending = PendingErasures::default();
    for regulation in privacy.regulations().await?.into_iter().filter(|r| r.kind == RegulationKind::Delete) {
        let steps = privacy.statuses(&regulation.id).await?;
        let lake_done = steps.get("lake").filter(|s| s.state == StepState::Done);
        let warehouse_done = steps.get(WAREHOUSE_STEP).is_some_and(|s| s.state == StepState::Done);
        let Some(lake) = lake_done.filter(|_| !warehouse_done) else { continue };
        let targets = regulation.targets.with_anonymous_ids(&lake.stitched_anonymous_ids);
        pending.ids.extend(targets.user_ids.into_iter().chain(targets.anonymous_ids));
        pending.regulations.push(regulation);
    }
    Ok(pending)
}

/// Records the warehouse step of each regulation done, with the rows deleted (shared by the
/// regulations applied together).
pub async fn record_erased(store: &LakeStore, pending: &PendingErasures, rows: u64) -> Result<(), PrivacyError> {
    let privacy = PrivacyStore::new(store.clone());
    for regulation in &pending.regulations {
        let mut status = StepStatus::new(&regulation.id, WAREHOUSE_STEP, StepState::Done);
        status.counts.insert("rows_deleted".into(), rows);
        status.counts.insert("regulations_applied_together".into(), pending.regulations.len() as u64);
        privacy.record(regulation, &status).await?;
    }
    Ok(())
}
