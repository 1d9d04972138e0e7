//! The one retry policy for outbound HTTP: what is retriable, how long to wait, and when to give
//! up. Every destination goes through it, so a vendor's quirks live in its response
//! interpretation, never in a private retry loop.

use std::time::Duration;

use chrono::{DateTime, Utc};
use inlet_lake::Backoff;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Statuses worth another attempt (Segment's list): timeouts, locks, throttling and server
/// errors. Any other 4xx will fail the same way again, so it goes to the dead letters.
const RETRIABLE_STATUSES: [u16; 13] = [408, 423, 429, 500, 502, 503, 504, 505, 506, 507, 508, 509, 511];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay ceiling of the first retry; doubled per attempt.
    pub base: Duration,
    /// Largest delay ceiling.
    pub max: Duration,
    /// After this long since the first attempt, an event is dead-lettered instead of retried.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(600),
            deadline: Duration::from_secs(4 * 3600),
        }
    }
}

impl RetryPolicy {
    /// Whether a response status is worth retrying.
    pub fn is_retriable_status(status: StatusCode) -> bool {
        RETRIABLE_STATUSES.contains(&status.as_u16()) || matches!(status.as_u16(), 598 | 599)
    }

    /// Whether a transport error (no response) is worth retrying: connection refused or reset,
    /// timeouts, broken bodies. Only a request we could not even build is not.
    pub fn is_retriable_error(error: &reqwest::Error) -> bool {
        !error.is_builder()
    }

    /// The delay before attempt `attempt + 1` (`attempt` ≥ 1): the shared full-jitter backoff
    /// (`inlet_lake::Backoff`), with a server's `Retry-After` as a floor.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let jittered = Backoff { base: self.base, max: self.max }.delay(attempt);
        retry_after.map_or(jittered, |floor| jittered.max(floor))
    }

    /// Whether an event first attempted at `first_attempt` should be given up on at `now`.
    pub fn expired(&self, first_attempt: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        (now - first_attempt).to_std().is_ok_and(|elapsed| elapsed >= self.deadline)
    }
}

/// `Retry-After` as seconds or an HTTP date; capped at an hour so a broken header cannot park
/// a destination for days.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
            (at - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_as_segment_does() {
        for code in [408, 423, 429, 500, 502, 503, 504, 598, 599] {
            assert!(RetryPolicy::is_retriable_status(StatusCode::from_u16(code).expect("status")), "{code}");
        }
        for code in [400, 401, 403, 404, 413, 422, 501] {
            assert!(!RetryPolicy::is_retriable_status(StatusCode::from_u16(code).expect("status")), "{code}");
        }
    }

    #[test]
    fn backoff_stays_under_its_ceiling_and_above_retry_after() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            deadline: Duration::from_secs(60),
        };
        for _ in 0..200 {
            assert!(policy.backoff(3, None) <= Duration::from_millis(400));
            assert!(policy.backoff(2, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        }
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("ts").with_timezone(&Utc);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "Thu, 01 Jan 2026 00:00:30 GMT".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, "999999".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3600)));
        headers.insert(RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn deadline() {
        let policy = RetryPolicy::default();
        let start = Utc::now();
        assert!(!policy.expired(start, start + chrono::Duration::minutes(239)));
        assert!(policy.expired(start, start + chrono::Duration::minutes(240)));
    }
}
