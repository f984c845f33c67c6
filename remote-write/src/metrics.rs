//! `dbwatch_remote_write_*`, labelled by endpoint name (`remote`), a set the configuration bounds.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct RemoteWriteMetrics {
    pub sent: IntCounterVec,
    pub dropped: IntCounterVec,
    pub retried: IntCounterVec,
    pub requests: IntCounterVec,
    pub pending: IntGaugeVec,
    pub capacity: IntGaugeVec,
    pub highest_sent: GaugeVec,
}

/// Why samples were given up on: the bounded values of `reason`.
pub const DROPPED_QUEUE_FULL: &str = "queue_full";
pub const DROPPED_REFUSED: &str = "refused";
pub const DROPPED_SHUTDOWN: &str = "shutdown";

impl RemoteWriteMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = RemoteWriteMetrics {
            sent: IntCounterVec::new(
                Opts::new(
                    "dbwatch_remote_write_samples_sent_total",
                    "Samples the remote-write endpoint accepted",
                ),
                &["remote"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "dbwatch_remote_write_samples_dropped_total",
                    "Samples given up on: the queue was full (oldest dropped), the endpoint refused them (4xx), or shutdown came first",
                ),
                &["remote", "reason"],
            )?,
            retried: IntCounterVec::new(
                Opts::new(
                    "dbwatch_remote_write_samples_retried_total",
                    "Samples sent again after a 5xx, a 429 or a connection error",
                ),
                &["remote"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "dbwatch_remote_write_requests_total",
                    "Remote-write requests by outcome: sent, retry (5xx, 429, no answer), refused (other 4xx)",
                ),
                &["remote", "outcome"],
            )?,
            pending: IntGaugeVec::new(
                Opts::new(
                    "dbwatch_remote_write_samples_pending",
                    "Samples queued or in flight, not yet accepted",
                ),
                &["remote"],
            )?,
            capacity: IntGaugeVec::new(
                Opts::new(
                    "dbwatch_remote_write_queue_capacity_samples",
                    "Samples the endpoint's queue holds at most: its queue_config capacity",
                ),
                &["remote"],
            )?,
            highest_sent: GaugeVec::new(
                Opts::new(
                    "dbwatch_remote_write_highest_sent_timestamp_seconds",
                    "Timestamp of the newest sample the endpoint accepted: now minus this is how far behind it is",
                ),
                &["remote"],
            )?,
        };
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.retried.clone()))?;
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.pending.clone()))?;
        registry.register(Box::new(metrics.capacity.clone()))?;
        registry.register(Box::new(metrics.highest_sent.clone()))?;
        Ok(metrics)
    }
}
