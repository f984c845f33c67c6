//! dbwatch's own metrics.
//!
//! Per-poll facts (duration, last success, series count, how each collector fared) travel in the target's
//! snapshot as gauges, so they are exactly as fresh as the data they describe. Counters that must survive
//! failed polls live in an explicit `prometheus::Registry` owned by the daemon, never the global one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use dbwatch_collectors::{ErrorKind, MetricDesc, MetricKind};
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

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
    /// How late each poll started after its scheduled instant: the runtime's and the machine's lateness, not
    /// the configured start offset. One histogram for all targets, so its size does not grow with the fleet.
    pub poll_start_delay: Histogram,
    /// Scheduled polls a target did not start because its previous poll was still running.
    pub polls_skipped: IntCounterVec,
    pub collector_errors: IntCounterVec,
    /// The (db, collector, kind) children of `collector_errors` each target made, so that a target removed by a
    /// reload takes its series out of `/metrics` (the vector can only remove children by their full labels).
    collector_error_children: Arc<Mutex<BTreeMap<String, BTreeSet<[String; 3]>>>>,
    pub reload: ReloadMetrics,
}

/// Prometheus's names for the outcome of the last configuration reload.
#[derive(Clone)]
pub struct ReloadMetrics {
    successful: IntGauge,
    success_timestamp: Gauge,
}

impl ReloadMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let successful = IntGauge::new(
            "dbwatch_config_last_reload_successful",
            "1 when the last configuration reload (or the start) succeeded, 0 when it failed and the previous configuration still runs",
        )?;
        let success_timestamp = Gauge::new(
            "dbwatch_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load: the start or a reload",
        )?;
        registry.register(Box::new(successful.clone()))?;
        registry.register(Box::new(success_timestamp.clone()))?;
        Ok(ReloadMetrics {
            successful,
            success_timestamp,
        })
    }

    /// The configuration running now was loaded successfully at `at` (the start, or a reload).
    pub fn succeeded(&self, at: SystemTime) {
        self.successful.set(1);
        self.success_timestamp.set(
            at.duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        );
    }

    /// A reload was refused; the previous configuration keeps running, and its timestamp stays.
    pub fn failed(&self) {
        self.successful.set(0);
    }
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
        let poll_start_delay = Histogram::with_opts(
            HistogramOpts::new(
                "dbwatch_poll_start_delay_seconds",
                "How late polls started after their scheduled instant, over all targets",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let polls_skipped = IntCounterVec::new(
            Opts::new(
                "dbwatch_polls_skipped_total",
                "Scheduled polls not started because the target's previous poll was still running",
            ),
            &["target", "db"],
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
        registry.register(Box::new(poll_start_delay.clone()))?;
        registry.register(Box::new(polls_skipped.clone()))?;
        registry.register(Box::new(build_info))?;
        let reload = ReloadMetrics::register(registry)?;
        // CPU, memory and file descriptors of the daemon itself, as every Prometheus exporter reports them.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(SelfMetrics {
            polls,
            poll_errors,
            poll_start_delay,
            polls_skipped,
            collector_errors,
            collector_error_children: Arc::default(),
            reload,
        })
    }

    /// Counts a collector (view) failure inside an otherwise successful poll.
    pub fn collector_error(&self, target: &str, db: &str, collector: &str, kind: &str) {
        self.collector_errors
            .with_label_values(&[target, db, collector, kind])
            .inc();
        let mut children = self
            .collector_error_children
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        children.entry(target.to_owned()).or_default().insert([
            db.to_owned(),
            collector.to_owned(),
            kind.to_owned(),
        ]);
    }

    /// Removes every series of a target that a reload removed (or whose type changed), so that it leaves
    /// `/metrics` instead of lingering at its last value.
    pub fn forget_target(&self, target: &str, db: &str) {
        // Removing a child that does not exist is an error the caller has nothing to do about.
        let _ = self.polls.remove_label_values(&[target, db]);
        let _ = self.polls_skipped.remove_label_values(&[target, db]);
        for kind in ErrorKind::ALL
            .iter()
            .map(|kind| kind.as_str())
            .chain(["deadline"])
        {
            let _ = self.poll_errors.remove_label_values(&[target, db, kind]);
        }
        let children = self
            .collector_error_children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(target)
            .unwrap_or_default();
        for [child_db, collector, kind] in children {
            let _ = self
                .collector_errors
                .remove_label_values(&[target, &child_db, &collector, &kind]);
        }
    }

    /// Creates a target's series at zero, so that a first error is a visible increase and not a new series.
    pub fn init_target(&self, target: &str, db: &str) {
        self.polls.with_label_values(&[target, db]);
        self.polls_skipped.with_label_values(&[target, db]);
        for kind in ErrorKind::ALL {
            self.poll_errors
                .with_label_values(&[target, db, kind.as_str()]);
        }
        // The client-side poll timeout is not one of the collectors' kinds.
        self.poll_errors
            .with_label_values(&[target, db, "deadline"]);
    }
}
