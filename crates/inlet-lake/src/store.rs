//! Where lake files live: a local directory (the embedded default) or S3 and S3-compatible
//! stores (endpoint, region and path-style addressing configurable), both through the
//! `object_store` crate, the same client DataFusion reads the lake with.
//!
//! Guarantees of [`LakeStore::put`] and of a finished [`LakeStore::upload`]: when it returns,
//! the object is durable and a reader sees the whole object or none of it.
//! - S3: one PUT, or above `multipart_threshold` a multipart upload of 5 MiB parts that S3
//!   assembles only at completion (a failed upload is aborted and leaves nothing visible).
//! - Local: `object_store`'s file system store does not fsync, so local writes go through
//!   [`inlet_durable::durable_replace`] (a hidden temporary file synced in 1 MiB steps, renamed into
//!   place, the folder synced); reads, listings and deletes go through `object_store`. Hidden
//!   names (starting with `.`) are never listed: query engines skip them too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

/// Default size above which objects are uploaded in parts (S3's single PUT handles up to 5 GB,
/// but parts keep each request short, so a failure costs one part's worth of transfer).
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each part but the last: S3's minimum, so the threshold can be set low.
pub const MULTIPART_PART_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lake location {0:?} is neither s3://bucket[/prefix] nor a local path")]
    BadLocation(String),
    #[error("lake location {location}: {message}")]
    Open { location: String, message: String },
    #[error("{operation} {key}: {message}")]
    Failed { operation: &'static str, key: String, message: String },
}

/// The lake's root, parsed from `lake.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl LakeLocation {
    /// `s3://bucket/prefix`, `file:///path` or a plain path.
    pub fn parse(url: &str) -> Result<LakeLocation, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::BadLocation(url.into()));
            }
            return Ok(LakeLocation::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() || url.contains("://") && !url.starts_with("file://") {
            return Err(StoreError::BadLocation(url.into()));
        }
        Ok(LakeLocation::Local(PathBuf::from(path)))
    }

    /// The URL of `key` under this root (for logs and DDL).
    pub fn url_of(&self, key: &str) -> String {
        match self {
            LakeLocation::Local(root) => root.join(key).display().to_string(),
            LakeLocation::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}/{key}"),
            LakeLocation::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{key}"),
        }
    }
}

/// How to reach S3 (all optional: credentials, region and endpoint from the environment
/// otherwise, as `object_store`'s `AmazonS3Builder::from_env` reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
    /// Objects larger than this use multipart upload.
    pub multipart_threshold: usize,
}

impl Default for S3Settings {
    fn default() -> S3Settings {
        S3Settings { endpoint: None, region: None, force_path_style: false, multipart_threshold: MULTIPART_THRESHOLD }
    }
}

/// A client of `bucket` as a whole (keys include any prefix): what DataFusion registers, and
/// what [`LakeStore`] narrows to the lake's prefix. A request is retried a few times within
/// 30 s; a longer outage surfaces as an error to the caller, whose own loop decides (the lake
/// writer retries forever, with its metrics and logs).
pub fn s3_object_store(bucket: &str, settings: &S3Settings) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let retry =
        RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: Duration::from_secs(30) };
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(!settings.force_path_style)
        .with_retry(retry);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    let store = builder
        .build()
        .map_err(|e| StoreError::Open { location: format!("s3://{bucket}"), message: error_text(&e) })?;
    Ok(Arc::new(store))
}

/// The lake's files: put, get, delete and list by key relative to the lake's root.
#[derive(Debug, Clone)]
pub struct LakeStore {
    location: LakeLocation,
    objects: Arc<dyn ObjectStore>,
    multipart_threshold: usize,
}

