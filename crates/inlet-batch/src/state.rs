//! # The job's state in the lake: `{lake}/state/`
//!
//! A run reads from the lake only the reporting days that changed: each day is reduced once to
//! small summaries keyed by *raw key* (the user id, else the anonymous id), and merged state
//! keeps what history contributes (who links to whom, when each key was first seen, traits).
//! Every metrics table is computed from these, with stitching applied at that point, so a
//! daily run's cost follows the day's volume and the number of users, not the lake's age.
//!
//! ## On-disk format
//! - `state/days/{summary}/day=YYYY-MM-DD/{summary}.parquet`, for `summary` in `keys`, `pages`,
//!   `calls`, `sessions` (columns in [`DAY_SUMMARIES`], queries in `sql/day_*.sql`, sessions split
//!   by `sessions.rs`): one file per
//!   day, a function of the lake's events of that day only, so rewriting it from the same
//!   events gives the same rows.
//! - `state/merged/{keys,links,traits,identity,first_seen}-{version:010}.parquet`: the merged state
//!   (columns in [`keys_schema`], [`links_schema`], [`traits_schema`]) and what is derived from
//!   it (the identity map; each stitched user key's first and last active day), kept to tell
//!   what the next version changed.
//! - `state/manifest.json` ([`Manifest`]): the committed version, the settings the state was
//!   computed with, each summarised day's lake fingerprint (files, bytes, latest
//!   modification), and per table the key dates still to recompute.
//!
//! ## Invariants
//! - The manifest is written last, in one atomic put: the next run sees the previous version or
//!   the new one. A version's merged files are written before the manifest that names them and
//!   deleted only once a newer manifest is committed.
//! - Merges are idempotent (MIN, MAX, latest value by time), so folding a day in again is
//!   harmless: a run that stopped between summaries and manifest is repeated from the previous
//!   version.
//! - A day is re-read when a run asks for it or when its fingerprint changed (late events);
//!   only days up to the run's last day join the state.
//! - Merges only add: events removed from the lake leave their traces until `--full`, which
//!   rebuilds the state from the lake. A change of `time_zone`, `min_event_date` or
//!   `session_timeout_minutes` makes the next run rebuild it too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use inlet_lake::layout::EVENTS_PREFIX;
use inlet_lake::{Codec, LakeStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::calendar::{Dates, add_days};
use crate::completeness::day_end;
use crate::config::BatchConfig;
use crate::lakeview::{LakeView, LakeViewError};
use crate::output::{OutputError, conform, parquet_bytes};
use crate::sessions::day_sessions;
use crate::sql::{self, Params};
use crate::users::{SetAt, parse_setting, replaces, setting_json};
use futures_util::{StreamExt, TryStreamExt};

pub const STATE_PREFIX: &str = "state";
const MANIFEST_KEY: &str = "state/manifest.json";
/// Days folded into the merged state at a time: their key summaries are held in memory.
const MERGE_DAYS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Query(#[from] LakeViewError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Store(#[from] inlet_lake::store::StoreError),
    #[error("{MANIFEST_KEY} is not a state manifest: {0}")]
    Manifest(serde_json::Error),
    #[error("{0} has no start in the reporting time zone")]
    Day(NaiveDate),
    #[error("writing a day summary: {0}")]
    Task(String),
}

impl From<datafusion::error::DataFusionError> for StateError {
    fn from(e: datafusion::error::DataFusionError) -> StateError {
        StateError::Query(LakeViewError::Query(e))
    }
}

impl From<datafusion::arrow::error::ArrowError> for StateError {
    fn from(e: datafusion::arrow::error::ArrowError) -> StateError {
        StateError::Output(OutputError::Shape(e))
    }
}

/// The settings the state depends on: a state computed under others is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSettings {
    pub time_zone: String,
    pub min_event_date: String,
    pub session_timeout_minutes: u32,
}

impl StateSettings {
    pub fn of(config: &BatchConfig) -> StateSettings {
        StateSettings {
            time_zone: config.time_zone.clone(),
            min_event_date: config.min_event_date.clone(),
            session_timeout_minutes: config.session_timeout_minutes,
        }
    }
}

