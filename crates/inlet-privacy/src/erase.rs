//! Erasing ids from the lake's event files (`events/`, and `blocked/`, the events a tracking
//! plan blocked).
//!
//! Only files that may hold an id are read: each file's footer and bloom filters (on `user_id`
//! and `anonymous_id`, written by the lake writer before the footer) come in one ranged read of
//! its tail, and a file whose filters rule every id out is left alone. A file that holds some
//! is read whole, its other rows written to a new file with the lake's settings, and that file
//! put at the same key: one atomic replace (a rename locally, a PUT on S3), so a reader of the
//! whole object gets the old file or the new one. A file left with no rows is deleted. Files
//! written before bloom filters existed have none and are always read.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use inlet_lake::layout::{BLOCKED_PREFIX, EVENTS_PREFIX};
use inlet_lake::parquet_file::{ParquetFile, writer_properties};
use inlet_lake::store::ListedObject;
use inlet_lake::{Codec, LakeStore};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::regulation::{PrivacyError, Targets};

/// Bytes read from the end of a file to find its footer and bloom filters: an hourly file's
/// footer is about 10 KB and its two filters (folded to the ids the hour had) a few KB, so most
/// files cost one request; larger ones cost one or two more.
const TAIL_BYTES: u64 = 32 * 1024;
/// Files whose tails are read at once (requests to S3 in flight).
const CONCURRENT_CHECKS: usize = 16;

/// What an erasure (or a stitching scan) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LakeErasure {
    /// Event files in the lake.
    pub files: u64,
    /// Files whose bloom filters did not rule the ids out, read whole.
    pub files_read: u64,
    pub files_rewritten: u64,
    /// Files that held nothing else, deleted.
    pub files_deleted: u64,
    pub rows_deleted: u64,
    /// Bytes fetched: tails of every file, and whole files read.
    pub bytes_read: u64,
}

impl LakeErasure {
    pub fn counts(&self) -> BTreeMap<String, u64> {
        BTreeMap::from([
            ("files".to_owned(), self.files),
            ("files_read".to_owned(), self.files_read),
            ("files_rewritten".to_owned(), self.files_rewritten),
            ("files_deleted".to_owned(), self.files_deleted),
            ("rows_deleted".to_owned(), self.rows_deleted),
            ("bytes_read".to_owned(), self.bytes_read),
        ])
    }
}

/// The bloom filters of every event file, read once per deletion (each file's tail, in one
/// ranged request): which files may hold an id is then decided without further reads.
#[derive(Debug, Default)]
pub struct BloomIndex {
    files: Vec<IndexedFile>,
    /// Bytes fetched to build it.
    bytes_read: u64,
}

#[derive(Debug)]
struct IndexedFile {
    object: ListedObject,
    /// Per row group, the filters of `user_id` and `anonymous_id`; `None`: the file has no
    /// filters (written before them) and may hold anything.
    row_groups: Option<Vec<[Option<Sbbf>; 2]>>,
}

impl BloomIndex {
    pub async fn load(store: &LakeStore) -> Result<BloomIndex, PrivacyError> {
        // Blocked events (a tracking plan's dead letters) are the same files in another folder.
        let mut objects: Vec<ListedObject> = Vec::new();
        for prefix in [EVENTS_PREFIX, BLOCKED_PREFIX] {
            let listed = store.list_objects(&format!("{prefix}/")).await?;
            objects.extend(listed.into_iter().filter(|object| object.key.ends_with(".parquet")));
        }
        let files: Vec<(IndexedFile, u64)> = futures_util::stream::iter(objects)
            .map(|object| async move {
                let (row_groups, bytes) = bloom_filters(store, &object).await?;
                Ok::<_, PrivacyError>((IndexedFile { object, row_groups }, bytes))
            })
            .buffered(CONCURRENT_CHECKS)
            .try_collect()
            .await?;
        let bytes_read = files.iter().map(|(_, bytes)| bytes).sum();
        Ok(BloomIndex { files: files.into_iter().map(|(file, _)| file).collect(), bytes_read })
    }

