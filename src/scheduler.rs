//! One task per target: poll on the target's own interval, publish a snapshot, repeat until shutdown.
//!
//! Each task owns its collector, so a slow, locked or dead target delays nobody else. A poll is bounded by the
//! target's timeout; a poll cut by it drops the collector's connection (it may be mid-query) and reports the
//! target down with the error kind `deadline`. Targets start at a random offset within their interval so that
//! many targets do not poll in lockstep.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dbwatch_collectors::{fleet, CollectError, Collected, Collector, Sample};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::Target;
use crate::exposition;
use crate::self_metrics::{self, SelfMetrics};
use crate::store::{Snapshot, SnapshotStore};

/// How long a collector may take to say goodbye at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_START_OFFSET: Duration = Duration::from_secs(5);

/// Why a poll produced no data.
#[derive(Debug)]
pub enum PollFailure {
    Collect(CollectError),
    /// The client-side deadline (the target's `timeout`) cut the poll.
    Deadline(Duration),
}

impl PollFailure {
    pub fn kind(&self) -> &'static str {
        match self {
            PollFailure::Collect(error) => error.kind().as_str(),
            PollFailure::Deadline(_) => "deadline",
        }
    }
}

impl std::fmt::Display for PollFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollFailure::Collect(error) => error.fmt(f),
            PollFailure::Deadline(timeout) => write!(
                f,
                "poll did not finish within its timeout of {}",
                humantime::format_duration(*timeout)
            ),
        }
    }
}

pub struct TargetTask {
    target: Target,
    collector: Box<dyn Collector>,
    store: Arc<SnapshotStore>,
    metrics: SelfMetrics,
    common_labels: String,
    last_success: Option<SystemTime>,
    was_up: Option<bool>,
}

impl TargetTask {
    pub fn new(
        target: Target,
        collector: Box<dyn Collector>,
        store: Arc<SnapshotStore>,
        metrics: SelfMetrics,
    ) -> Self {
        let db = collector.db();
        metrics.init_target(&target.name, db);
        let common_labels = exposition::target_labels(&target.name, db, &target.labels);
        TargetTask {
            target,
            collector,
            store,
            metrics,
            common_labels,
            last_success: None,
            was_up: None,
        }
    }

    /// Polls until `shutdown` is cancelled, then closes the collector's connections.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let offset = start_offset(self.target.interval);
        tokio::select! {
            _ = tokio::time::sleep(offset) => {}
            _ = shutdown.cancelled() => return,
        }
        let mut ticker = tokio::time::interval(self.target.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            tokio::select! {
                snapshot = self.poll_once() => self.store.publish(snapshot),
                _ = shutdown.cancelled() => {
                    self.collector.abandon_connection();
                    break;
                }
            }
        }
        if tokio::time::timeout(CLOSE_TIMEOUT, self.collector.close())
            .await
            .is_err()
        {
            tracing::debug!(target_name = %self.target.name, "closing the connection timed out");
        }
    }

    /// One poll, bounded by the target's timeout, turned into a snapshot.
    pub async fn poll_once(&mut self) -> Snapshot {
        let db = self.collector.db();
        let name = self.target.name.clone();
        self.metrics.polls.with_label_values(&[&name, db]).inc();
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.target.timeout, self.collector.collect()).await;
        let duration = started.elapsed();
        let result = match outcome {
            Ok(Ok(collected)) => Ok(collected),
            Ok(Err(error)) => Err(PollFailure::Collect(error)),
            Err(_) => {
                self.collector.abandon_connection();
                Err(PollFailure::Deadline(self.target.timeout))
            }
        };
        let taken_at = SystemTime::now();
        let up = result.is_ok();
        let error_kind = result.as_ref().err().map(PollFailure::kind);
        self.log_transition(&result);
        let mut samples = match result {
            Ok(collected) => {
                self.last_success = Some(taken_at);
                self.collected_samples(collected, db)
            }
            Err(failure) => {
                self.metrics
                    .poll_errors
                    .with_label_values(&[&name, db, failure.kind()])
                    .inc();
                Vec::new()
            }
        };
        samples.push(fleet::DB_UP.sample(dbwatch_collectors::metric::bool_value(up)));
        samples.push(self_metrics::POLL_DURATION.sample(duration.as_secs_f64()));
        samples
            .push(self_metrics::LAST_SUCCESS.sample(self.last_success.map_or(0.0, unix_seconds)));
        let series = samples.len() + 1;
        samples.push(self_metrics::SERIES.sample(series as f64));
        let families = exposition::encode(&self.common_labels, &samples);
        Snapshot {
            target: name,
            db,
            labels: self.target.labels.clone(),
            taken_at,
            up,
            error_kind,
            samples,
            families,
        }
    }

    fn collected_samples(&self, collected: Collected, db: &str) -> Vec<Sample> {
        let Collected { mut samples, views } = collected;
        for view in views {
            let success = view.error.is_none();
            if let Some(kind) = view.error {
                self.metrics
                    .collector_errors
                    .with_label_values(&[&self.target.name, db, view.view, kind.as_str()])
                    .inc();
            }
            samples.push(
                self_metrics::COLLECTOR_SUCCESS
                    .sample_with([view.view], dbwatch_collectors::metric::bool_value(success)),
            );
            samples.push(
                self_metrics::COLLECTOR_DURATION
                    .sample_with([view.view], view.duration.as_secs_f64()),
            );
        }
        samples
    }

    /// Logs when a target goes down or comes back, not on every failed poll.
    fn log_transition(&mut self, result: &Result<Collected, PollFailure>) {
        let up = result.is_ok();
        let name = &self.target.name;
        match (self.was_up, result) {
            (Some(true) | None, Err(failure)) => {
                tracing::warn!(target_name = %name, kind = failure.kind(), error = %failure, "target down")
            }
            (Some(false), Ok(_)) => tracing::info!(target_name = %name, "target up again"),
            (None, Ok(_)) => tracing::info!(target_name = %name, "first poll succeeded"),
            _ => {}
        }
        self.was_up = Some(up);
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// A random offset to spread targets' polls: within the interval, but at most a few seconds so that a new
/// target reports soon after start.
fn start_offset(interval: Duration) -> Duration {
    let spread = interval.min(MAX_START_OFFSET);
    let millis = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::random_range(0..millis))
}
