//! Where lake files are written: a local directory (the embedded default) or S3 and
//! S3-compatible stores (endpoint, region and path-style addressing configurable).

use std::path::{Path, PathBuf};

use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

/// Default size above which objects are uploaded in parts (S3's single PUT handles up to 5 GB,
/// but parts keep each request short, so a failure costs one part's worth of transfer).
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each part but the last: S3's minimum, so the threshold can be set low.
pub const MULTIPART_PART_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lake location {0:?} is neither s3://bucket[/prefix] nor a local path")]
    BadLocation(String),
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

/// How to reach S3 (all optional: the default credential chain and region apply otherwise).
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

#[derive(Debug, Clone)]
pub struct ObjectStore {
    location: LakeLocation,
    s3: Option<aws_sdk_s3::Client>,
    multipart_threshold: usize,
}

impl ObjectStore {
    pub async fn open(location: LakeLocation, settings: &S3Settings) -> ObjectStore {
        let s3 = match &location {
            LakeLocation::Local(_) => None,
            LakeLocation::S3 { .. } => Some(s3_client(settings).await),
        };
        ObjectStore { location, s3, multipart_threshold: settings.multipart_threshold }
    }

    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// Writes `bytes` at `key`, replacing what was there. Returns only once the object is
    /// durable: renamed into place after an fsync locally, confirmed by S3 remotely.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        match (&self.location, &self.s3) {
            (LakeLocation::Local(root), _) => {
                let path = root.join(key);
                tokio::task::spawn_blocking(move || write_local(&path, &bytes))
                    .await
                    .map_err(|e| failed("write", key, e.to_string()))?
                    .map_err(|e| failed("write", key, e.to_string()))
            }
            (LakeLocation::S3 { bucket, prefix }, Some(client)) => {
                let object = object_key(prefix, key);
                if bytes.len() > self.multipart_threshold {
                    put_multipart(client, bucket, &object, bytes).await
                } else {
                    client
                        .put_object()
                        .bucket(bucket)
                        .key(&object)
                        .body(ByteStream::from(bytes))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| failed("PUT", &object, error_text(&e)))
                }
            }
            (LakeLocation::S3 { .. }, None) => unreachable!("S3 locations always have a client"),
        }
    }

    /// Reads `key`, or `None` if it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match (&self.location, &self.s3) {
            (LakeLocation::Local(root), _) => match tokio::fs::read(root.join(key)).await {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(failed("read", key, e.to_string())),
            },
            (LakeLocation::S3 { bucket, prefix }, Some(client)) => {
                let object = object_key(prefix, key);
                match client.get_object().bucket(bucket).key(&object).send().await {
                    Ok(output) => {
                        let body = output.body.collect().await.map_err(|e| failed("GET", &object, e.to_string()))?;
                        Ok(Some(body.into_bytes()))
                    }
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                    Err(e) => Err(failed("GET", &object, error_text(&e))),
                }
            }
            (LakeLocation::S3 { .. }, None) => unreachable!("S3 locations always have a client"),
        }
    }

    /// Removes `key`; removing a key that does not exist is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match (&self.location, &self.s3) {
            (LakeLocation::Local(root), _) => match tokio::fs::remove_file(root.join(key)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(failed("delete", key, e.to_string())),
            },
            (LakeLocation::S3 { bucket, prefix }, Some(client)) => {
                let object = object_key(prefix, key);
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(&object)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| failed("DELETE", &object, error_text(&e)))
            }
            (LakeLocation::S3 { .. }, None) => unreachable!("S3 locations always have a client"),
        }
    }

    /// Every key under `prefix`, relative to the lake root, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = match (&self.location, &self.s3) {
            (LakeLocation::Local(root), _) => {
                let root = root.clone();
                let start = root.join(prefix);
                tokio::task::spawn_blocking(move || list_local(&root, &start))
                    .await
                    .map_err(|e| failed("list", prefix, e.to_string()))?
            }
            (LakeLocation::S3 { bucket, prefix: root }, Some(client)) => {
                let mut keys = Vec::new();
                let mut pages =
                    client.list_objects_v2().bucket(bucket).prefix(object_key(root, prefix)).into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| failed("LIST", prefix, error_text(&e)))?;
                    for object in page.contents() {
                        if let Some(key) = object.key() {
                            let relative = if root.is_empty() {
                                key
                            } else {
                                key.strip_prefix(&format!("{root}/")).unwrap_or(key)
                            };
                            keys.push(relative.to_owned());
                        }
                    }
                }
                keys
            }
            (LakeLocation::S3 { .. }, None) => unreachable!("S3 locations always have a client"),
        };
        keys.sort();
        Ok(keys)
    }
}