    /// The files whose filters do not rule out every id of `targets`.
    fn candidates(&self, targets: &Targets) -> Vec<&ListedObject> {
        let may_hold = |filter: &Option<Sbbf>, ids: &BTreeSet<String>| match filter {
            None => !ids.is_empty(),
            Some(filter) => ids.iter().any(|id| filter.check(id.as_str())),
        };
        self.files
            .iter()
            .filter(|file| match &file.row_groups {
                None => true,
                Some(groups) => groups.iter().any(|[users, anonymous]| {
                    may_hold(users, &targets.user_ids) || may_hold(anonymous, &targets.anonymous_ids)
                }),
            })
            .map(|file| &file.object)
            .collect()
    }
}

/// The anonymous ids (and `previousId`s) that appear on events of `user_ids`: the devices a
/// deleted user logged in on, whose events before the login carry no user id.
pub async fn stitched_anonymous_ids(
    store: &LakeStore,
    index: &BloomIndex,
    user_ids: &BTreeSet<String>,
) -> Result<(BTreeSet<String>, LakeErasure), PrivacyError> {
    let targets = Targets { user_ids: user_ids.clone(), anonymous_ids: BTreeSet::new() };
    let mut scan = LakeErasure { files: index.files.len() as u64, ..LakeErasure::default() };
    let mut stitched = BTreeSet::new();
    if user_ids.is_empty() {
        return Ok((stitched, scan));
    }
    for object in index.candidates(&targets) {
        let Some(file) = store.get(&object.key).await? else { continue };
        scan.files_read += 1;
        scan.bytes_read += file.len() as u64;
        let key = object.key.clone();
        let user_ids = user_ids.clone();
        let found = tokio::task::spawn_blocking(move || linked_ids(file, &user_ids))
            .await
            .map_err(|e| PrivacyError::Task(format!("reading {key}: {e}")))?
            .map_err(|source| PrivacyError::Parquet { key: object.key.clone(), source })?;
        stitched.extend(found);
    }
    Ok((stitched, scan))
}

/// Removes every event of `targets` from the lake's event files. `after_rewrite` is called
/// with each key replaced or deleted (progress; crash tests stop the process there).
pub async fn erase_events(
    store: &LakeStore,
    index: &BloomIndex,
    targets: &Targets,
    codec: Codec,
    after_rewrite: &(dyn Fn(&str) + Sync),
) -> Result<LakeErasure, PrivacyError> {
    let mut erasure =
        LakeErasure { files: index.files.len() as u64, bytes_read: index.bytes_read, ..LakeErasure::default() };
    for object in index.candidates(targets) {
        let Some(file) = store.get(&object.key).await? else { continue };
        erasure.files_read += 1;
        erasure.bytes_read += file.len() as u64;
        let owned_targets = targets.clone();
        let key = object.key.clone();
        let filtered = tokio::task::spawn_blocking(move || without_targets(file, &owned_targets, codec))
            .await
            .map_err(|e| PrivacyError::Task(format!("rewriting {key}: {e}")))?
            .map_err(|source| PrivacyError::Parquet { key: object.key.clone(), source })?;
        match filtered {
            Filtered::Unchanged => continue,
            Filtered::Empty { removed } => {
                store.delete(&object.key).await?;
                erasure.files_deleted += 1;
                erasure.rows_deleted += removed;
            }
            Filtered::Rewritten { bytes, removed } => {
                store.put(&object.key, Bytes::from(bytes)).await?;
                erasure.files_rewritten += 1;
                erasure.rows_deleted += removed;
            }
        }
        tracing::info!(key = %object.key, "lake file rewritten without erased ids");
        after_rewrite(&object.key);
    }
    Ok(erasure)
}

