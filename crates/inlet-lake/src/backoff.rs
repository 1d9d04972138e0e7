//! The one retry delay of every outbound call (lake uploads, destination deliveries):
//! exponential backoff with "full jitter", a delay drawn uniformly from
//! `[0, min(max, base × 2^(retry - 1))]`. Drawing from the whole interval, rather than adding a
//! little noise to a fixed delay, is what keeps many clients that failed together (one S3 or
//! vendor outage) from coming back together.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay ceiling of the first retry; doubled per retry.
    pub base: Duration,
    /// Largest delay ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the delay before retry number `retry` (the first retry is 1).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exponent).min(self.max)
    }

    /// The delay before retry number `retry`, drawn uniformly under its ceiling.
    pub fn delay(&self, retry: u32) -> Duration {
        self.ceiling(retry).mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_under_an_exponential_ceiling() {
        let backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(3), Duration::from_millis(400));
        assert_eq!(backoff.ceiling(30), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
        for _ in 0..200 {
            assert!(backoff.delay(3) <= Duration::from_millis(400));
        }
        // Full jitter really spreads: 200 draws are not all the same.
        let draws: std::collections::HashSet<_> = (0..200).map(|_| backoff.delay(4)).collect();
        assert!(draws.len() > 100);
    }
}
