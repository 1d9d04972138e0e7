//! # inlet-lake-writer: the WAL, flushed to hourly-partitioned Parquet
//!
//! The lake writer is the WAL consumer named `lake`. It turns ranges of WAL records into Parquet
//! files under `{lake}/events/source={source}/dt={YYYY-MM-DD}/hour={HH}/` on S3 or a local
//! directory, and only then lets the WAL delete them. The lake's layout, schema, store and
//! readers are in `inlet-lake`, which readers (the batch job, destinations' replay) use without
//! this crate or the WAL.
//!
//! ## Invariants
//! - **Nothing acknowledged is lost.** WAL records are confirmed to the WAL (and so become
//!   deletable) only after every file holding them is stored: S3 answered the PUT (or the
//!   multipart completion), or the local file was fsynced and renamed into place.
//! - **No duplicates.** A flush covers a WAL range `from..to` chosen up front and recorded in
//!   `{state_dir}/pending.json` (fsynced) before the first upload. Each partition's file in that
//!   range is named `{instance}-{from}-{to}.parquet` (20-digit LSNs). After a crash at any point
//!   the next start redoes exactly the recorded range, producing the same names, so a file
//!   already uploaded is replaced by identical content, never duplicated. Ranges are disjoint
//!   and consecutive, so no record is in two files.
//! - **One file never spans two hours** (nor two sources): files are per partition.
//! - **Watermark.** After each flush, `{lake}/_inlet/watermarks/{instance}.json` records
//!   `flushed_before`: every event this instance acknowledged before that instant is in the
//!   lake. It advances at each flush that catches up with the WAL, even without traffic, so a
//!   sensor waiting for a day to be complete is never stuck on an idle instance; while a backlog
//!   is flushed in capped ranges it stays put.
//!
//! ## When a range is flushed
//! At the first of: the range is `max_age` old; the UTC hour in which it started has ended
//! (plus `hour_grace`, for late arrivals); it holds `max_range_records`; the gateway is shutting
//! down. A range is also cut where its events reach `max_range_bytes` (decided while encoding,
//! before the range's marker is written), so large events cannot make one range outgrow memory.
//! With the default `max_age` of an hour, each instance writes about one file per source and
//! hour (plus small files for late events), which avoids the small-file problem instead of
//! compacting after the fact.
//!
//! ## Failures
//! Uploads retry with exponential backoff and full jitter, without a deadline: while S3 is
//! down the WAL grows (ingestion goes on) until its disk budget, after which the gateway answers
//! 503; when S3 returns, the backlog is flushed in ranges of at most `max_range_records`. A stop
//! that comes while an upload waits to retry still makes the final flush, which first finishes
//! the interrupted range under its recorded bounds, retrying afresh until `final_flush_timeout`.

pub mod metrics;
pub mod range_encoder;
pub mod writer;

pub use metrics::LakeMetrics;
pub use writer::{LAKE_CONSUMER, LakeError, LakeSettings, LakeWriter, PendingRange};