/// The HTTPS client of every AWS SDK client Inlet builds: rustls with the `ring` provider, so
/// no C toolchain (aws-lc) is needed.
pub fn aws_http_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

async fn s3_client(settings: &S3Settings) -> aws_sdk_s3::Client {
    let http = aws_http_client();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(settings.force_path_style)
        // Checksums only where S3 requires them: S3-compatible stores differ in what they accept.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    if let Some(endpoint) = &settings.endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

async fn put_multipart(client: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: Bytes) -> Result<(), StoreError> {
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| failed("CreateMultipartUpload", key, error_text(&e)))?;
    let upload_id = upload.upload_id().ok_or_else(|| failed("CreateMultipartUpload", key, "no upload id".into()))?;
    let result = async {
        let mut parts = Vec::new();
        for (index, start) in (0..bytes.len()).step_by(MULTIPART_PART_BYTES).enumerate() {
            let part_number =
                i32::try_from(index + 1).map_err(|_| failed("UploadPart", key, "too many parts".into()))?;
            let chunk = bytes.slice(start..(start + MULTIPART_PART_BYTES).min(bytes.len()));
            let part = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| failed("UploadPart", key, error_text(&e)))?;
            parts.push(
                CompletedPart::builder().part_number(part_number).set_e_tag(part.e_tag().map(str::to_owned)).build(),
            );
        }
        client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| failed("CompleteMultipartUpload", key, error_text(&e)))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        // Best effort: a dangling upload only costs storage until a lifecycle rule removes it.
        let _ = client.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload_id).send().await;
    }
    result
}

fn object_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}/{key}") }
}

fn failed(operation: &'static str, key: &str, message: String) -> StoreError {
    StoreError::Failed { operation, key: key.to_owned(), message }
}

/// An error with its chain of causes, `: `-separated (SDK errors hide the useful part in a cause).
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

/// A local lake file is written and synced this much at a time. One sync of a whole file (tens
/// of MB) keeps the disk busy long enough to stall the WAL's fsyncs on the same disk, which
/// every acknowledgement waits for; measured, it cost 50–100 ms stalls and 429s at half load.
const LOCAL_SYNC_CHUNK_BYTES: usize = 1024 * 1024;

/// Write to a hidden temporary file in the same folder, fsync, rename, fsync the folder: a
/// reader sees the whole file or nothing (engines skip names starting with `.`).
fn write_local(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let folder = path.parent().ok_or_else(|| std::io::Error::other("key has no folder"))?;
    std::fs::create_dir_all(folder)?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| std::io::Error::other("bad file name"))?;
    let tmp = folder.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    for chunk in bytes.chunks(LOCAL_SYNC_CHUNK_BYTES) {
        file.write_all(chunk)?;
        file.sync_data()?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(folder)?.sync_all()
}

fn list_local(root: &Path, start: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    let mut stack = vec![start.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.')
                && let Ok(relative) = path.strip_prefix(root)
            {
                keys.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    keys
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
        let store = ObjectStore::open(LakeLocation::Local(dir.path().to_owned()), &S3Settings::default()).await;
        store.put("events/a/1.parquet", Bytes::from_static(b"one")).await.expect("put");
        store.put("events/a/1.parquet", Bytes::from_static(b"uno")).await.expect("replace");
        store.put("events/b/2.parquet", Bytes::from_static(b"two")).await.expect("put");
        assert_eq!(store.list("events").await.expect("list"), ["events/a/1.parquet", "events/b/2.parquet"]);
        assert_eq!(store.get("events/a/1.parquet").await.expect("get").as_deref(), Some(&b"uno"[..]));
        assert_eq!(store.get("nope").await.expect("get"), None);
    }
}