impl LakeStore {
    /// Opens the lake at `location`; a local root is created if missing.
    pub fn open(location: LakeLocation, settings: &S3Settings) -> Result<LakeStore, StoreError> {
        let objects: Arc<dyn ObjectStore> = match &location {
            LakeLocation::Local(root) => {
                let opened = std::fs::create_dir_all(root)
                    .map_err(|e| e.to_string())
                    .and_then(|()| LocalFileSystem::new_with_prefix(root).map_err(|e| error_text(&e)));
                let store =
                    opened.map_err(|message| StoreError::Open { location: root.display().to_string(), message })?;
                Arc::new(store)
            }
            LakeLocation::S3 { bucket, prefix } => {
                let bucket_store = s3_object_store(bucket, settings)?;
                if prefix.is_empty() { bucket_store } else { Arc::new(PrefixStore::new(bucket_store, prefix.as_str())) }
            }
        };
        Ok(LakeStore { location, objects, multipart_threshold: settings.multipart_threshold })
    }

    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// Writes `bytes` at `key`, replacing what was there. Returns only once the object is
    /// durable: renamed into place after an fsync locally, confirmed by S3 remotely.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        match &self.location {
            LakeLocation::Local(root) => {
                let path = root.join(key);
                tokio::task::spawn_blocking(move || {
                    let folder = path.parent().ok_or_else(|| std::io::Error::other("key has no folder"))?;
                    std::fs::create_dir_all(folder)?;
                    inlet_durable::durable_replace(&path, &bytes)
                })
                .await
                .map_err(|e| failed("write", key, e.to_string()))?
                .map_err(|e| failed("write", key, e.to_string()))
            }
            LakeLocation::S3 { .. } if bytes.len() > self.multipart_threshold => self.put_multipart(key, bytes).await,
            LakeLocation::S3 { .. } => self
                .objects
                .put(&ObjectPath::from(key), PutPayload::from_bytes(bytes))
                .await
                .map(|_| ())
                .map_err(|e| failed("PUT", key, error_text(&e))),
        }
    }

    /// Starts writing `key` in pieces (files larger than memory should hold): nothing is visible
    /// until [`Upload::finish`]. On S3 the pieces go out as parts while later ones are produced.
    pub async fn upload(&self, key: &str) -> Result<Upload, StoreError> {
        let target = match &self.location {
            LakeLocation::Local(root) => {
                let path = root.join(key);
                let file = tokio::task::spawn_blocking(move || {
                    let folder = path.parent().ok_or_else(|| std::io::Error::other("key has no folder"))?;
                    std::fs::create_dir_all(folder)?;
                    inlet_durable::DurableFile::create(&path, None)
                })
                .await
                .map_err(|e| failed("write", key, e.to_string()))?
                .map_err(|e| failed("write", key, e.to_string()))?;
                UploadTarget::Local(Some(file))
            }
            LakeLocation::S3 { .. } => UploadTarget::S3 { pending: Vec::new(), pending_bytes: 0, parts: None },
        };
        Ok(Upload { store: self.clone(), key: key.to_owned(), target, bytes: 0 })
    }

    async fn put_multipart(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let upload: Box<dyn MultipartUpload> = self
            .objects
            .put_multipart(&ObjectPath::from(key))
            .await
            .map_err(|e| failed("CreateMultipartUpload", key, error_text(&e)))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES);
        for start in (0..bytes.len()).step_by(MULTIPART_PART_BYTES) {
            // At most two parts in flight, so a large file is not all buffered in requests.
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(failed("UploadPart", key, error_text(&e)));
            }
            writer.put(bytes.slice(start..(start + MULTIPART_PART_BYTES).min(bytes.len())));
        }
        // `finish` aborts the upload itself when a part or the completion fails: a dangling
        // upload would only cost storage until a lifecycle rule removed it.
        writer.finish().await.map(|_| ()).map_err(|e| failed("CompleteMultipartUpload", key, error_text(&e)))
    }

    /// Reads `key`, or `None` if it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.objects.get(&ObjectPath::from(key)).await {
            Ok(result) => result.bytes().await.map(Some).map_err(|e| failed("GET", key, error_text(&e))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("GET", key, error_text(&e))),
        }
    }

    /// Reads bytes `range` of `key` (a Parquet footer, a bloom filter), which must exist.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        self.objects
            .get_range(&ObjectPath::from(key), range)
            .await
            .map_err(|e| failed("GET range", key, error_text(&e)))
    }

    /// Removes `key`; removing a key that does not exist is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.objects.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("DELETE", key, error_text(&e))),
        }
    }

    /// Every key under `prefix`, relative to the lake root, sorted; hidden names left out.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list_objects(prefix).await?.into_iter().map(|object| object.key).collect())
    }

    /// [`LakeStore::list`] with each object's size and last modification.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ListedObject>, StoreError> {
        let prefix_path = ObjectPath::from(prefix);
        let listed: Vec<_> = match self.objects.list(Some(&prefix_path)).try_collect().await {
            Ok(listed) => listed,
            // A local prefix that was never created lists as nothing, as on S3.
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(failed("LIST", prefix, error_text(&e))),
        };
        let mut objects: Vec<ListedObject> = listed
            .into_iter()
            .map(|meta| ListedObject {
                key: meta.location.to_string(),
                bytes: meta.size,
                last_modified: meta.last_modified,
            })
            .filter(|object| !object.key.rsplit('/').next().unwrap_or(&object.key).starts_with('.'))
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

