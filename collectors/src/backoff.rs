//! Reconnect backoff shared by every engine's connection holder.

use std::time::Duration;
use tokio::time::Instant;

use crate::error::CollectError;

/// Exponential backoff between connection attempts: 1 s, 2 s, 4 s ... capped, reset by a success.
///
/// Polls that fall inside the backoff window report the target down without touching the network, so a dead
/// database is not hammered with connection attempts while its neighbours keep their schedule.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            failures: 0,
            next_attempt: None,
        }
    }

    /// `None` when an attempt may be made now, otherwise how long until one may.
    pub fn wait_remaining(&self, now: Instant) -> Option<Duration> {
        let next = self.next_attempt?;
        (next > now).then(|| next - now)
    }

    /// `Err(BackingOff)` while an attempt may not be made yet, so that the poll reports `target` down without
    /// touching the network.
    pub fn ready(&self, target: &str) -> Result<(), CollectError> {
        match self.wait_remaining(Instant::now()) {
            None => Ok(()),
            Some(remaining) => Err(CollectError::BackingOff {
                target: target.to_owned(),
                failures: self.failures,
                remaining,
            }),
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.saturating_sub(1).min(16);
        let delay = self.base.saturating_mul(1 << exponent).min(self.max);
        self.next_attempt = Some(now + delay);
    }

    pub fn record_success(&mut self) {
        self.failures = 0;
        self.next_attempt = None;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        let start = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        assert_eq!(backoff.wait_remaining(start), None);
        let mut seen = Vec::new();
        for _ in 0..4 {
            backoff.record_failure(start);
            seen.push(backoff.wait_remaining(start));
        }
        assert_eq!(
            seen,
            vec![
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(4)),
            ]
        );
        assert_eq!(backoff.wait_remaining(start + Duration::from_secs(5)), None);
        backoff.record_success();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.wait_remaining(start), None);
    }
}