/// A file's bloom filters on `user_id` and `anonymous_id` per row group (`None` if it has
/// none), and the bytes read to get them.
async fn bloom_filters(
    store: &LakeStore,
    object: &ListedObject,
) -> Result<(Option<Vec<[Option<Sbbf>; 2]>>, u64), PrivacyError> {
    let key = &object.key;
    let size = object.bytes;
    let corrupt = |message: &str| PrivacyError::Corrupt { key: key.clone(), message: message.to_owned() };
    if size < 12 {
        return Err(corrupt("too short for a Parquet file"));
    }
    let tail_start = size.saturating_sub(TAIL_BYTES);
    let tail = store.get_range(key, tail_start..size).await?;
    let mut bytes_read = tail.len() as u64;
    let footer = &tail[tail.len() - 8..];
    if &footer[4..] != b"PAR1" {
        return Err(corrupt("no Parquet footer"));
    }
    let metadata_len = u64::from(u32::from_le_bytes(footer[..4].try_into().expect("four bytes")));
    let metadata_start = size.checked_sub(8 + metadata_len).ok_or_else(|| corrupt("footer longer than the file"))?;
    let mut read = async |range: Range<u64>| -> Result<Bytes, PrivacyError> {
        if range.start >= tail_start {
            Ok(tail.slice((range.start - tail_start) as usize..(range.end - tail_start) as usize))
        } else {
            let bytes = store.get_range(key, range).await?;
            bytes_read += bytes.len() as u64;
            Ok(bytes)
        }
    };
    let metadata: ParquetMetaData = ParquetMetaDataReader::decode_metadata(&read(metadata_start..size - 8).await?)
        .map_err(|source| PrivacyError::Parquet { key: key.clone(), source })?;
    let mut row_groups = Vec::with_capacity(metadata.num_row_groups());
    for row_group in metadata.row_groups() {
        let mut filters = [None, None];
        for (slot, column) in ["user_id", "anonymous_id"].into_iter().enumerate() {
            let Some(chunk) = row_group.columns().iter().find(|chunk| chunk.column_path().string() == column) else {
                continue;
            };
            let (Some(offset), Some(length)) = (chunk.bloom_filter_offset(), chunk.bloom_filter_length()) else {
                return Ok((None, bytes_read));
            };
            let (offset, length) = (offset as u64, length as u64);
            if offset + length > size {
                return Err(corrupt("a bloom filter lies outside the file"));
            }
            let filter = Sbbf::from_bytes(&read(offset..offset + length).await?)
                .map_err(|source| PrivacyError::Parquet { key: key.clone(), source })?;
            filters[slot] = Some(filter);
        }
        row_groups.push(filters);
    }
    Ok((Some(row_groups), bytes_read))
}

enum Filtered {
    Unchanged,
    Empty { removed: u64 },
    Rewritten { bytes: Vec<u8>, removed: u64 },
}

/// The file without the targets' rows, in the lake's encoding (its own schema kept).
fn without_targets(file: Bytes, targets: &Targets, codec: Codec) -> Result<Filtered, parquet::errors::ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let mut kept_batches = Vec::new();
    let (mut removed, mut kept) = (0u64, 0u64);
    for batch in builder.build()? {
        let batch = batch?;
        let keep = keep_mask(&batch, targets);
        let keep_rows = keep.true_count();
        removed += (batch.num_rows() - keep_rows) as u64;
        kept += keep_rows as u64;
        if keep_rows == batch.num_rows() {
            kept_batches.push(batch);
        } else if keep_rows > 0 {
            kept_batches.push(arrow_select::filter::filter_record_batch(&batch, &keep)?);
        }
    }
    if removed == 0 {
        return Ok(Filtered::Unchanged);
    }
    if kept == 0 {
        return Ok(Filtered::Empty { removed });
    }
    let mut out = ParquetFile::for_schema(schema, writer_properties(codec))?;
    for batch in &kept_batches {
        out.write(batch)?;
    }
    Ok(Filtered::Rewritten { bytes: out.finish()?, removed })
}

fn keep_mask(batch: &RecordBatch, targets: &Targets) -> BooleanArray {
    let column = |name: &str| batch.column_by_name(name).and_then(|c| c.as_string_opt::<i32>());
    let (user_ids, anonymous_ids) = (column("user_id"), column("anonymous_id"));
    (0..batch.num_rows()).map(|row| Some(!targets.matches(value(user_ids, row), value(anonymous_ids, row)))).collect()
}

fn value(column: Option<&StringArray>, row: usize) -> Option<&str> {
    column.filter(|c| c.is_valid(row)).map(|c| c.value(row))
}

