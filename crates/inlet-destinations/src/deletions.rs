//! Vendors' user deletion APIs: what a `delete` regulation asks of each destination.
//!
//! - **Amplitude**, User Privacy API: `POST {deletion_endpoint}` with HTTP Basic auth
//!   (`api_key:secret_key`) and `{"user_ids": [...], "requester": "...", "ignore_invalid_id":
//!   true}`, at most [`AMPLITUDE_IDS_PER_REQUEST`] ids a request. Amplitude deletes by user id
//!   (and its own amplitude id): a regulation's anonymous ids have no deletion call there, and
//!   Amplitude erases a device's events with the user they were merged into. Amplitude runs
//!   the deletion 10–13 days later; `200` means the request was recorded.
//! - **GA4**, User Deletion API: `POST {deletion_endpoint}` (`userDeletionRequests:upsert`),
//!   one id per request: each user id as `USER_ID`, each anonymous id as `CLIENT_ID` (the id
//!   the GA4 destination sends as `client_id`; with `client_id = "user_id"` the user ids too).
//!   Authorised by an OAuth2 access token from the service account's key (a JWT-bearer grant
//!   for the `analytics.user.deletion` scope at the key's `token_uri`), renewed before it
//!   expires. Quotas: 1.5 requests a second (requests are paced [`GA4_PACE`] apart) and 500 a
//!   day per property (`deletion_requests_per_day`; the worker counts them per Pacific day,
//!   when Google's quotas reset, and leaves the rest for the next day).
//!
//! Answers are classified by the one retry policy ([`RetryPolicy`]): retriable statuses and
//! transport errors are tried again with its backoff, up to its deadline; any other refusal is
//! final.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use inlet_privacy::Targets;
use serde::Deserialize;
use serde_json::json;

use crate::config::{ClientIdFrom, DestinationConfig, VendorConfig};
use crate::outbox::{http_client, request_error_text};
use crate::retry::{RetryPolicy, retry_after};

pub const AMPLITUDE_DELETION_ENDPOINT: &str = "https://amplitude.com/api/2/deletions/users";
/// Ids Amplitude takes in one deletion request.
pub const AMPLITUDE_IDS_PER_REQUEST: usize = 100;
pub const GA4_DELETION_ENDPOINT: &str =
    "https://www.googleapis.com/analytics/v3/userDeletion/userDeletionRequests:upsert";
const GA4_SCOPE: &str = "https://www.googleapis.com/auth/analytics.user.deletion";
/// GA4 allows 1.5 requests a second per property.
pub const GA4_PACE: Duration = Duration::from_millis(700);
/// A deletion request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// An access token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a Google service account's JSON key that the JWT-bearer grant needs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

impl ServiceAccount {
    pub fn read(path: &Path) -> Result<ServiceAccount, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let account: ServiceAccount =
            serde_json::from_str(&text).map_err(|e| format!("{} is not a service account key: {e}", path.display()))?;
        jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("{}: private_key is not an RSA key: {e}", path.display()))?;
        Ok(account)
    }
}

/// How an id is named to a vendor's deletion API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    UserId,
    /// GA4's `CLIENT_ID`: the anonymous id the destination sent as `client_id`.
    ClientId,
}

