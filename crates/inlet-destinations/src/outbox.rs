//! The delivery engine: events waiting for one destination, sent in requests within the
//! vendor's limits, each event's fate decided from the vendor's answer through the one retry
//! policy. Both live delivery (fed from the WAL) and replay (fed from the lake or the dead
//! letters) drive it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use inlet_segment::StoredEvent;
use tokio::time::Instant;

use crate::metrics::DestinationMetrics;
use crate::retry::RetryPolicy;
use crate::vendor::{Mapped, Outcome, Payload, Vendor, pack};

/// Response bodies kept in a dead letter are cut to this size.
const MAX_KEPT_RESPONSE_BYTES: usize = 4096;

/// An event the engine is responsible for, identified by the caller's `key` (a WAL LSN).
#[derive(Debug)]
struct Item {
    key: u64,
    stored: Arc<StoredEvent>,
    payload: Payload,
    attempts: u32,
    first_attempt: Option<DateTime<Utc>>,
    not_before: Instant,
    last_failure: Option<Failure>,
}

/// The last failed attempt of an event, kept for its dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: Option<u16>,
    pub response: String,
}

/// How an event left the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    Delivered,
    /// Not for this destination (its message type is not sent).
    Skipped,
    DeadLettered(DeadLetterReason),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterReason {
    /// A bounded code (metrics label): `invalid_fields`, `deadline_exceeded`, `reserved_name`, …
    pub reason: &'static str,
    pub detail: String,
    pub status: Option<u16>,
    pub response: String,
    pub attempts: u32,
    pub first_attempt: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub key: u64,
    pub stored: Arc<StoredEvent>,
    pub fate: Fate,
}

#[derive(Debug)]
pub struct Outbox {
    vendor: Vendor,
    policy: RetryPolicy,
    http: reqwest::Client,
    metrics: DestinationMetrics,
    items: Vec<Item>,
}

impl Outbox {
    pub fn new(vendor: Vendor, policy: RetryPolicy, http: reqwest::Client, metrics: DestinationMetrics) -> Outbox {
        Outbox { vendor, policy, http, metrics, items: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The oldest key still waiting.
    pub fn min_key(&self) -> Option<u64> {
        self.items.iter().map(|i| i.key).min()
    }

    /// Accepts an event; returns its fate at once when mapping decides it (skipped, invalid).
    pub fn push(&mut self, key: u64, stored: Arc<StoredEvent>) -> Option<Resolved> {
        match self.vendor.map(&stored, Utc::now()) {
            Mapped::Skip => Some(Resolved { key, stored, fate: Fate::Skipped }),
            Mapped::Invalid { reason, detail } => Some(Resolved {
                key,
                stored,
                fate: Fate::DeadLettered(DeadLetterReason {
                    reason,
                    detail,
                    status: None,
                    response: String::new(),
                    attempts: 0,
                    first_attempt: None,
                }),
            }),
            Mapped::Ready(payload) => {
                self.items.push(Item {
                    key,
                    stored,
                    payload,
                    attempts: 0,
                    first_attempt: None,
                    not_before: Instant::now(),
                    last_failure: None,
                });
                None
            }
        }
    }

    /// The waiting event that came first in the feed.
    pub fn oldest(&self) -> Option<&StoredEvent> {
        self.items.iter().min_by_key(|i| i.key).map(|i| i.stored.as_ref())
    }

    /// When the next event becomes due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.items.iter().map(|i| i.not_before).min()
    }

    /// Gives up on every waiting event (the backlog budget is exhausted): they go to the dead
    /// letters with `reason`.
    pub fn shed(&mut self, reason: &'static str, detail: &str) -> Vec<Resolved> {
        std::mem::take(&mut self.items).into_iter().map(|item| dead_letter(item, reason, detail.to_owned())).collect()
    }

    /// Sends every due event once, in as few requests as the limits allow, and returns the
    /// events whose fate is now decided. Events past the deadline are dead-lettered first.
    pub async fn send_due(&mut self) -> Vec<Resolved> {
        let now = Instant::now();
        let wall = Utc::now();
        let mut resolved = Vec::new();
        let (due, waiting): (Vec<Item>, Vec<Item>) =
            std::mem::take(&mut self.items).into_iter().partition(|i| i.not_before <= now);
        self.items = waiting;
        let mut due_items = Vec::with_capacity(due.len());
        for item in due {
            if item.first_attempt.is_some_and(|first| self.policy.expired(first, wall)) {
                let detail = format!("not delivered within {} s", self.policy.deadline.as_secs());
                resolved.push(dead_letter(item, "deadline_exceeded", detail));
            } else {
                due_items.push(item);
            }
        }
        let mut queue = vec![due_items];
        while let Some(batch) = queue.pop() {
            if batch.is_empty() {
                continue;
            }
            let payloads: Vec<&Payload> = batch.iter().map(|i| &i.payload).collect();
            let requests = pack(&payloads, self.vendor.limits());
            let mut slots: Vec<Option<Item>> = batch.into_iter().map(Some).collect();
            for members in requests {
                let items: Vec<Item> =
                    members.iter().map(|&i| slots[i].take().expect("each index packed once")).collect();
                let (outcomes, failure) = self.send(&items).await;
                let mut split = Vec::new();
                for (mut item, outcome) in items.into_iter().zip(outcomes) {
                    item.first_attempt.get_or_insert(wall);
                    match outcome {
                        Outcome::Delivered => {
                            self.metrics.delivered.inc();
                            resolved.push(Resolved { key: item.key, stored: item.stored, fate: Fate::Delivered });
                        }
                        Outcome::DeadLetter { reason } => {
                            item.attempts += 1;
                            item.last_failure = failure.clone();
                            resolved.push(dead_letter(item, reason, "refused by the destination".into()));
                        }
                        Outcome::Resend => self.items.push(item),
                        Outcome::Split => split.push(item),
                        Outcome::Hold(hold) => {
                            item.attempts += 1;
                            item.last_failure = failure.clone();
                            item.not_before = Instant::now() + hold;
                            self.metrics.retried.inc();
                            self.items.push(item);
                        }
                        Outcome::Retry { after } => {
                            item.attempts += 1;
                            item.last_failure = failure.clone();
                            item.not_before = Instant::now() + self.policy.backoff(item.attempts, after);
                            self.metrics.retried.inc();
                            self.items.push(item);
                        }
                    }
                }
                match split.len() {
                    0 => {}
                    1 => {
                        let item = split.pop().expect("one");
                        resolved.push(dead_letter(
                            item,
                            "too_large",
                            "a single event over the request size limit".into(),
                        ));
                    }
                    n => {
                        let second = split.split_off(n / 2);
                        queue.push(second);
                        queue.push(split);
                    }
                }
            }
        }
        self.items.sort_by_key(|i| i.key);
        resolved
    }

    /// One request; one outcome per item, and the failure to remember if it failed.
    async fn send(&self, items: &[Item]) -> (Vec<Outcome>, Option<Failure>) {
        let payloads: Vec<&Payload> = items.iter().map(|i| &i.payload).collect();
        let request = self.vendor.request(&payloads);
        let started = std::time::Instant::now();
        let result = self
            .http
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, request.content_type)
            .body(request.body)
            .send()
            .await;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                self.metrics.observe_request("error", started.elapsed());
                let failure = Failure { status: None, response: request_error_text(&error) };
                let outcome = if RetryPolicy::is_retriable_error(&error) {
                    Outcome::Retry { after: None }
                } else {
                    Outcome::DeadLetter { reason: "request_failed" }
                };
                tracing::debug!(error = %failure.response, events = items.len(), "destination request failed");
                return (vec![outcome; items.len()], Some(failure));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) => {
                // The answer was cut: whatever the status said, we cannot know what was kept.
                self.metrics.observe_request("error", started.elapsed());
                let failure = Failure { status: Some(status.as_u16()), response: request_error_text(&error) };
                return (vec![Outcome::Retry { after: None }; items.len()], Some(failure));
            }
        };
        self.metrics.observe_request(status_class(status.as_u16()), started.elapsed());
        let mut outcomes = self.vendor.interpret(status, &headers, &body, items.len());
        outcomes.resize(items.len(), Outcome::Retry { after: None });
        let failure =
            (!status.is_success()).then(|| Failure { status: Some(status.as_u16()), response: truncate(body) });
        if let Some(failure) = &failure {
            tracing::debug!(status = failure.status, events = items.len(), "destination refused a request");
        }
        (outcomes, failure)
    }
}

