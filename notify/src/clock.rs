//! Time arithmetic the notifier's parts share.

use std::time::Duration;

use tokio::time::Instant;

/// How often the notifier (and the forwarder running alone) looks again when nothing wakes it earlier.
pub const TICK: Duration = Duration::from_millis(500);

/// Milliseconds of `duration`, saturating at `i64::MAX`.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// `now + delay`, or a year from now if that overflows (no delay the notifier computes comes close).
pub fn instant_after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}