/// `state/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    pub settings: StateSettings,
    /// Each summarised day and the lake's fingerprint of it when it was read.
    pub days: BTreeMap<NaiveDate, String>,
    /// The latest day with an activity, the horizon of retention cells.
    pub last_active_day: Option<NaiveDate>,
    /// Per table, the key dates that changed and are not yet recomputed.
    pub pending: BTreeMap<String, Vec<NaiveDate>>,
}

impl Manifest {
    pub async fn load(store: &LakeStore) -> Result<Option<Manifest>, StateError> {
        let Some(bytes) = store.get(MANIFEST_KEY).await? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(StateError::Manifest)
    }

    pub async fn commit(&self, store: &LakeStore) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(StateError::Manifest)?;
        store.put(MANIFEST_KEY, Bytes::from(bytes)).await?;
        Ok(())
    }

    pub fn pending(&self, table: &str) -> Dates {
        self.pending.get(table).map(|dates| Dates::from_iter(dates.iter().copied())).unwrap_or_default()
    }

    pub fn add_pending(&mut self, table: &str, dates: &Dates) {
        let all = self.pending(table).union(dates);
        self.pending.insert(table.to_owned(), all.iter().collect());
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|(name, t)| Field::new(*name, t.clone(), true)).collect::<Vec<_>>()))
}

/// Merged keys: per source and raw key, first and last call, first and last day seen and active.
pub fn keys_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("raw_key", DataType::Utf8),
        ("is_user", DataType::Boolean),
        ("first_time", utc_micros()),
        ("last_time", utc_micros()),
        ("first_date", DataType::Date32),
        ("last_date", DataType::Date32),
        ("first_active_date", DataType::Date32),
        ("last_active_date", DataType::Date32),
    ])
}

/// Merged links: (linked id → user id) with first and last time seen.
pub fn links_schema() -> SchemaRef {
    schema(&[
        ("anonymous_id", DataType::Utf8),
        ("user_id", DataType::Utf8),
        ("first_time", utc_micros()),
        ("last_time", utc_micros()),
    ])
}

/// Merged traits per raw key: `traits` is a JSON object `{name: [event µs, received µs, value]}`
/// holding, per trait, the latest value set (`null` when the latest call removed it).
pub fn traits_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("raw_key", DataType::Utf8),
        ("is_user", DataType::Boolean),
        ("traits", DataType::Utf8),
    ])
}

fn identity_schema() -> SchemaRef {
    schema(&[("anonymous_id", DataType::Utf8), ("user_id", DataType::Utf8), ("first_seen", utc_micros())])
}

fn first_seen_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("user_key", DataType::Utf8),
        ("first_seen_date", DataType::Date32),
        ("last_active_date", DataType::Date32),
    ])
}

/// A day summary: its name (table `day_{name}`) and file columns (the day is the folder's).
#[derive(Debug, Clone, Copy)]
pub struct DaySummary {
    pub name: &'static str,
    query: sql::Query,
    columns: fn() -> SchemaRef,
    /// The query gives calls in order that `sessions.rs` splits into sessions.
    sweep: bool,
}

pub const DAY_SUMMARIES: [DaySummary; 5] = [
    DaySummary { name: "keys", query: sql::DAY_KEYS, columns: day_keys_schema, sweep: false },
    DaySummary { name: "pages", query: sql::DAY_PAGES, columns: day_pages_schema, sweep: false },
    DaySummary { name: "calls", query: sql::DAY_CALLS, columns: day_calls_schema, sweep: false },
    DaySummary { name: "sessions", query: sql::DAY_SESSION_CALLS, columns: day_sessions_schema, sweep: true },
    DaySummary { name: "violations", query: sql::DAY_VIOLATIONS, columns: day_violations_schema, sweep: false },
];

fn day_violations_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("event", DataType::Utf8),
        ("property", DataType::Utf8),
        ("kind", DataType::Utf8),
        ("events", DataType::Int64),
    ])
}

fn day_keys_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("raw_key", DataType::Utf8),
        ("is_user", DataType::Boolean),
        ("calls", DataType::Int64),
        ("activity_calls", DataType::Int64),
        ("page_views", DataType::Int64),
        ("first_time", utc_micros()),
        ("last_time", utc_micros()),
    ])
}

