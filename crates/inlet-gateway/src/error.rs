//! The one error type of the HTTP boundary, and its one mapping to status codes.
//!
//! Statuses are chosen for the official SDKs' retry rules (see `docs/api.md`): 400/401/404/413/415
//! are permanent (every SDK drops the batch), 408/429/503 are retried by every SDK. A client's
//! own oversized input is a 4xx, never a 503: a 503 is retried forever. Every `429` says which
//! budget was full in its code, so one source or client being limited is told apart from the
//! gateway being overloaded.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inlet_segment::{Rejection, RequestError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no write key: send it as HTTP Basic username or as `writeKey` in the body")]
    MissingWriteKey,
    #[error("unknown write key")]
    InvalidWriteKey,
    #[error("malformed Authorization header: {0}")]
    InvalidAuthorization(&'static str),
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The only message of a single-message request was refused.
    #[error("{}", .0.message)]
    Rejected(Rejection),
    /// Every message of a batch was refused.
    #[error("none of the {} messages was accepted", .0.len())]
    AllRejected(Vec<ItemError>),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("body is not valid {encoding}: {detail}")]
    InvalidEncoding { encoding: &'static str, detail: String },
    #[error("Content-Encoding {0:?} is not supported (use gzip, deflate or none)")]
    UnsupportedEncoding(String),
    #[error("request body did not arrive within {0} seconds")]
    BodyTimeout(u64),
    #[error("request body arrived slower than {min_bytes_per_sec} bytes a second")]
    BodyTooSlow { min_bytes_per_sec: u64 },
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    #[error("too many requests in flight; retry after the delay in Retry-After")]
    Overloaded,
    #[error("too many requests in flight from this client; retry after the delay in Retry-After")]
    ClientOverloaded,
    #[error("this source holds its share of the requests in flight; retry after the delay in Retry-After")]
    SourceOverloaded,
    #[error("this source is over its configured event rate; retry after the delay in Retry-After")]
    SourceRateLimited { retry_after_secs: u32 },
    #[error(
        "this source's events hold its share of the write-ahead log's disk budget; retry after the delay in Retry-After"
    )]
    SourceStorageFull,
    #[error("too many failed authentications from this client; retry after the delay in Retry-After")]
    AuthThrottled,
    #[error("too many refused requests from this client; retry after the delay in Retry-After")]
    ClientThrottled,
    #[error(
        "the request's events add up to more than {limit} bytes once stored (the batch's context is stored with each)"
    )]
    StoredTooLarge { limit: usize },
    #[error("the write-ahead log is over its disk budget; retry after the delay in Retry-After")]
    StorageFull,
    #[error("events cannot be stored right now; retry after the delay in Retry-After")]
    StorageUnavailable,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

/// One refused message of a batch, as reported to the client.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ItemError {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [ItemError]>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingWriteKey | ApiError::InvalidWriteKey | ApiError::InvalidAuthorization(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Request(RequestError::TooManyEvents { .. } | RequestError::BatchContextTooLarge { .. })
            | ApiError::PayloadTooLarge { .. }
            | ApiError::StoredTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Request(_)
            | ApiError::Rejected(_)
            | ApiError::AllRejected(_)
            | ApiError::InvalidEncoding { .. }
            | ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout(_) | ApiError::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded
            | ApiError::ClientOverloaded
            | ApiError::SourceOverloaded
            | ApiError::SourceRateLimited { .. }
            | ApiError::SourceStorageFull
            | ApiError::AuthThrottled
            | ApiError::ClientThrottled => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StorageFull | ApiError::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable code in the JSON body and the `code` metric label.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingWriteKey => "missing_write_key",
            ApiError::InvalidWriteKey => "invalid_write_key",
            ApiError::InvalidAuthorization(_) => "invalid_authorization",
            ApiError::Request(e) => e.code(),
            ApiError::Rejected(r) => r.reason.code(),
            ApiError::AllRejected(_) => "all_rejected",
            ApiError::PayloadTooLarge { .. } => "request_too_large",
            ApiError::InvalidEncoding { .. } => "invalid_encoding",
            ApiError::UnsupportedEncoding(_) => "unsupported_encoding",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::BodyTooSlow { .. } => "body_too_slow",
            ApiError::BodyRead(_) => "invalid_body",
            ApiError::Overloaded => "overloaded",
            ApiError::ClientOverloaded => "client_overloaded",
            ApiError::SourceOverloaded => "source_overloaded",
            ApiError::SourceRateLimited { .. } => "source_rate_limited",
            ApiError::SourceStorageFull => "source_storage_full",
            ApiError::AuthThrottled => "auth_throttled",
            ApiError::ClientThrottled => "client_throttled",
            ApiError::StoredTooLarge { .. } => "stored_request_too_large",
            ApiError::StorageFull => "storage_full",
            ApiError::StorageUnavailable => "storage_unavailable",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// Seconds a client should wait before retrying, for the retriable errors.
    fn retry_after_secs(&self) -> Option<u32> {
        match self {
            ApiError::Overloaded | ApiError::ClientOverloaded | ApiError::SourceOverloaded => Some(1),
            ApiError::SourceRateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::SourceStorageFull => Some(30),
            ApiError::AuthThrottled | ApiError::ClientThrottled => Some(10),
            ApiError::StorageUnavailable => Some(5),
            ApiError::StorageFull => Some(30),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors = match &self {
            ApiError::AllRejected(errors) => Some(errors.as_slice()),
            _ => None,
        };
        let body = ErrorBody { code: self.code(), message: self.to_string(), errors };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Why the gateway could not start, or why its lake writer ended badly: the error type of
/// [`AppState::open`](crate::AppState::open) and the start and stop of the background tasks.
/// Each names the file or setting at fault; the binary prints it and exits.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A setting that [`Config::validate`](crate::Config::validate) cannot check on its own.
    #[error("{setting}: {message}")]
    Setting { setting: &'static str, message: String },
    #[error("{action} {path}: {source}")]
    File { action: &'static str, path: std::path::PathBuf, source: std::io::Error },
    #[error("write-ahead log: {0}")]
    Wal(#[from] inlet_wal::WalError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Plan(#[from] inlet_plans::PlanError),
    #[error("lake: {0}")]
    LakeStore(#[from] inlet_lake::store::StoreError),
    #[error("lake writer: {0}")]
    LakeWriter(#[from] inlet_lake_writer::LakeError),
    #[error("lake writer task: {0}")]
    LakeTask(#[from] tokio::task::JoinError),
    #[error("destination {name}: {source}")]
    Destination { name: String, source: inlet_destinations::delivery::DeliveryError },
}

impl StartupError {
    /// An I/O error on `path`, saying what was being done (`"reading"`, `"writing"`, …).
    pub(crate) fn file(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StartupError {
        let path = path.to_path_buf();
        move |source| StartupError::File { action, path, source }
    }
}