/// The anonymous and previous ids on rows of `user_ids`.
fn linked_ids(file: Bytes, user_ids: &BTreeSet<String>) -> Result<BTreeSet<String>, parquet::errors::ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let columns = ["user_id", "anonymous_id", "previous_id"];
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns);
    let mut linked = BTreeSet::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let column = |name: &str| batch.column_by_name(name).and_then(|c| c.as_string_opt::<i32>());
        let users = column("user_id");
        for row in 0..batch.num_rows() {
            if value(users, row).is_some_and(|id| user_ids.contains(id)) {
                for other in [column("anonymous_id"), column("previous_id")] {
                    linked.extend(value(other, row).map(str::to_owned));
                }
            }
        }
    }
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inlet_lake::schema::EventColumns;
    use inlet_lake::{LakeLocation, S3Settings};
    use inlet_segment::StoredRecord;

    /// A lake file of events `(user id, anonymous id)`.
    fn file(events: &[(Option<&str>, &str)]) -> Bytes {
        let mut columns = EventColumns::default();
        for (n, (user_id, anonymous_id)) in events.iter().enumerate() {
            let mut event = serde_json::json!({
                "type": "track", "event": "Viewed", "messageId": format!("m-{n}-{anonymous_id}"),
                "anonymousId": anonymous_id, "timestamp": "2026-12-01T10:00:00.000Z",
                "receivedAt": "2026-12-01T10:00:00.000Z",
            });
            if let Some(user_id) = user_id {
                event["userId"] = (*user_id).into();
            }
            let record = serde_json::to_vec(&serde_json::json!({"source": "web", "event": event})).expect("json");
            columns.append(&StoredRecord::decode(&record).expect("record"));
        }
        let mut file = ParquetFile::new(Codec::Gzip);
        file.write(&columns.finish()).expect("write");
        Bytes::from(file.finish().expect("finish"))
    }

    fn rows(bytes: Bytes) -> Vec<(Option<String>, String)> {
        inlet_lake::read::read_events(bytes)
            .expect("read")
            .into_iter()
            .map(|stored| {
                let text = |field: &str| stored.event.get(field).and_then(|v| v.as_str()).map(str::to_owned);
                (text("userId"), text("anonymousId").expect("anonymous id"))
            })
            .collect()
    }

    #[tokio::test]
    async fn only_files_that_may_hold_the_ids_are_read_and_the_rest_stay_byte_for_byte() {
        let dir = tempfile::tempdir().expect("dir");
        let store = LakeStore::open(LakeLocation::Local(dir.path().to_path_buf()), &S3Settings::default()).expect("l");
        let mixed = "events/source=web/dt=2026-12-01/hour=10/a.parquet";
        let others = "events/source=web/dt=2026-12-01/hour=11/b.parquet";
        let device = "events/source=app/dt=2026-12-02/hour=00/c.parquet";
        let other_bytes = file(&[(Some("u2"), "a2"), (None, "a3")]);
        store
            .put(mixed, file(&[(None, "a1"), (Some("u1"), "a1"), (Some("u2"), "a2"), (Some("u1"), "a9")]))
            .await
            .expect("put");
        store.put(others, other_bytes.clone()).await.expect("put");
        store.put(device, file(&[(None, "a1")])).await.expect("put");

        let user = BTreeSet::from(["u1".to_owned()]);
        let index = BloomIndex::load(&store).await.expect("index");
        let (stitched, scan) = stitched_anonymous_ids(&store, &index, &user).await.expect("stitch");
        assert_eq!(stitched, BTreeSet::from(["a1".to_owned(), "a9".to_owned()]));
        assert_eq!((scan.files, scan.files_read), (3, 1), "only the file with u1 is read");

        let targets = Targets { user_ids: user, anonymous_ids: BTreeSet::new() }.with_anonymous_ids(&stitched);
        let rewritten = std::sync::Mutex::new(Vec::new());
        let erasure = erase_events(&store, &index, &targets, Codec::Gzip, &|key: &str| {
            rewritten.lock().expect("lock").push(key.to_owned())
        })
        .await
        .expect("erase");
        assert_eq!(
            (erasure.files_read, erasure.files_rewritten, erasure.files_deleted, erasure.rows_deleted),
            (2, 1, 1, 4)
        );
        assert_eq!(rewritten.into_inner().expect("lock"), vec![device.to_owned(), mixed.to_owned()]);
        assert_eq!(rows(store.get(mixed).await.expect("get").expect("kept")), vec![(Some("u2".into()), "a2".into())]);
        assert_eq!(store.get(others).await.expect("get"), Some(other_bytes), "untouched");
        assert_eq!(store.get(device).await.expect("get"), None, "nothing else in it: deleted");

        let index = BloomIndex::load(&store).await.expect("index");
        let again = erase_events(&store, &index, &targets, Codec::Gzip, &|_| {}).await.expect("again");
        assert_eq!((again.files_rewritten, again.rows_deleted), (0, 0), "a rerun finds nothing left");
    }
}