impl LakeStore {
    /// The folders directly under `prefix` (`events/` → `events/source=web`, …), sorted.
    pub async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix_path = ObjectPath::from(prefix);
        let listed = match self.objects.list_with_delimiter(Some(&prefix_path)).await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(failed("LIST", prefix, error_text(&e))),
        };
        let mut folders: Vec<String> = listed.common_prefixes.into_iter().map(|p| p.to_string()).collect();
        folders.sort();
        Ok(folders)
    }
}

/// An object being written ([`LakeStore::upload`]).
#[derive(Debug)]
pub struct Upload {
    store: LakeStore,
    key: String,
    target: UploadTarget,
    bytes: u64,
}

enum UploadTarget {
    Local(Option<inlet_durable::DurableFile>),
    /// Pieces are held until a part's worth is there; an object that stays under one part is
    /// sent with a single PUT at the end.
    S3 {
        pending: Vec<Bytes>,
        pending_bytes: usize,
        parts: Option<WriteMultipart>,
    },
}

impl std::fmt::Debug for UploadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadTarget::Local(_) => f.write_str("Local"),
            UploadTarget::S3 { pending_bytes, parts, .. } => {
                f.debug_struct("S3").field("pending_bytes", pending_bytes).field("multipart", &parts.is_some()).finish()
            }
        }
    }
}