fn day_pages_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("raw_key", DataType::Utf8),
        ("path", DataType::Utf8),
        ("page_views", DataType::Int64),
    ])
}

fn day_calls_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("raw_key", DataType::Utf8),
        ("type", DataType::Utf8),
        ("event", DataType::Utf8),
        ("calls", DataType::Int64),
    ])
}

fn day_sessions_schema() -> SchemaRef {
    schema(&[
        ("source", DataType::Utf8),
        ("raw_key", DataType::Utf8),
        ("started", utc_micros()),
        ("ended", utc_micros()),
        ("events", DataType::Int64),
    ])
}

impl DaySummary {
    pub fn table(self) -> String {
        format!("day_{}", self.name)
    }

    pub fn folder(self) -> String {
        format!("{STATE_PREFIX}/days/{}/", self.name)
    }

    fn file(self, day: NaiveDate) -> String {
        format!("{}day={}/{}.parquet", self.folder(), crate::calendar::day(day), self.name)
    }

    pub fn schema(self) -> SchemaRef {
        (self.columns)()
    }
}

/// Folder of the merged state's versioned files.
const MERGED_PREFIX: &str = "state/merged";

/// The merged state's files of one version, by name.
const MERGED_FILES: [&str; 5] = ["keys", "links", "traits", "identity", "first_seen"];

fn versioned(name: &str, version: u64) -> String {
    format!("{MERGED_PREFIX}/{name}-{version:010}.parquet")
}

/// The reporting day's bounds in UTC.
pub fn day_bounds(date: NaiveDate, zone: Tz) -> Result<(DateTime<Utc>, DateTime<Utc>), StateError> {
    let previous = date.pred_opt().ok_or(StateError::Day(date))?;
    let start = day_end(previous, zone).map_err(|_| StateError::Day(date))?;
    let end = day_end(date, zone).map_err(|_| StateError::Day(date))?;
    Ok((start, end))
}

/// The values of `day_read.sql` (and `load_events.sql`) for one reporting day: its bounds in
/// UTC and the hours of the lake it overlaps.
pub fn day_read_params(config: &BatchConfig, day: NaiveDate) -> Result<Params, StateError> {
    let (start, end) = day_bounds(day, config.tz())?;
    let hour_text = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H").to_string();
    let last_hour = (end - Duration::microseconds(1)).with_minute(0).unwrap_or(end);
    let min_time = NaiveDate::parse_from_str(&config.min_event_date, "%Y-%m-%d")
        .unwrap_or_default()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    Ok(Params::new()
        .time("min_time", min_time)
        .text("first_hour", &hour_text(start))
        .text("last_hour", &hour_text(last_hour))
        .time("day_start", start)
        .time("day_end", end))
}

/// Per reporting day of `window` (first and last day; every day when `None`), a fingerprint of
/// the lake's event files that can hold its events. With a window only its `dt` folders (and one
/// either side) are listed, so the cost follows the window, not the lake's age.
pub async fn lake_days(
    store: &LakeStore,
    zone: Tz,
    window: Option<(NaiveDate, NaiveDate)>,
) -> Result<BTreeMap<NaiveDate, String>, StateError> {
    #[derive(Default)]
    struct Files {
        count: u64,
        bytes: u64,
        latest: i64,
    }
    let objects = match window {
        None => store.list_objects(&format!("{EVENTS_PREFIX}/")).await?,
        Some((first, last)) => {
            let mut prefixes = Vec::new();
            for source in store.list_folders(&format!("{EVENTS_PREFIX}/")).await? {
                for date in Dates::range(add_days(first, -1), add_days(last, 1)).iter() {
                    prefixes.push(format!("{source}/dt={}/", crate::calendar::day(date)));
                }
            }
            let listings: Vec<_> = futures_util::stream::iter(prefixes.iter().map(|p| store.list_objects(p)))
                .buffer_unordered(LISTINGS_IN_FLIGHT)
                .try_collect()
                .await?;
            listings.into_iter().flatten().collect()
        }
    };
    let mut days: BTreeMap<NaiveDate, Files> = BTreeMap::new();
    for object in objects {
        let Some(hour) = hour_of(&object.key) else { continue };
        // An hour of UTC lies in one local day, or two where the offset is not whole hours.
        let last_instant = hour + Duration::seconds(3599);
        for instant in [hour, last_instant] {
            let date = instant.with_timezone(&zone).date_naive();
            if window.is_some_and(|(first, last)| date < first || date > last) {
                continue;
            }
            let files = days.entry(date).or_default();
            if instant == hour || date != hour.with_timezone(&zone).date_naive() {
                files.count += 1;
                files.bytes += object.bytes;
                files.latest = files.latest.max(object.last_modified.timestamp_micros());
            }
        }
    }
    Ok(days
        .into_iter()
        .map(|(date, f)| (date, format!("{} files, {} bytes, {}", f.count, f.bytes, f.latest)))
        .collect())
}

