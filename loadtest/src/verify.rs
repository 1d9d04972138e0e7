//! Reconciles a run's acknowledgements with the lake: every message id the gateway answered
//! 2xx for must be in some lake file (missing must be 0); ids stored more than once are
//! duplicates (reported; the warehouse deduplicates by messageId).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use inlet_lake::layout::EVENTS_PREFIX;
use inlet_lake::{LakeLocation, LakeStore, S3Settings};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Reconciliation {
    pub run: String,
    pub acknowledged: u64,
    pub in_lake: u64,
    pub missing: u64,
    /// Some of the missing ids (at most 20), to look for.
    pub missing_sample: Vec<u64>,
    pub duplicated: u64,
    /// Stored but never acknowledged (the client gave up or was cut off): allowed.
    pub stored_unacknowledged: u64,
    pub files: usize,
}

/// The acks file: the run id, then `first count` per acknowledged request.
pub fn read_acks(path: &Path) -> anyhow::Result<(String, Vec<(u64, u64)>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let run = lines.next().context("empty acks file")?.to_owned();
    let mut ranges = Vec::new();
    for line in lines {
        let (first, count) = line.split_once(' ').with_context(|| format!("bad acks line {line:?}"))?;
        ranges.push((first.parse()?, count.parse()?));
    }
    Ok((run, ranges))
}

pub async fn reconcile(lake: &str, s3: &S3Settings, acks: &[&Path]) -> anyhow::Result<Reconciliation> {
    let mut run = String::new();
    let mut acknowledged: Vec<(u64, u64)> = Vec::new();
    for path in acks {
        let (this_run, ranges) = read_acks(path)?;
        anyhow::ensure!(run.is_empty() || run == this_run, "acks files of different runs ({run}, {this_run})");
        run = this_run;
        acknowledged.extend(ranges);
    }
    let store = LakeStore::open(LakeLocation::parse(lake)?, s3)?;
    let prefix = format!("{run}-");
    let mut stored: HashMap<u64, u32> = HashMap::new();
    let keys: Vec<String> =
        store.list(&format!("{EVENTS_PREFIX}/")).await?.into_iter().filter(|k| k.ends_with(".parquet")).collect();
    for key in &keys {
        let bytes = store.get(key).await?.with_context(|| format!("{key} vanished"))?;
        for event in inlet_lake::read::read_events(bytes).with_context(|| format!("reading {key}"))? {
            if let Some(n) = event.message_id().and_then(|id| id.strip_prefix(&prefix)).and_then(|n| n.parse().ok()) {
                *stored.entry(n).or_default() += 1;
            }
        }
    }
    let mut report = Reconciliation {
        run,
        acknowledged: 0,
        in_lake: 0,
        missing: 0,
        missing_sample: Vec::new(),
        duplicated: stored.values().filter(|&&c| c > 1).count() as u64,
        stored_unacknowledged: 0,
        files: keys.len(),
    };
    let mut acked_ids = std::collections::HashSet::new();
    for (first, count) in acknowledged {
        for n in first..first + count {
            if !acked_ids.insert(n) {
                continue;
            }
            report.acknowledged += 1;
            if stored.contains_key(&n) {
                report.in_lake += 1;
            } else {
                report.missing += 1;
                if report.missing_sample.len() < 20 {
                    report.missing_sample.push(n);
                }
            }
        }
    }
    report.stored_unacknowledged = stored.keys().filter(|n| !acked_ids.contains(n)).count() as u64;
    Ok(report)
}
