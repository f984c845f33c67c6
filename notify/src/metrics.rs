//! The notifier's metrics, in the daemon's registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct NotifyMetrics {
    pub notifications: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub outbox: IntGauge,
    pub latency: HistogramVec,
    pub state_write_failures: prometheus::IntCounter,
    pub template_failures: IntCounterVec,
}

impl NotifyMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let notifications = IntCounterVec::new(
            Opts::new(
                "dbwatch_notifications_total",
                "Delivery attempts of notifications by receiver, integration and outcome (delivered, retried, failed)",
            ),
            &["receiver", "integration", "outcome"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "dbwatch_notifications_dead_letter_total",
                "Notifications given up on: refused permanently or out of attempts",
            ),
            &["receiver", "integration"],
        )?;
        let outbox = IntGauge::new(
            "dbwatch_notification_outbox_entries",
            "Notifications queued in the durable outbox, not yet delivered",
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "dbwatch_notification_delivery_seconds",
                "Time from queueing a notification to its delivery, retries included",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ]),
            &["integration"],
        )?;
        let state_write_failures = prometheus::IntCounter::new(
            "dbwatch_notification_state_write_failures_total",
            "Failed writes of the notifier's state file (notification log and outbox)",
        )?;
        let template_failures = IntCounterVec::new(
            Opts::new(
                "dbwatch_notification_template_failures_total",
                "Notification fields whose routing-file template failed to render and fell back to dbwatch's built-in text",
            ),
            &["integration"],
        )?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(template_failures.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(outbox.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(state_write_failures.clone()))?;
        Ok(NotifyMetrics {
            notifications,
            dead_letters,
            outbox,
            latency,
            state_write_failures,
            template_failures,
        })
    }
}
