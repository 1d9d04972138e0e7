//! GA4's User Deletion API and the OAuth2 token endpoint in front of it, as documented:
//!
//! - `POST /token`: the service account's JWT-bearer grant (`grant_type=urn:ietf:params:oauth:
//!   grant-type:jwt-bearer&assertion=JWT`). The JWT must be RS256-signed by the account's key,
//!   issued by its `client_email`, for this token URL (`aud`), unexpired, with the
//!   `https://www.googleapis.com/auth/analytics.user.deletion` scope. Answers an access token.
//! - `POST /analytics/v3/userDeletion/userDeletionRequests:upsert` with `Authorization: Bearer`:
//!   `{"kind": "analytics#userDeletionRequest", "id": {"type": "CLIENT_ID" | "USER_ID" |
//!   "APP_INSTANCE_ID", "userId": …}, "propertyId": …}`, one id per call. Quotas per property:
//!   1.5 requests a second (here: at most 3 in any 2 s) and 500 a day (settable), `429` with
//!   `RESOURCE_EXHAUSTED` beyond them. Answers the request with its `deletionRequestTime`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::lock;

pub const SCOPE: &str = "https://www.googleapis.com/auth/analytics.user.deletion";
pub const PROPERTY_ID: &str = "123456789";
pub const CLIENT_EMAIL: &str = "inlet-test@inlet-test.iam.gserviceaccount.com";
pub const UPSERT_PATH: &str = "/analytics/v3/userDeletion/userDeletionRequests:upsert";
/// The documented rate: 1.5 requests a second, counted over 2 s.
const RATE_WINDOW: Duration = Duration::from_secs(2);
const REQUESTS_PER_WINDOW: usize = 3;

#[derive(Debug)]
pub struct Ga4DeletionReceiver {
    /// The token URL the JWT's `aud` must name.
    token_url: String,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    public_key_pem: Option<String>,
    per_day: usize,
    tokens: HashSet<String>,
    recent: VecDeque<Instant>,
    /// Accepted requests: (id type, id).
    accepted: Vec<(String, String)>,
    refused: Vec<(u16, String)>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    scope: String,
}

impl Ga4DeletionReceiver {
    pub fn new(token_url: String) -> Ga4DeletionReceiver {
        let inner = Inner {
            public_key_pem: None,
            per_day: 500,
            tokens: HashSet::new(),
            recent: VecDeque::new(),
            accepted: Vec::new(),
            refused: Vec::new(),
        };
        Ga4DeletionReceiver { token_url, inner: Mutex::new(inner) }
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The service account's public key (PEM): tokens are granted to JWTs it verifies.
    pub fn set_public_key(&self, pem: &str) {
        lock(&self.inner).public_key_pem = Some(pem.to_owned());
    }

    /// The daily quota (500 unless set).
    pub fn set_requests_per_day(&self, per_day: usize) {
        lock(&self.inner).per_day = per_day;
    }

    pub fn accepted(&self) -> Vec<(String, String)> {
        lock(&self.inner).accepted.clone()
    }

    /// Refused requests: status and reason.
    pub fn refused(&self) -> Vec<(u16, String)> {
        lock(&self.inner).refused.clone()
    }
}

pub fn router(state: Arc<Ga4DeletionReceiver>) -> Router {
    Router::new().route("/token", post(token)).route(UPSERT_PATH, post(upsert)).with_state(state)
}

fn error(state: &Ga4DeletionReceiver, status: StatusCode, reason: &str, message: &str) -> Response {
    lock(&state.inner).refused.push((status.as_u16(), reason.to_owned()));
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": reason}});
    (status, axum::Json(body)).into_response()
}

async fn token(State(state): State<Arc<Ga4DeletionReceiver>>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return error(&state, StatusCode::BAD_REQUEST, "unsupported_grant_type", "jwt-bearer grants only");
    }
    let Some(assertion) = field("assertion") else {
        return error(&state, StatusCode::BAD_REQUEST, "invalid_request", "no assertion");
    };
    let Some(pem) = lock(&state.inner).public_key_pem.clone() else {
        return error(&state, StatusCode::UNAUTHORIZED, "invalid_client", "no service account known");
    };
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).expect("a valid public key was set");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[state.token_url.as_str()]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return error(&state, StatusCode::BAD_REQUEST, "invalid_grant", &format!("invalid JWT: {e}")),
    };
    if !claims.scope.split(' ').any(|s| s == SCOPE) {
        return error(&state, StatusCode::BAD_REQUEST, "invalid_scope", "the analytics.user.deletion scope is needed");
    }
    let access_token = format!("ya29.test-{}", lock(&state.inner).tokens.len());
    lock(&state.inner).tokens.insert(access_token.clone());
    axum::Json(json!({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

async fn upsert(State(state): State<Arc<Ga4DeletionReceiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| lock(&state.inner).tokens.contains(token)) {
        return error(&state, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "a valid access token is required");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(&state, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "invalid JSON");
    };
    let id_type = request["id"]["type"].as_str().unwrap_or_default().to_owned();
    let id = request["id"]["userId"].as_str().unwrap_or_default().to_owned();
    if request["kind"] != "analytics#userDeletionRequest"
        || !["CLIENT_ID", "USER_ID", "APP_INSTANCE_ID"].contains(&id_type.as_str())
        || id.is_empty()
    {
        return error(&state, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "kind, id.type and id.userId are required");
    }
    if request["propertyId"] != PROPERTY_ID {
        return error(&state, StatusCode::FORBIDDEN, "PERMISSION_DENIED", "unknown propertyId");
    }
    {
        let mut inner = lock(&state.inner);
        let now = Instant::now();
        while inner.recent.front().is_some_and(|at| now.duration_since(*at) > RATE_WINDOW) {
            inner.recent.pop_front();
        }
        let over_rate = inner.recent.len() >= REQUESTS_PER_WINDOW;
        let over_day = inner.accepted.len() >= inner.per_day;
        if over_rate || over_day {
            drop(inner);
            let which = if over_day { "requests per day per property" } else { "requests per second per property" };
            return error(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                &format!("quota exceeded: {which}"),
            );
        }
        inner.recent.push_back(now);
        inner.accepted.push((id_type.clone(), id.clone()));
    }
    axum::Json(json!({
        "kind": "analytics#userDeletionRequest",
        "id": {"type": id_type, "userId": id},
        "propertyId": PROPERTY_ID,
        "deletionRequestTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
    .into_response()
}