/// An event given up on before it was ever attempted (the backlog budget).
pub fn shed_one(key: u64, stored: Arc<StoredEvent>, reason: &'static str, detail: &str) -> Resolved {
    let why = DeadLetterReason {
        reason,
        detail: detail.to_owned(),
        status: None,
        response: String::new(),
        attempts: 0,
        first_attempt: None,
    };
    Resolved { key, stored, fate: Fate::DeadLettered(why) }
}

fn dead_letter(item: Item, reason: &'static str, detail: String) -> Resolved {
    let failure = item.last_failure.unwrap_or(Failure { status: None, response: String::new() });
    Resolved {
        key: item.key,
        stored: item.stored,
        fate: Fate::DeadLettered(DeadLetterReason {
            reason,
            detail,
            status: failure.status,
            response: failure.response,
            attempts: item.attempts,
            first_attempt: item.first_attempt,
        }),
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn truncate(mut body: String) -> String {
    if body.len() > MAX_KEPT_RESPONSE_BYTES {
        let mut end = MAX_KEPT_RESPONSE_BYTES;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
    }
    body
}

/// A client for one destination: its request timeout, no idle pool surprises.
/// A failed request's text for logs and dead letters, without its URL: GA4 takes its
/// `api_secret` in the query string, and reqwest's error text starts with the URL.
pub(crate) fn request_error_text(error: &reqwest::Error) -> String {
    let text = inlet_lake::store::error_text(error);
    match error.url() {
        Some(url) => text.replace(url.as_str(), "<url>"),
        None => text,
    }
}

pub fn http_client(timeout: Duration) -> reqwest::Client {
    // reqwest is built without a default TLS provider; ring is the one the workspace uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("inlet/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with static settings builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_request_is_reported_without_its_url() {
        // A closed port on loopback: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}/mp/collect?measurement_id=G-1&api_secret=the-secret-value");
        let error = http_client(Duration::from_secs(5)).post(&url).send().await.expect_err("nothing listens");
        assert!(error.to_string().contains("the-secret-value"), "reqwest's own text has the URL: {error}");
        let text = request_error_text(&error);
        assert!(!text.contains("the-secret-value"), "{text}");
        assert!(text.contains("<url>"), "{text}");
    }
}
