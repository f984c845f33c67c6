//! dbwatch's own metrics.
//!
//! Per-poll facts (duration, last success, series count, how each collector fared) travel in the target's
//! snapshot as gauges, so they are exactly as fresh as the data they describe. Counters that must survive
//! failed polls live in an explicit `prometheus::Registry` owned by the daemon, never the global one.

use dbwatch_collectors::{ErrorKind, MetricDesc, MetricKind};
use prometheus::{IntCounterVec, Opts, Registry};

pub static POLL_DURATION: MetricDesc = MetricDesc {
    name: "dbwatch_poll_duration_seconds",
    help: "Wall time of the target's last poll",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static LAST_SUCCESS: MetricDesc = MetricDesc {
    name: "dbwatch_last_success_timestamp_seconds",
    help: "Unix time of the target's last successful poll; 0 when none succeeded yet",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static SERIES: MetricDesc = MetricDesc {
    name: "dbwatch_target_series",
    help: "Series the target's last poll produced",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static COLLECTOR_SUCCESS: MetricDesc = MetricDesc {
    name: "dbwatch_collector_success",
    help: "1 when the collector (one system view or API) answered during the target's last poll",
    kind: MetricKind::Gauge,
    labels: &["collector"],
};
pub static COLLECTOR_DURATION: MetricDesc = MetricDesc {
    name: "dbwatch_collector_duration_seconds",
    help: "Wall time of the collector during the target's last poll",
    kind: MetricKind::Gauge,
    labels: &["collector"],
};

/// The per-snapshot gauges, for documentation tests.
pub static SNAPSHOT_DESCRIPTORS: &[&MetricDesc] = &[
    &POLL_DURATION,
    &LAST_SUCCESS,
    &SERIES,
    &COLLECTOR_SUCCESS,
    &COLLECTOR_DURATION,
];

/// Counters shared by every poll task; cloning shares the underlying series.
#[derive(Clone)]
pub struct SelfMetrics {
    pub polls: IntCounterVec,
    pub poll_errors: IntCounterVec,
    pub collector_errors: IntCounterVec,
}

impl SelfMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let polls = IntCounterVec::new(
            Opts::new("dbwatch_polls_total", "Polls started, per target"),
            &["target", "db"],
        )?;
        let poll_errors = IntCounterVec::new(
            Opts::new(
                "dbwatch_poll_errors_total",
                "Polls that failed as a whole, per target and bounded error kind",
            ),
            &["target", "db", "kind"],
        )?;
        let collector_errors = IntCounterVec::new(
            Opts::new(
                "dbwatch_collector_errors_total",
                "Collector (view) failures inside otherwise successful polls, per bounded error kind",
            ),
            &["target", "db", "collector", "kind"],
        )?;
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                "dbwatch_build_info",
                "Always 1; the version of the running dbwatch",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(polls.clone()))?;
        registry.register(Box::new(poll_errors.clone()))?;
        registry.register(Box::new(collector_errors.clone()))?;
        registry.register(Box::new(build_info))?;
        // CPU, memory and file descriptors of the daemon itself, as every Prometheus exporter reports them.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(SelfMetrics {
            polls,
            poll_errors,
            collector_errors,
        })
    }

    /// Creates a target's series at zero, so that a first error is a visible increase and not a new series.
    pub fn init_target(&self, target: &str, db: &str) {
        self.polls.with_label_values(&[target, db]);
        for kind in ErrorKind::ALL {
            self.poll_errors
                .with_label_values(&[target, db, kind.as_str()]);
        }
        // The client-side poll timeout is not one of the collectors' kinds.
        self.poll_errors
            .with_label_values(&[target, db, "deadline"]);
    }
}