/// What a destination can do with a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorDeletion {
    Amplitude {
        endpoint: String,
        api_key: String,
        secret_key: String,
    },
    Ga4 {
        endpoint: String,
        property_id: String,
        account: ServiceAccount,
        per_day: u32,
        client_id_from: ClientIdFrom,
    },
    /// Not possible with this configuration, and why (shown in the regulation's status).
    Unavailable(String),
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
            VendorConfig::Amplitude { secret_key: None, .. } => VendorDeletion::Unavailable(
                "no secret_key configured: Amplitude's User Privacy API needs it".to_owned(),
            ),
            VendorConfig::Ga4 {
                property_id: Some(property_id),
                service_account_file: Some(file),
                deletion_endpoint,
                deletion_requests_per_day,
                client_id,
                ..
            } => match ServiceAccount::read(file) {
                Ok(account) => VendorDeletion::Ga4 {
                    endpoint: deletion_endpoint.clone().unwrap_or_else(|| GA4_DELETION_ENDPOINT.to_owned()),
                    property_id: property_id.clone(),
                    account,
                    per_day: *deletion_requests_per_day,
                    client_id_from: *client_id,
                },
                Err(why) => VendorDeletion::Unavailable(why),
            },
            VendorConfig::Ga4 { .. } => VendorDeletion::Unavailable(
                "no property_id and service_account_file configured: GA4's User Deletion API needs them".to_owned(),
            ),
        }
    }

    /// The requests that delete `targets`, in a stable order (a worker resumes by index).
    pub fn requests(&self, targets: &Targets) -> Vec<Vec<(IdKind, String)>> {
        let users = targets.user_ids.iter().map(|id| (IdKind::UserId, id.clone()));
        match self {
            VendorDeletion::Amplitude { .. } => {
                let ids: Vec<_> = users.collect();
                ids.chunks(AMPLITUDE_IDS_PER_REQUEST).map(<[_]>::to_vec).collect()
            }
            VendorDeletion::Ga4 { client_id_from, .. } => {
                let user_client_ids = match client_id_from {
                    ClientIdFrom::UserId => targets.user_ids.iter().collect(),
                    ClientIdFrom::AnonymousId => Vec::new(),
                };
                let clients =
                    targets.anonymous_ids.iter().chain(user_client_ids).map(|id| (IdKind::ClientId, id.clone()));
                users.chain(clients).map(|id| vec![id]).collect()
            }
            VendorDeletion::Unavailable(_) => Vec::new(),
        }
    }

    /// The vendor's daily request quota, if it has one.
    pub fn requests_per_day(&self) -> Option<u32> {
        match self {
            VendorDeletion::Ga4 { per_day, .. } => Some(*per_day),
            _ => None,
        }
    }

    /// The least time between two requests.
    pub fn pace(&self) -> Option<Duration> {
        matches!(self, VendorDeletion::Ga4 { .. }).then_some(GA4_PACE)
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

/// The HTTP client deletion requests go through, with GA4's access token once it has one.
#[derive(Debug)]
pub struct DeletionClient {
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl Default for DeletionClient {
    fn default() -> DeletionClient {
        DeletionClient { http: http_client(REQUEST_TIMEOUT, 1), token: Mutex::new(None) }
    }
}

impl DeletionClient {
    /// Sends one request of [`VendorDeletion::requests`].
    pub async fn send(&self, deletion: &VendorDeletion, ids: &[(IdKind, String)], requester: &str) -> DeletionOutcome {
        match deletion {
            VendorDeletion::Amplitude { endpoint, api_key, secret_key } => {
                let user_ids: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
                amplitude_delete(&self.http, endpoint, api_key, secret_key, &user_ids, requester).await
            }
            VendorDeletion::Ga4 { endpoint, property_id, account, .. } => {
                let token = match self.ga4_token(account).await {
                    Ok(token) => token,
                    Err(outcome) => return outcome,
                };
                let mut outcome = DeletionOutcome::Accepted;
                for (kind, id) in ids {
                    let id_type = match kind {
                        IdKind::UserId => "USER_ID",
                        IdKind::ClientId => "CLIENT_ID",
                    };
                    let body = json!({
                        "kind": "analytics#userDeletionRequest",
                        "id": {"type": id_type, "userId": id},
                        "propertyId": property_id,
                    });
                    outcome =
                        classify(self.http.post(endpoint).bearer_auth(&token).json(&body).send().await, true).await;
                    if outcome != DeletionOutcome::Accepted {
                        break;
                    }
                }
                if matches!(&outcome, DeletionOutcome::Retry { detail, .. } if detail.starts_with("HTTP 401")) {
                    *self.token.lock().expect("never poisoned") = None;
                }
                outcome
            }
            VendorDeletion::Unavailable(why) => DeletionOutcome::Refused { detail: why.clone() },
        }
    }

    /// A current access token: the cached one, or a new one from a JWT-bearer grant.
    async fn ga4_token(&self, account: &ServiceAccount) -> Result<String, DeletionOutcome> {
        if let Some((token, expires)) = self.token.lock().expect("never poisoned").clone()
            && Instant::now() + TOKEN_MARGIN < expires
        {
            return Ok(token);
        }
        let now = Utc::now().timestamp();
        let claims = json!({
            "iss": account.client_email, "scope": GA4_SCOPE, "aud": account.token_uri,
            "iat": now, "exp": now + 3600,
        });
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| DeletionOutcome::Refused { detail: format!("the service account key: {e}") })?;
        let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)
            .map_err(|e| DeletionOutcome::Refused { detail: format!("signing the token request: {e}") })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &jwt)
            .finish();
        let sent = self
            .http
            .post(&account.token_uri)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await;
        let response = match sent {
            Ok(response) if response.status().is_success() => response,
            other => {
                return Err(match classify(other, false).await {
                    DeletionOutcome::Accepted => DeletionOutcome::Retry { detail: "no token".into(), after: None },
                    DeletionOutcome::Retry { detail, after } => {
                        DeletionOutcome::Retry { detail: format!("token: {detail}"), after }
                    }
                    DeletionOutcome::Refused { detail } => {
                        DeletionOutcome::Refused { detail: format!("token: {detail}") }
                    }
                });
            }
        };
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let token: Token = response
            .json()
            .await
            .map_err(|e| DeletionOutcome::Retry { detail: format!("token answer: {e}"), after: None })?;
        let expires = Instant::now() + Duration::from_secs(token.expires_in);
        *self.token.lock().expect("never poisoned") = Some((token.access_token.clone(), expires));
        Ok(token.access_token)
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
    classify(http.post(endpoint).basic_auth(api_key, Some(secret_key)).json(&body).send().await, false).await
}