/// Folder listings run at once when the lake is listed by day (S3 answers each in tens of ms).
const LISTINGS_IN_FLIGHT: usize = 16;

/// `events/source=…/dt=YYYY-MM-DD/hour=HH/…` → the hour's start.
fn hour_of(key: &str) -> Option<DateTime<Utc>> {
    let mut parts = key.split('/');
    let (_, _, dt, hour) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let date = NaiveDate::parse_from_str(dt.strip_prefix("dt=")?, "%Y-%m-%d").ok()?;
    let hour: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0)?))
}

/// What a state update did.
#[derive(Debug, Clone)]
pub struct Update {
    pub manifest: Manifest,
    /// Days read from the lake.
    pub read: Dates,
    /// Days whose per-day tables change: those read, and those stitching changed.
    pub changed: Dates,
    /// Cohorts whose unbounded retention changed beyond what `changed` implies.
    pub retention_cohorts: Dates,
}

/// Which days a run reads from the lake: those asked for, those whose files changed since they
/// were read (late events; `lake` lists the days from `since`), and all of them when there is
/// no usable state.
pub fn days_to_read(
    manifest: Option<&Manifest>,
    lake: &BTreeMap<NaiveDate, String>,
    asked: &Dates,
    since: Option<NaiveDate>,
    last: NaiveDate,
) -> Dates {
    let in_scope = |d: &NaiveDate| *d <= last && since.is_none_or(|since| *d >= since);
    match manifest {
        None => Dates::from_iter(lake.keys().copied().filter(in_scope)).union(asked),
        Some(manifest) => {
            let changed = lake.iter().filter(|(d, print)| in_scope(d) && manifest.days.get(*d) != Some(*print));
            let vanished = manifest.days.keys().filter(|d| in_scope(d) && !lake.contains_key(*d));
            Dates::from_iter(changed.map(|(d, _)| *d).chain(vanished.copied())).union(asked)
        }
    }
}

/// The state over one lake: reads changed days, merges, commits.
#[derive(Debug)]
pub struct State<'a> {
    pub view: &'a LakeView,
    pub store: &'a LakeStore,
    pub config: &'a BatchConfig,
}

