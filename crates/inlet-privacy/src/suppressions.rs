//! The ids whose events are not stored or forwarded: every suppressed or deleted id (and the
//! anonymous ids stitched to a deleted user id), less those unsuppressed since. One
//! [`Suppressions`] is shared by a gateway's request path, lake writer and destinations; a
//! poller replaces its set from the lake's regulations ([`Suppressions::refresh`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::regulation::{PrivacyError, PrivacyStore, Regulation, RegulationKind};

/// A set of user ids and anonymous ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdSet {
    pub user_ids: HashSet<String>,
    pub anonymous_ids: HashSet<String>,
}

impl IdSet {
    pub fn is_empty(&self) -> bool {
        self.user_ids.is_empty() && self.anonymous_ids.is_empty()
    }

    pub fn len(&self) -> usize {
        self.user_ids.len() + self.anonymous_ids.len()
    }

    pub fn contains(&self, user_id: Option<&str>, anonymous_id: Option<&str>) -> bool {
        user_id.is_some_and(|id| self.user_ids.contains(id))
            || anonymous_id.is_some_and(|id| self.anonymous_ids.contains(id))
    }

    /// The set the regulations leave, applied in order, with each deletion's stitched ids.
    pub fn from_regulations<'r>(
        regulations: impl IntoIterator<Item = (&'r Regulation, Option<&'r [String]>)>,
    ) -> IdSet {
        let mut set = IdSet::default();
        for (regulation, stitched) in regulations {
            set.apply(regulation, stitched.unwrap_or_default());
        }
        set
    }

    fn apply(&mut self, regulation: &Regulation, stitched: &[String]) {
        let targets = &regulation.targets;
        match regulation.kind {
            RegulationKind::Suppress | RegulationKind::Delete => {
                self.user_ids.extend(targets.user_ids.iter().cloned());
                self.anonymous_ids.extend(targets.anonymous_ids.iter().chain(stitched).cloned());
            }
            RegulationKind::Unsuppress => {
                self.user_ids.retain(|id| !targets.user_ids.contains(id));
                self.anonymous_ids.retain(|id| !targets.anonymous_ids.contains(id));
            }
        }
    }
}

/// The shared, replaceable set. Checking it costs one uncontended read lock, and nothing more
/// while it is empty.
#[derive(Debug)]
pub struct Suppressions {
    current: RwLock<Arc<IdSet>>,
    empty: AtomicBool,
    /// What the last refresh read: regulations by key, stitched ids by regulation.
    read: tokio::sync::Mutex<ReadCache>,
}

#[derive(Debug, Default)]
struct ReadCache {
    regulations: BTreeMap<String, Regulation>,
    stitched: BTreeMap<String, Vec<String>>,
}

impl Default for Suppressions {
    fn default() -> Suppressions {
        Suppressions::new()
    }
}

impl Suppressions {
    pub fn new() -> Suppressions {
        Suppressions { current: RwLock::default(), empty: AtomicBool::new(true), read: tokio::sync::Mutex::default() }
    }

    /// Whether any id is suppressed: callers skip looking up an event's ids otherwise.
    pub fn active(&self) -> bool {
        !self.empty.load(Ordering::Acquire)
    }

    pub fn matches(&self, user_id: Option<&str>, anonymous_id: Option<&str>) -> bool {
        if self.empty.load(Ordering::Acquire) {
            return false;
        }
        self.current.read().expect("never poisoned: no code panics holding it").contains(user_id, anonymous_id)
    }

    pub fn snapshot(&self) -> Arc<IdSet> {
        Arc::clone(&self.current.read().expect("never poisoned"))
    }

    pub fn replace(&self, set: IdSet) {
        let empty = set.is_empty();
        *self.current.write().expect("never poisoned") = Arc::new(set);
        self.empty.store(empty, Ordering::Release);
    }

    /// Applies a regulation just stored here, before the next refresh reads it.
    pub fn apply(&self, regulation: &Regulation) {
        let mut set = (*self.snapshot()).clone();
        set.apply(regulation, &[]);
        self.replace(set);
    }

    /// Reads the regulations added since the last refresh, and every deletion's stitched ids
    /// not yet known, and replaces the set. Returns its size.
    pub async fn refresh(&self, privacy: &PrivacyStore) -> Result<usize, PrivacyError> {
        // Held throughout: refreshes run one at a time, and a failed one keeps what was read.
        let mut cache = self.read.lock().await;
        for key in privacy.regulation_keys().await? {
            if !cache.regulations.contains_key(&key)
                && let Some(regulation) = privacy.regulation_at(&key).await?
            {
                cache.regulations.insert(key, regulation);
            }
        }
        // A deletion's stitched ids are written once, before its lake files are rewritten.
        let unknown: Vec<String> = cache
            .regulations
            .values()
            .filter(|r| r.kind == RegulationKind::Delete && !cache.stitched.contains_key(&r.id))
            .map(|r| r.id.clone())
            .collect();
        for id in unknown {
            if let Some(status) = privacy.status(&id, "lake").await? {
                cache.stitched.insert(id, status.stitched_anonymous_ids.into_iter().collect());
            }
        }
        let set = IdSet::from_regulations(
            cache.regulations.values().map(|r| (r, cache.stitched.get(&r.id).map(Vec::as_slice))),
        );
        let size = set.len();
        self.replace(set);
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regulation::Targets;
    use inlet_lake::{LakeLocation, LakeStore, S3Settings};

    fn targets(users: &[&str], anonymous: &[&str]) -> Targets {
        Targets {
            user_ids: users.iter().map(|s| s.to_string()).collect(),
            anonymous_ids: anonymous.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn a_refresh_applies_regulations_in_order_with_stitched_ids() {
        let dir = tempfile::tempdir().expect("dir");
        let lake = LakeStore::open(LakeLocation::Local(dir.path().to_path_buf()), &S3Settings::default()).expect("l");
        let privacy = PrivacyStore::new(lake);
        let suppressions = Suppressions::new();
        assert!(!suppressions.matches(Some("u1"), None));

        privacy.submit(RegulationKind::Suppress, targets(&["u1"], &["a1"]), None).await.expect("s");
        let deletion = privacy.submit(RegulationKind::Delete, targets(&["u2"], &[]), None).await.expect("d");
        assert_eq!(suppressions.refresh(&privacy).await.expect("refresh"), 3);
        assert!(suppressions.matches(Some("u1"), None) && suppressions.matches(None, Some("a1")));
        assert!(suppressions.matches(Some("u2"), Some("someone-else")));
        assert!(!suppressions.matches(Some("u3"), Some("a3")));

        let mut lake_status = crate::StepStatus::new(&deletion.id, "lake", crate::StepState::Pending);
        lake_status.stitched_anonymous_ids.insert("a2".into());
        privacy.record(&deletion, &lake_status).await.expect("status");
        privacy.submit(RegulationKind::Unsuppress, targets(&["u1"], &["a1"]), None).await.expect("u");
        suppressions.refresh(&privacy).await.expect("refresh");
        assert!(suppressions.matches(None, Some("a2")), "an anonymous id stitched to a deleted user");
        assert!(!suppressions.matches(Some("u1"), Some("a1")), "unsuppressed");

        let again = privacy.submit(RegulationKind::Suppress, targets(&["u1"], &[]), None).await.expect("s");
        suppressions.apply(&again);
        assert!(suppressions.matches(Some("u1"), None), "applied before the next refresh");
    }
}
