//! The delivery engine: events waiting for one destination, sent in requests within the
//! vendor's limits, each event's fate decided from the vendor's answer through the one retry
//! policy. Both live delivery (fed from the WAL) and replay (fed from the lake or the dead
//! letters) drive it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use inlet_segment::StoredEvent;
use tokio::time::Instant;

use crate::consent::ConsentConfig;
use crate::metrics::DestinationMetrics;
use crate::retry::RetryPolicy;
use crate::status::{DestinationStatus, RecentError};
use crate::vendor::{Api, Mapped, Outcome, Payload, Vendor, pack};

/// Response bodies kept in a dead letter are cut to this size.
const MAX_KEPT_RESPONSE_BYTES: usize = 4096;
/// Error messages kept for the status report are cut to this many characters.
const MAX_STATUS_MESSAGE_CHARS: usize = 300;

/// One vendor API call's share of an event the engine is responsible for, identified by the
/// caller's `key` (a WAL LSN). Most events have one; Amplitude's `group` has two.
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
    /// The user's consent does not cover the destination's categories: not sent, not retried.
    WithoutConsent,
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

/// What one lane of concurrent requests ended with.
#[derive(Debug, Default)]
struct LaneResult {
    finished: Vec<Resolved>,
    waiting: Vec<Item>,
}

#[derive(Debug)]
pub struct Outbox {
    vendor: Vendor,
    policy: RetryPolicy,
    http: reqwest::Client,
    metrics: DestinationMetrics,
    consent: ConsentConfig,
    status: Arc<DestinationStatus>,
    max_concurrent_requests: usize,
    items: Vec<Item>,
    /// Events with several payloads, some still waiting: payloads left and the fate so far.
    partial: HashMap<u64, (usize, Fate)>,
}

/// What an outbox is made of besides its vendor.
#[derive(Debug)]
pub struct OutboxParts {
    pub policy: RetryPolicy,
    pub http: reqwest::Client,
    pub metrics: DestinationMetrics,
    pub consent: ConsentConfig,
    pub status: Arc<DestinationStatus>,
    /// Requests in flight at once, at most.
    pub max_concurrent_requests: usize,
}

impl Outbox {
    pub fn new(vendor: Vendor, parts: OutboxParts) -> Outbox {
        Outbox {
            vendor,
            policy: parts.policy,
            http: parts.http,
            metrics: parts.metrics,
            consent: parts.consent,
            status: parts.status,
            max_concurrent_requests: parts.max_concurrent_requests.max(1),
            items: Vec::new(),
            partial: HashMap::new(),
        }
    }

    /// Payloads waiting (about one per event).
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

