//! Vendors' user deletion APIs: what a `delete` regulation asks of each destination.
//!
//! - **Amplitude**, User Privacy API: `POST {deletion_endpoint}` with HTTP Basic auth
//!   (`api_key:secret_key`) and `{"user_ids": [...], "requester": "...", "ignore_invalid_id":
//!   true}`, at most [`AMPLITUDE_IDS_PER_REQUEST`] ids a request. Amplitude deletes by user id
//!   (and its own amplitude id): a regulation's anonymous ids have no deletion call there, and
//!   Amplitude erases a device's events with the user they were merged into. Amplitude runs
//!   the deletion 10–13 days later; `200` means the request was recorded.
//! - **GA4**: not sent. Its User Deletion API needs an OAuth service account, which this
//!   destination does not hold; the step says so, and the property's user can be deleted in
//!   GA4's user explorer.
//!
//! Answers are classified by the one retry policy ([`RetryPolicy`]): retriable statuses and
//! transport errors are tried again with its backoff, up to its deadline; any other refusal is
//! final.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::config::{DestinationConfig, VendorConfig};
use crate::outbox::{http_client, request_error_text};
use crate::retry::{RetryPolicy, retry_after};

pub const AMPLITUDE_DELETION_ENDPOINT: &str = "https://amplitude.com/api/2/deletions/users";
/// Ids Amplitude takes in one deletion request.
pub const AMPLITUDE_IDS_PER_REQUEST: usize = 100;
/// A deletion request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a destination can do with a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorDeletion {
    Amplitude {
        endpoint: String,
        api_key: String,
        secret_key: String,
    },
    /// Not possible with this configuration, and why (shown in the regulation's status).
    Unavailable(&'static str),
}

impl VendorDeletion {
    pub fn of(config: &DestinationConfig) -> VendorDeletion {
        match &config.vendor {
            VendorConfig::Amplitude { api_key, secret_key: Some(secret_key), deletion_endpoint, .. } => {
                VendorDeletion::Amplitude {
                    endpoint: deletion_endpoint.clone().unwrap_or_else(|| AMPLITUDE_DELETION_ENDPOINT.to_owned()),
                    api_key: api_key.clone(),
                    secret_key: secret_key.clone(),
                }
            }
            VendorConfig::Amplitude { secret_key: None, .. } => {
                VendorDeletion::Unavailable("no secret_key configured: Amplitude's User Privacy API needs it")
            }
            VendorConfig::Ga4 { .. } => VendorDeletion::Unavailable(
                "GA4's User Deletion API needs an OAuth service account, which Inlet does not hold: \
                 delete the user in GA4's user explorer",
            ),
        }
    }
}

/// One request's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionOutcome {
    Accepted,
    /// Worth another attempt, not before `after` (the server's `Retry-After`), if given.
    Retry {
        detail: String,
        after: Option<Duration>,
    },
    Refused {
        detail: String,
    },
}

/// The HTTP client deletion requests go through.
#[derive(Debug, Clone)]
pub struct DeletionClient {
    http: reqwest::Client,
}

impl Default for DeletionClient {
    fn default() -> DeletionClient {
        DeletionClient { http: http_client(REQUEST_TIMEOUT) }
    }
}

impl DeletionClient {
    /// Asks Amplitude to delete `user_ids` (at most [`AMPLITUDE_IDS_PER_REQUEST`]).
    pub async fn amplitude(
        &self,
        endpoint: &str,
        api_key: &str,
        secret_key: &str,
        user_ids: &[String],
        requester: &str,
    ) -> DeletionOutcome {
        amplitude_delete(&self.http, endpoint, api_key, secret_key, user_ids, requester).await
    }
}

async fn amplitude_delete(
    http: &reqwest::Client,
    endpoint: &str,
    api_key: &str,
    secret_key: &str,
    user_ids: &[String],
    requester: &str,
) -> DeletionOutcome {
    debug_assert!(user_ids.len() <= AMPLITUDE_IDS_PER_REQUEST);
    let body = json!({"user_ids": user_ids, "requester": requester, "ignore_invalid_id": true});
    let sent = http.post(endpoint).basic_auth(api_key, Some(secret_key)).json(&body).send().await;
    let response = match sent {
        Ok(response) => response,
        Err(error) if RetryPolicy::is_retriable_error(&error) => {
            return DeletionOutcome::Retry { detail: request_error_text(&error), after: None };
        }
        Err(error) => return DeletionOutcome::Refused { detail: request_error_text(&error) },
    };
    let status = response.status();
    let after = retry_after(response.headers(), Utc::now());
    let text: String = response.text().await.unwrap_or_default().chars().take(512).collect();
    if status.is_success() {
        DeletionOutcome::Accepted
    } else if RetryPolicy::is_retriable_status(status) {
        DeletionOutcome::Retry { detail: format!("HTTP {status}: {text}"), after }
    } else {
        DeletionOutcome::Refused { detail: format!("HTTP {status}: {text}") }
    }
}