impl State<'_> {
    /// Reads `read` from the lake into day summaries, folds them into the merged state of
    /// `previous` (none: from scratch) and commits a new version. Registers `keys`, `links`,
    /// `traits`, `identity_map`, `first_seen` and the day summaries for the steps.
    pub async fn update(
        &self,
        previous: Option<&Manifest>,
        read: &Dates,
        lake: &BTreeMap<NaiveDate, String>,
    ) -> Result<Update, StateError> {
        let version = previous.map_or(1, |m| m.version + 1);
        let started = std::time::Instant::now();
        self.load_merged(previous).await?;
        let mut traits = TraitState::load(self.view, previous).await?;
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "previous state loaded");
        let days: Vec<NaiveDate> = read.iter().collect();
        let mut writes = Writes::default();
        // The next day is read from the lake while this one is summarised: the read is mostly
        // decoding, the summaries mostly small queries, and together they keep both cores busy.
        let mut next_read = match days.first() {
            Some(day) => Some(self.start_read(*day).await?),
            None => None,
        };
        for chunk in days.chunks(MERGE_DAYS) {
            let (mut new_keys, mut new_links) = (Vec::new(), Vec::new());
            for day in chunk {
                let reading = next_read.take().ok_or(StateError::Day(*day))?;
                let calls = reading.await.map_err(|e| StateError::Task(e.to_string()))??;
                if let Some(following) = days.iter().find(|d| *d > day) {
                    next_read = Some(self.start_read(*following).await?);
                }
                let summary = self.summarise(*day, calls, &mut writes).await?;
                new_keys.extend(summary.keys);
                new_links.extend(summary.links);
                traits.fold(&summary.traits);
            }
            self.merge("keys", sql::MERGE_KEYS, "new_keys", keys_schema(), new_keys).await?;
            self.merge("links", sql::MERGE_LINKS, "new_links", links_schema(), new_links).await?;
        }
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "days summarised and merged");
        for table in ["day_read", "day_events"] {
            self.view.ctx.deregister_table(table)?;
        }
        let traits_batch = traits.to_batch()?;
        self.view.register_batches("traits", traits_schema(), vec![traits_batch.clone()])?;
        let identity = self.derive("identity_map", sql::IDENTITY_MAP, identity_schema()).await?;
        let first_seen = self.derive("first_seen", sql::FIRST_SEEN, first_seen_schema()).await?;
        let spans = self.view.run(&sql::AFFECTED_SPANS, Params::new()).await?;
        let mut retention_cohorts = Dates::default();
        for batch in self.view.run(&sql::RETENTION_COHORTS, Params::new()).await? {
            retention_cohorts =
                retention_cohorts.union(&Dates::from_iter(date_column(&batch, 0)?.into_iter().flatten()));
        }
        let last_active_day = self.last_active_day().await?;

        let mut changed = read.clone();
        for batch in &spans {
            let (firsts, lasts) = (date_column(batch, 0)?, date_column(batch, 1)?);
            for (first, last) in firsts.into_iter().zip(lasts) {
                if let (Some(first), Some(last)) = (first, last) {
                    changed = changed.union(&Dates::range(first, last));
                }
            }
        }
        for (name, schema) in [("keys", keys_schema()), ("links", links_schema())] {
            let batches = self.view.ctx.table(name).await?.collect().await?;
            writes.put(self.store, versioned(name, version), schema, batches).await?;
        }
        writes.put(self.store, versioned("traits", version), traits_schema(), vec![traits_batch]).await?;
        writes.put(self.store, versioned("identity", version), identity_schema(), identity).await?;
        writes.put(self.store, versioned("first_seen", version), first_seen_schema(), first_seen).await?;
        writes.finish().await?;
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "state written");
        let mut days = previous.map(|m| m.days.clone()).unwrap_or_default();
        for day in read.iter() {
            match lake.get(&day) {
                Some(print) => days.insert(day, print.clone()),
                None => days.remove(&day),
            };
        }
        let manifest = Manifest {
            version,
            settings: StateSettings::of(self.config),
            days,
            last_active_day,
            pending: previous.map(|m| m.pending.clone()).unwrap_or_default(),
        };
        Ok(Update { manifest, read: read.clone(), changed, retention_cohorts })
    }

    /// Commits `manifest` and removes the merged files of older versions.
    pub async fn commit(&self, manifest: &Manifest) -> Result<(), StateError> {
        manifest.commit(self.store).await?;
        let current: Vec<String> = MERGED_FILES.iter().map(|name| versioned(name, manifest.version)).collect();
        for key in self.store.list(&format!("{MERGED_PREFIX}/")).await? {
            if !current.contains(&key) {
                self.store.delete(&key).await?;
            }
        }
        Ok(())
    }

    /// Registers a committed version's state for steps run without updating it: `keys`,
    /// `links`, `traits`, `identity_map`, `first_seen`.
    pub async fn register_committed(&self, manifest: &Manifest) -> Result<(), StateError> {
        let tables = [
            ("keys", "keys", keys_schema()),
            ("links", "links", links_schema()),
            ("traits", "traits", traits_schema()),
            ("identity", "identity_map", identity_schema()),
            ("first_seen", "first_seen", first_seen_schema()),
        ];
        self.register_version(Some(manifest), tables).await
    }

    /// Registers the previous version's merged state as `keys`, `links`,
    /// `previous_identity_map` and `previous_first_seen` (empty without one).
    async fn load_merged(&self, previous: Option<&Manifest>) -> Result<(), StateError> {
        let tables = [
            ("keys", "keys", keys_schema()),
            ("links", "links", links_schema()),
            ("identity", "previous_identity_map", identity_schema()),
            ("first_seen", "previous_first_seen", first_seen_schema()),
        ];
        self.register_version(previous, tables).await
    }

    /// Registers each merged file `(name, as table, columns)` of `version` (empty without one).
    async fn register_version<const N: usize>(
        &self,
        version: Option<&Manifest>,
        tables: [(&str, &str, SchemaRef); N],
    ) -> Result<(), StateError> {
        for (name, table, schema) in tables {
            let batches = match version {
                Some(m) => self.view.read_file(&versioned(name, m.version), &schema).await?,
                None => Vec::new(),
            };
            self.view.register_batches(table, schema, batches)?;
        }
        Ok(())
    }

    /// Starts reading one day's calls from the lake (`day_read.sql`) in the background.
    async fn start_read(
        &self,
        day: NaiveDate,
    ) -> Result<tokio::task::JoinHandle<Result<Vec<RecordBatch>, LakeViewError>>, StateError> {
        let params = day_read_params(self.config, day)?;
        Ok(self.view.start(&sql::DAY_READ, params).await?)
    }

    /// Summarises one day's calls (read by [`State::start_read`]), writes its summaries and
    /// returns what the merge needs.
    async fn summarise(
        &self,
        day: NaiveDate,
        calls: Vec<RecordBatch>,
        writes: &mut Writes,
    ) -> Result<DayParts, StateError> {
        let schema = match calls.first() {
            Some(batch) => batch.schema(),
            None => self.view.plan_schema(&sql::DAY_READ).await?,
        };
        self.view.register_batches("day_read", schema, calls)?;
        let unique = self.view.run(&sql::DAY_EVENTS, Params::new()).await?;
        let schema = match unique.first() {
            Some(batch) => batch.schema(),
            None => self.view.plan_schema(&sql::DAY_EVENTS).await?,
        };
        self.view.register_batches("day_events", schema, unique)?;
        let timeout = i64::from(self.config.session_timeout_minutes) * 60_000_000;
        let mut keys = Vec::new();
        for summary in DAY_SUMMARIES {
            let found = self.view.run(&summary.query, Params::new()).await?;
            let rows = if summary.sweep {
                day_sessions(&summary.schema(), &found, timeout)?
            } else {
                conform(&summary.schema(), &found)?
            };
            if summary.name == "keys" {
                keys.push(with_day(&rows, day)?);
            }
            writes.put(self.store, summary.file(day), summary.schema(), vec![rows]).await?;
        }
        let links = self.view.run(&sql::DAY_LINKS, Params::new()).await?;
        let traits = self.view.run(&sql::DAY_TRAITS, Params::new()).await?;
        Ok(DayParts { keys, links: conform_all(&links_schema(), links)?, traits })
    }

    /// Folds `new` (registered as `new_table`) into the merged table `name`.
    async fn merge(
        &self,
        name: &str,
        query: sql::Query,
        new_table: &str,
        schema: SchemaRef,
        new: Vec<RecordBatch>,
    ) -> Result<(), StateError> {
        let new_schema = new.first().map_or_else(|| schema.clone(), |b| b.schema());
        self.view.register_batches(new_table, new_schema, new)?;
        let merged = self.view.run(&query, Params::new()).await?;
        self.view.register_batches(name, schema.clone(), conform_all(&schema, merged)?)?;
        self.view.ctx.deregister_table(new_table)?;
        Ok(())
    }

    /// Runs a derivation of the merged state and registers it under `name`.
    async fn derive(&self, name: &str, query: sql::Query, schema: SchemaRef) -> Result<Vec<RecordBatch>, StateError> {
        let rows = conform_all(&schema, self.view.run(&query, Params::new()).await?)?;
        self.view.register_batches(name, schema, rows.clone())?;
        Ok(rows)
    }

    async fn last_active_day(&self) -> Result<Option<NaiveDate>, StateError> {
        let batches = self.view.ctx.sql("SELECT MAX(last_active_date) FROM keys").await?.collect().await?;
        Ok(batches.first().and_then(|b| date_column(b, 0).ok()).and_then(|dates| dates.first().copied().flatten()))
    }
}

