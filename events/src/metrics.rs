//! The history's own metrics (`dbwatch_events_*`), registered in the daemon's registry.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct EventMetrics {
    pub written: IntCounter,
    pub dropped: IntCounter,
    pub write_failures: IntCounter,
    pub bytes: IntGauge,
    pub segments: IntGauge,
    pub skipped_lines: IntCounterVec,
    pub quarantined_segments: IntCounter,
    pub removed_segments: IntCounterVec,
}

impl EventMetrics {
    pub fn register(registry: &Registry) -> Result<EventMetrics, prometheus::Error> {
        let metrics = EventMetrics {
            written: IntCounter::new(
                "dbwatch_events_written_total",
                "Events appended to the event history",
            )?,
            dropped: IntCounter::new(
                "dbwatch_events_dropped_total",
                "Events not recorded because the history's queue was full or its writer had stopped",
            )?,
            write_failures: IntCounter::new(
                "dbwatch_events_write_failures_total",
                "Failed appends to the event history (the batch's events are lost)",
            )?,
            bytes: IntGauge::new(
                "dbwatch_events_bytes",
                "Bytes of event history on disk",
            )?,
            segments: IntGauge::new(
                "dbwatch_events_segments",
                "Segment files of the event history on disk",
            )?,
            skipped_lines: IntCounterVec::new(
                Opts::new(
                    "dbwatch_events_skipped_lines_total",
                    "Lines of the event history found unreadable at start and skipped (torn: the last line cut by a crash; corrupt: any other)",
                ),
                &["reason"],
            )?,
            quarantined_segments: IntCounter::new(
                "dbwatch_events_quarantined_segments_total",
                "Segment files with no readable event found at start, moved aside (renamed with a corrupt-<time> suffix)",
            )?,
            removed_segments: IntCounterVec::new(
                Opts::new(
                    "dbwatch_events_removed_segments_total",
                    "Segment files removed by the retention (age or size)",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(metrics.written.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.write_failures.clone()))?;
        registry.register(Box::new(metrics.bytes.clone()))?;
        registry.register(Box::new(metrics.segments.clone()))?;
        registry.register(Box::new(metrics.skipped_lines.clone()))?;
        registry.register(Box::new(metrics.quarantined_segments.clone()))?;
        registry.register(Box::new(metrics.removed_segments.clone()))?;
        for reason in ["torn", "corrupt"] {
            metrics.skipped_lines.with_label_values(&[reason]);
        }
        for reason in ["age", "size"] {
            metrics.removed_segments.with_label_values(&[reason]);
        }
        Ok(metrics)
    }

    /// Metrics registered nowhere, for a log opened without a registry (tests, tools).
    pub fn unregistered() -> EventMetrics {
        EventMetrics::register(&Registry::new())
            .unwrap_or_else(|_| unreachable!("a fresh registry accepts every metric once"))
    }
}