impl Upload {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `bytes`. On S3 it waits while two parts are in flight, so memory stays bounded.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StoreError> {
        self.bytes += bytes.len() as u64;
        match &mut self.target {
            UploadTarget::Local(file) => {
                let mut open = file.take().ok_or_else(|| failed("write", &self.key, "upload failed earlier".into()))?;
                let (open, written) = tokio::task::spawn_blocking(move || {
                    let written = open.write(&bytes);
                    (open, written)
                })
                .await
                .map_err(|e| failed("write", &self.key, e.to_string()))?;
                written.map_err(|e| failed("write", &self.key, e.to_string()))?;
                *file = Some(open);
                Ok(())
            }
            UploadTarget::S3 { pending, pending_bytes, parts } => {
                *pending_bytes += bytes.len();
                pending.push(bytes);
                if parts.is_none() && *pending_bytes >= MULTIPART_PART_BYTES {
                    let upload = self
                        .store
                        .objects
                        .put_multipart(&ObjectPath::from(self.key.as_str()))
                        .await
                        .map_err(|e| failed("CreateMultipartUpload", &self.key, error_text(&e)))?;
                    *parts = Some(WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES));
                }
                if let Some(writer) = parts {
                    writer.wait_for_capacity(2).await.map_err(|e| failed("UploadPart", &self.key, error_text(&e)))?;
                    for piece in pending.drain(..) {
                        writer.put(piece);
                    }
                    *pending_bytes = 0;
                }
                Ok(())
            }
        }
    }

    /// Makes the object visible and durable; returns its size.
    pub async fn finish(self) -> Result<u64, StoreError> {
        let Upload { store, key, target, bytes } = self;
        match target {
            UploadTarget::Local(file) => {
                let file = file.ok_or_else(|| failed("write", &key, "upload failed earlier".into()))?;
                tokio::task::spawn_blocking(move || file.commit())
                    .await
                    .map_err(|e| failed("write", &key, e.to_string()))?
                    .map_err(|e| failed("write", &key, e.to_string()))?;
            }
            UploadTarget::S3 { pending, parts: None, .. } => {
                let payload: PutPayload = pending.into_iter().collect();
                store
                    .objects
                    .put(&ObjectPath::from(key.as_str()), payload)
                    .await
                    .map_err(|e| failed("PUT", &key, error_text(&e)))?;
            }
            UploadTarget::S3 { pending, parts: Some(mut writer), .. } => {
                for piece in pending {
                    writer.put(piece);
                }
                // `finish` aborts the upload itself when a part or the completion fails.
                writer.finish().await.map_err(|e| failed("CompleteMultipartUpload", &key, error_text(&e)))?;
            }
        }
        Ok(bytes)
    }

    /// Gives up: nothing becomes visible (an S3 multipart upload is aborted).
    pub async fn abort(self) {
        if let UploadTarget::S3 { parts: Some(writer), .. } = self.target {
            let _ = writer.abort().await;
        }
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub bytes: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

fn failed(operation: &'static str, key: &str, message: String) -> StoreError {
    StoreError::Failed { operation, key: key.to_owned(), message }
}

/// An error with its chain of causes, `: `-separated (client errors hide the useful part in a
/// cause).
pub fn error_text<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lake_locations() {
        assert_eq!(
            LakeLocation::parse("s3://events-bucket/inlet/prod/").expect("s3"),
            LakeLocation::S3 { bucket: "events-bucket".into(), prefix: "inlet/prod".into() }
        );
        assert_eq!(
            LakeLocation::parse("s3://b").expect("s3"),
            LakeLocation::S3 { bucket: "b".into(), prefix: "".into() }
        );
        assert_eq!(LakeLocation::parse("file:///var/lake").expect("file"), LakeLocation::Local("/var/lake".into()));
        assert_eq!(
            LakeLocation::parse("inlet-data/lake").expect("path"),
            LakeLocation::Local("inlet-data/lake".into())
        );
        assert!(LakeLocation::parse("s3://").is_err());
        assert!(LakeLocation::parse("gs://bucket").is_err());
        let s3 = LakeLocation::parse("s3://b/p").expect("s3");
        assert_eq!(s3.url_of("events/x.parquet"), "s3://b/p/events/x.parquet");
    }

    #[tokio::test]
    async fn local_store_writes_atomically_and_lists_what_it_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            LakeStore::open(LakeLocation::Local(dir.path().join("lake")), &S3Settings::default()).expect("open");
        assert_eq!(store.list("events").await.expect("list of nothing"), Vec::<String>::new());
        store.put("events/a/1.parquet", Bytes::from_static(b"one")).await.expect("put");
        store.put("events/a/1.parquet", Bytes::from_static(b"uno")).await.expect("replace");
        store.put("events/b/2.parquet", Bytes::from_static(b"two")).await.expect("put");
        std::fs::write(dir.path().join("lake/events/b/.3.parquet.tmp"), b"half").expect("a stale temporary");
        assert_eq!(store.list("events").await.expect("list"), ["events/a/1.parquet", "events/b/2.parquet"]);
        assert_eq!(store.get("events/a/1.parquet").await.expect("get").as_deref(), Some(&b"uno"[..]));
        assert_eq!(store.get("nope").await.expect("get"), None);
        store.delete("events/a/1.parquet").await.expect("delete");
        store.delete("events/a/1.parquet").await.expect("delete again");
        assert_eq!(store.list("events").await.expect("list"), ["events/b/2.parquet"]);
    }

    #[tokio::test]
    async fn a_local_upload_appears_whole_on_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            LakeStore::open(LakeLocation::Local(dir.path().join("lake")), &S3Settings::default()).expect("open");
        let mut upload = store.upload("tables/db/t/part-0.parquet").await.expect("upload");
        upload.write(Bytes::from_static(b"par")).await.expect("write");
        assert_eq!(store.list("tables").await.expect("list"), Vec::<String>::new());
        upload.write(Bytes::from_static(b"quet")).await.expect("write");
        assert_eq!(upload.finish().await.expect("finish"), 7);
        assert_eq!(store.get("tables/db/t/part-0.parquet").await.expect("get").as_deref(), Some(&b"parquet"[..]));
        let mut abandoned = store.upload("tables/db/t/part-1.parquet").await.expect("upload");
        abandoned.write(Bytes::from_static(b"half")).await.expect("write");
        abandoned.abort().await;
        assert_eq!(store.list("tables").await.expect("list"), ["tables/db/t/part-0.parquet"]);
    }
}