/// State files encoded and stored in the background while the next queries run, a few at a
/// time; all are stored before the manifest that names them is written.
#[derive(Default)]
struct Writes(tokio::task::JoinSet<Result<(), StateError>>);

impl Writes {
    const IN_FLIGHT: usize = 8;

    async fn put(
        &mut self,
        store: &LakeStore,
        key: String,
        schema: SchemaRef,
        rows: Vec<RecordBatch>,
    ) -> Result<(), StateError> {
        while self.0.len() >= Self::IN_FLIGHT {
            self.next().await?;
        }
        let store = store.clone();
        self.0.spawn(async move {
            let bytes = tokio::task::spawn_blocking(move || parquet_bytes(&schema, &rows, Codec::Zstd))
                .await
                .map_err(|e| StateError::Task(e.to_string()))??;
            store.put(&key, bytes).await?;
            Ok(())
        });
        Ok(())
    }

    async fn next(&mut self) -> Result<(), StateError> {
        match self.0.join_next().await {
            Some(done) => done.map_err(|e| StateError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }

    async fn finish(mut self) -> Result<(), StateError> {
        while !self.0.is_empty() {
            self.next().await?;
        }
        Ok(())
    }
}

struct DayParts {
    keys: Vec<RecordBatch>,
    links: Vec<RecordBatch>,
    traits: Vec<RecordBatch>,
}

fn conform_all(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, StateError> {
    Ok(vec![conform(schema, &batches)?])
}

/// `rows` with a first column `day`.
fn with_day(rows: &RecordBatch, day: NaiveDate) -> Result<RecordBatch, StateError> {
    let days = datafusion::arrow::array::Date32Array::from(vec![
        i32::try_from(
            day.signed_duration_since(NaiveDate::default()).num_days()
        )
        .unwrap_or_default();
        rows.num_rows()
    ]);
    let mut fields = vec![Field::new("day", DataType::Date32, false)];
    fields.extend(rows.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut columns: Vec<Arc<dyn Array>> = vec![Arc::new(days)];
    columns.extend(rows.columns().iter().cloned());
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

fn date_column(batch: &RecordBatch, index: usize) -> Result<Vec<Option<NaiveDate>>, StateError> {
    let column = datafusion::arrow::compute::cast(batch.column(index), &DataType::Date32)?;
    let dates = column.as_primitive::<datafusion::arrow::datatypes::Date32Type>();
    Ok((0..dates.len()).map(|i| dates.is_valid(i).then(|| dates.value_as_date(i)).flatten()).collect())
}

/// One raw key's traits: whether it is a user id, and each trait's latest setting.
type KeyTraits = (bool, BTreeMap<String, (SetAt, Value)>);

/// Merged traits per (source, raw key), with the time each trait was last set.
#[derive(Debug, Default)]
struct TraitState(HashMap<(String, String), KeyTraits>);

impl TraitState {
    async fn load(view: &LakeView, previous: Option<&Manifest>) -> Result<TraitState, StateError> {
        let mut state = TraitState::default();
        let Some(manifest) = previous else { return Ok(state) };
        for batch in view.read_file(&versioned("traits", manifest.version), &traits_schema()).await? {
            let (sources, keys, users, traits) = (
                batch.column(0).as_string::<i32>(),
                batch.column(1).as_string::<i32>(),
                batch.column(2).as_boolean(),
                batch.column(3).as_string::<i32>(),
            );
            for row in 0..batch.num_rows() {
                let Ok(Value::Object(stored)) = serde_json::from_str::<Value>(traits.value(row)) else { continue };
                let entry = state
                    .0
                    .entry((sources.value(row).to_owned(), keys.value(row).to_owned()))
                    .or_insert_with(|| (users.value(row), BTreeMap::new()));
                for (name, setting) in stored {
                    if let Some(set) = parse_setting(setting) {
                        entry.1.insert(name, set);
                    }
                }
            }
        }
        Ok(state)
    }

    /// Folds rows of `day_traits.sql`.
    fn fold(&mut self, batches: &[RecordBatch]) {
        for batch in batches {
            let (sources, keys, users, traits) = (
                batch.column(0).as_string::<i32>(),
                batch.column(1).as_string::<i32>(),
                batch.column(2).as_boolean(),
                batch.column(3).as_string::<i32>(),
            );
            let (times, received) =
                (batch.column(4).as_primitive::<Int64Type>(), batch.column(5).as_primitive::<Int64Type>());
            for row in 0..batch.num_rows() {
                let Ok(Value::Object(update)) = serde_json::from_str::<Value>(traits.value(row)) else { continue };
                let entry = self
                    .0
                    .entry((sources.value(row).to_owned(), keys.value(row).to_owned()))
                    .or_insert_with(|| (users.value(row), BTreeMap::new()));
                for (name, value) in update {
                    let at = (times.value(row), received.value(row));
                    if replaces(at, &value, entry.1.get(&name)) {
                        entry.1.insert(name, (at, value));
                    }
                }
            }
        }
    }

    fn to_batch(&self) -> Result<RecordBatch, StateError> {
        let mut rows: Vec<(&(String, String), &KeyTraits)> = self.0.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        let sources = StringArray::from_iter_values(rows.iter().map(|(k, _)| k.0.as_str()));
        let keys = StringArray::from_iter_values(rows.iter().map(|(k, _)| k.1.as_str()));
        let users = BooleanArray::from(rows.iter().map(|(_, v)| v.0).collect::<Vec<_>>());
        let traits = StringArray::from_iter_values(rows.iter().map(|(_, (_, set))| {
            let object: Map<String, Value> =
                set.iter().map(|(name, (at, value))| (name.clone(), setting_json(at, value))).collect();
            Value::Object(object).to_string()
        }));
        Ok(RecordBatch::try_new(
            traits_schema(),
            vec![Arc::new(sources), Arc::new(keys), Arc::new(users), Arc::new(traits)],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_files_map_to_the_local_days_their_hour_overlaps() {
        let hour = hour_of("events/source=web/dt=2026-10-01/hour=15/gw-1-1-2.parquet").expect("hour");
        assert_eq!(hour.to_rfc3339(), "2026-10-01T15:00:00+00:00");
        assert_eq!(hour_of("events/source=web/dt=2026-10-01/x.parquet"), None);
        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        let (start, end) = day_bounds("2026-10-02".parse().expect("date"), seoul).expect("bounds");
        assert_eq!(
            (start.to_rfc3339(), end.to_rfc3339()),
            ("2026-10-01T15:00:00+00:00".into(), "2026-10-02T15:00:00+00:00".into())
        );
    }

    #[test]
    fn days_to_read_are_asked_changed_or_vanished_up_to_the_last_day() {
        let d = |s: &str| -> NaiveDate { s.parse().expect("date") };
        let lake: BTreeMap<NaiveDate, String> =
            [(d("2026-10-01"), "a"), (d("2026-10-02"), "b2"), (d("2026-10-04"), "d")]
                .map(|(k, v)| (k, v.to_owned()))
                .into();
        let manifest = Manifest {
            version: 3,
            settings: StateSettings {
                time_zone: "UTC".into(),
                min_event_date: "2015-01-01".into(),
                session_timeout_minutes: 30,
            },
            days: [(d("2026-10-01"), "a"), (d("2026-10-02"), "b"), (d("2026-10-03"), "c")]
                .map(|(k, v)| (k, v.to_owned()))
                .into(),
            last_active_day: None,
            pending: BTreeMap::new(),
        };
        let asked = Dates::from_iter([d("2026-10-01")]);
        let read = days_to_read(Some(&manifest), &lake, &asked, None, d("2026-10-03"));
        assert_eq!(read.iter().collect::<Vec<_>>(), vec![d("2026-10-01"), d("2026-10-02"), d("2026-10-03")]);
        let fresh = days_to_read(None, &lake, &Dates::default(), None, d("2026-10-05"));
        assert_eq!(fresh.len(), 3);
        let window = days_to_read(Some(&manifest), &lake, &Dates::default(), Some(d("2026-10-02")), d("2026-10-05"));
        assert_eq!(
            window.iter().collect::<Vec<_>>(),
            vec![d("2026-10-02"), d("2026-10-03"), d("2026-10-04")],
            "days before the window are not compared"
        );
    }
}