    /// Accepts an event; returns its fate at once when consent or mapping decides it.
    pub fn push(&mut self, key: u64, stored: Arc<StoredEvent>) -> Option<Resolved> {
        if !self.consent.allows(&stored.event) {
            self.metrics.without_consent.inc();
            return Some(Resolved { key, stored, fate: Fate::WithoutConsent });
        }
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
            Mapped::Ready(payloads) => {
                if payloads.len() > 1 {
                    self.partial.insert(key, (payloads.len(), Fate::Delivered));
                }
                for payload in payloads {
                    self.items.push(Item {
                        key,
                        stored: Arc::clone(&stored),
                        payload,
                        attempts: 0,
                        first_attempt: None,
                        not_before: Instant::now(),
                        last_failure: None,
                    });
                }
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
        let items = std::mem::take(&mut self.items);
        items.into_iter().filter_map(|item| self.finish(dead_letter(item, reason, detail.to_owned()))).collect()
    }

    /// Sends every due event once, in as few requests as the limits allow, up to
    /// `max_concurrent_requests` at a time, and returns the events whose fate is now decided.
    /// Events past the deadline are dead-lettered first.
    ///
    /// Per-identity order: the due payloads are split into lanes by their `order_key` (device or
    /// client), each lane sends its requests one after another, and the lanes run concurrently;
    /// so one identity's payloads are never in two requests in flight at once. Only as many
    /// lanes as the payloads need requests are opened: a small round is still one request.
    pub async fn send_due(&mut self) -> Vec<Resolved> {
        let now = Instant::now();
        let wall = Utc::now();
        let (due, waiting): (Vec<Item>, Vec<Item>) =
            std::mem::take(&mut self.items).into_iter().partition(|i| i.not_before <= now);
        self.items = waiting;
        let mut finished = Vec::new();
        let mut due_items = Vec::with_capacity(due.len());
        for item in due {
            if item.first_attempt.is_some_and(|first| self.policy.expired(first, wall)) {
                let detail = format!("not delivered within {} s", self.policy.deadline.as_secs());
                finished.push(dead_letter(item, "deadline_exceeded", detail));
            } else {
                due_items.push(item);
            }
        }
        let lanes = self.lanes(due_items);
        let results = futures_util::future::join_all(lanes.into_iter().map(|lane| self.send_lane(lane, wall))).await;
        for lane in results {
            finished.extend(lane.finished);
            self.items.extend(lane.waiting);
        }
        self.items.sort_by_key(|i| i.key);
        finished.into_iter().filter_map(|r| self.finish(r)).collect()
    }

    /// Splits due payloads into lanes by identity; see [`Outbox::send_due`].
    fn lanes(&self, items: Vec<Item>) -> Vec<Vec<Item>> {
        if items.is_empty() {
            return Vec::new();
        }
        let payloads: Vec<&Payload> = items.iter().map(|i| &i.payload).collect();
        let requests = pack(&payloads, |api| self.vendor.limits(api)).len();
        let count = self.max_concurrent_requests.min(requests).max(1);
        let mut lanes: Vec<Vec<Item>> = (0..count).map(|_| Vec::new()).collect();
        for item in items {
            let lane = (item.payload.order_key % count as u64) as usize;
            lanes[lane].push(item);
        }
        lanes.retain(|lane| !lane.is_empty());
        lanes
    }

    /// Sends one lane's payloads, request after request.
    async fn send_lane(&self, items: Vec<Item>, wall: DateTime<Utc>) -> LaneResult {
        let mut result = LaneResult::default();
        let mut queue = vec![items];
        while let Some(batch) = queue.pop() {
            if batch.is_empty() {
                continue;
            }
            let payloads: Vec<&Payload> = batch.iter().map(|i| &i.payload).collect();
            let requests = pack(&payloads, |api| self.vendor.limits(api));
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
                            result.finished.push(Resolved {
                                key: item.key,
                                stored: item.stored,
                                fate: Fate::Delivered,
                            });
                        }
                        Outcome::DeadLetter { reason } => {
                            item.attempts += 1;
                            item.last_failure = failure.clone();
                            result.finished.push(dead_letter(item, reason, "refused by the destination".into()));
                        }
                        Outcome::Resend => result.waiting.push(item),
                        Outcome::Split => split.push(item),
                        Outcome::Hold(hold) => {
                            item.attempts += 1;
                            item.last_failure = failure.clone();
                            item.not_before = Instant::now() + hold;
                            self.metrics.retried.inc();
                            result.waiting.push(item);
                        }
                        Outcome::Retry { after } => {
                            item.attempts += 1;
                            item.last_failure = failure.clone();
                            item.not_before = Instant::now() + self.policy.backoff(item.attempts, after);
                            self.metrics.retried.inc();
                            result.waiting.push(item);
                        }
                    }
                }
                match split.len() {
                    0 => {}
                    1 => {
                        let item = split.pop().expect("one");
                        result.finished.push(dead_letter(
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
        result
    }

    /// One payload's fate; the event's, once its last payload has one (a dead-lettered payload
    /// makes the event dead-lettered: replaying it repeats the delivered parts, which the
    /// vendor dedupes or applies again to the same effect).
    fn finish(&mut self, resolved: Resolved) -> Option<Resolved> {
        let Resolved { key, stored, fate } = resolved;
        let fate = match self.partial.get_mut(&key) {
            None => fate,
            Some((left, so_far)) => {
                *left -= 1;
                if matches!(fate, Fate::DeadLettered(_)) {
                    *so_far = fate;
                }
                if *left > 0 {
                    return None;
                }
                self.partial.remove(&key).map(|(_, fate)| fate).expect("the entry was just read")
            }
        };
        if fate == Fate::Delivered {
            self.metrics.delivered.inc();
        }
        Some(Resolved { key, stored, fate })
    }

    /// One request; one outcome per item, and the failure to remember if it failed.
    async fn send(&self, items: &[Item]) -> (Vec<Outcome>, Option<Failure>) {
        let api = items[0].payload.api;
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
                self.record_error(api, &failure, items.len());
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
                self.record_error(api, &failure, items.len());
                return (vec![Outcome::Retry { after: None }; items.len()], Some(failure));
            }
        };
        self.metrics.observe_request(status_class(status.as_u16()), started.elapsed());
        let mut outcomes = self.vendor.interpret(api, status, &headers, &body, items.len());
        outcomes.resize(items.len(), Outcome::Retry { after: None });
        let failure =
            (!status.is_success()).then(|| Failure { status: Some(status.as_u16()), response: truncate(body) });
        if let Some(failure) = &failure {
            tracing::debug!(status = failure.status, events = items.len(), "destination refused a request");
            self.record_error(api, failure, items.len());
        }
        (outcomes, failure)
    }

    fn record_error(&self, api: Api, failure: &Failure, events: usize) {
        self.status.record_error(RecentError {
            at: Utc::now(),
            api: api.name(),
            status: failure.status,
            events,
            message: failure.response.chars().take(MAX_STATUS_MESSAGE_CHARS).collect(),
        });
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

/// `connections` idle connections are kept per host, one per concurrent request.
pub fn http_client(timeout: Duration, connections: usize) -> reqwest::Client {
    // reqwest is built without a default TLS provider; ring is the one the workspace uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(connections)
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
        let error = http_client(Duration::from_secs(5), 1).post(&url).send().await.expect_err("nothing listens");
        assert!(error.to_string().contains("the-secret-value"), "reqwest's own text has the URL: {error}");
        let text = request_error_text(&error);
        assert!(!text.contains("the-secret-value"), "{text}");
        assert!(text.contains("<url>"), "{text}");
    }
}