/// A response's fate under the one retry policy. With `renewable_token`, a 401 is retried (with
/// a new access token).
async fn classify(sent: Result<reqwest::Response, reqwest::Error>, renewable_token: bool) -> DeletionOutcome {
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
    } else if RetryPolicy::is_retriable_status(status)
        || (renewable_token && status == reqwest::StatusCode::UNAUTHORIZED)
    {
        DeletionOutcome::Retry { detail: format!("HTTP {status}: {text}"), after }
    } else {
        DeletionOutcome::Refused { detail: format!("HTTP {status}: {text}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(users: usize, anonymous: &[&str]) -> Targets {
        Targets {
            user_ids: (0..users).map(|n| format!("u{n:03}")).collect(),
            anonymous_ids: anonymous.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn requests_follow_each_vendors_size_and_id_kinds() {
        let amplitude = VendorDeletion::Amplitude { endpoint: "e".into(), api_key: "k".into(), secret_key: "s".into() };
        let sizes: Vec<usize> = amplitude.requests(&targets(250, &["a"])).iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50], "user ids only, 100 a request");
        assert_eq!(amplitude.requests_per_day(), None);
        let account = ServiceAccount { client_email: "e".into(), private_key: String::new(), token_uri: "t".into() };
        let ga4 = |client_id_from| VendorDeletion::Ga4 {
            endpoint: "e".into(),
            property_id: "1".into(),
            account: account.clone(),
            per_day: 500,
            client_id_from,
        };
        let by_anonymous = ga4(ClientIdFrom::AnonymousId).requests(&targets(1, &["a1", "a2"]));
        assert_eq!(
            by_anonymous,
            vec![
                vec![(IdKind::UserId, "u000".to_owned())],
                vec![(IdKind::ClientId, "a1".to_owned())],
                vec![(IdKind::ClientId, "a2".to_owned())],
            ]
        );
        let by_user = ga4(ClientIdFrom::UserId).requests(&targets(1, &[]));
        assert_eq!(
            by_user,
            vec![vec![(IdKind::UserId, "u000".to_owned())], vec![(IdKind::ClientId, "u000".to_owned())]]
        );
        assert_eq!(ga4(ClientIdFrom::UserId).pace(), Some(GA4_PACE));
    }
}
