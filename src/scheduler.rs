//! One task per target: poll on the target's own interval, publish a snapshot, repeat until shutdown.
//! [`Scheduler`] owns those tasks and changes the set on a reload.
//!
//! Each task owns its collector, so a slow, locked or dead target delays nobody else. A poll is bounded by the
//! target's timeout; a poll cut by it drops the collector's connection (it may be mid-query) and reports the
//! target down with the error kind `deadline`. Targets start at a random offset within their interval so that
//! many targets do not poll in lockstep.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dbwatch_collectors::{fleet, CollectError, Collected, Collector, Sample};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::Target;
use crate::exposition;
use crate::self_metrics::{self, SelfMetrics};
use crate::store::{Snapshot, SnapshotStore};

/// How long a collector may take to say goodbye at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_START_OFFSET: Duration = Duration::from_secs(5);
/// How long a target's task may take to end when a reload stops it: its poll is cut at once (cancellation),
/// then it gets [`CLOSE_TIMEOUT`] to close its connection; past this it is aborted.
pub const STOP_DEADLINE: Duration = Duration::from_secs(3);

/// What a reload did to the targets, by name (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetChanges {
    /// Same settings: task, connection, schedule and last snapshot kept.
    pub kept: Vec<String>,
    /// Settings changed: the old task stopped (awaited), a new one started.
    pub restarted: Vec<String>,
    pub added: Vec<String>,
    /// Stopped, and their series gone from `/metrics`.
    pub removed: Vec<String>,
}

/// One running target task, owned by the scheduler.
struct Running {
    target: Target,
    db: &'static str,
    /// A child of the shutdown token: cancelling it stops this task alone.
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A new set of targets to run, and where to answer what changed.
struct Apply {
    targets: Vec<Target>,
    reply: oneshot::Sender<TargetChanges>,
}

/// How the reload reaches the scheduler. Cloning shares the scheduler.
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::Sender<Apply>,
}

#[derive(Debug, thiserror::Error)]
#[error("the scheduler has stopped (shutting down)")]
pub struct SchedulerGone;

impl SchedulerHandle {
    /// Runs `targets` from now on; answers once every stopped task has ended and every new one is started.
    pub async fn apply(&self, targets: Vec<Target>) -> Result<TargetChanges, SchedulerGone> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Apply { targets, reply })
            .await
            .map_err(|_| SchedulerGone)?;
        answer.await.map_err(|_| SchedulerGone)
    }
}

/// Owns one task per target: starts them, and on a reload keeps, restarts, adds and removes them. One scheduler
/// task applies one change at a time, so two reloads never interleave their stops and starts.
pub struct Scheduler {
    store: Arc<SnapshotStore>,
    metrics: SelfMetrics,
    running: BTreeMap<String, Running>,
    commands: mpsc::Receiver<Apply>,
}

impl Scheduler {
    pub fn new(store: Arc<SnapshotStore>, metrics: SelfMetrics) -> (Scheduler, SchedulerHandle) {
        let (commands_tx, commands) = mpsc::channel(1);
        (
            Scheduler {
                store,
                metrics,
                running: BTreeMap::new(),
                commands,
            },
            SchedulerHandle {
                commands: commands_tx,
            },
        )
    }

    /// Starts `targets`, then applies reloads until `shutdown`; at shutdown waits for every target task (the
    /// caller's deadline bounds the wait).
    pub async fn run(mut self, targets: Vec<Target>, shutdown: CancellationToken) {
        self.store.expect_targets(targets.len());
        for target in targets {
            self.start(target, &shutdown);
        }
        loop {
            let apply = tokio::select! {
                apply = self.commands.recv() => apply,
                _ = shutdown.cancelled() => None,
            };
            let Some(Apply { targets, reply }) = apply else {
                break;
            };
            let changes = self.apply(targets, &shutdown).await;
            // The reloader may have given up waiting; what was applied stays applied.
            let _ = reply.send(changes);
        }
        // Every task holds a child of `shutdown`, already cancelled; wait for their last goodbyes.
        for (_, running) in std::mem::take(&mut self.running) {
            let _ = running.task.await;
        }
    }

    fn start(&mut self, target: Target, shutdown: &CancellationToken) {
        let collector = target.engine.build_collector();
        let db = collector.db();
        let stop = shutdown.child_token();
        let task = TargetTask::new(
            target.clone(),
            collector,
            Arc::clone(&self.store),
            self.metrics.clone(),
        );
        let task = tokio::spawn(task.run(stop.clone()));
        self.running.insert(
            target.name.clone(),
            Running {
                target,
                db,
                stop,
                task,
            },
        );
    }

    async fn apply(&mut self, targets: Vec<Target>, shutdown: &CancellationToken) -> TargetChanges {
        let mut changes = TargetChanges::default();
        let mut wanted: BTreeMap<String, Target> = targets
            .into_iter()
            .map(|target| (target.name.clone(), target))
            .collect();
        let mut stopping = Vec::new();
        let mut to_start = Vec::new();
        for name in self.running.keys().cloned().collect::<Vec<_>>() {
            let kept = match (wanted.get(&name), self.running.get(&name)) {
                (Some(target), Some(running)) => running.target.settings == target.settings,
                _ => false,
            };
            if kept {
                wanted.remove(&name);
                changes.kept.push(name);
                continue;
            }
            let Some(running) = self.running.remove(&name) else {
                continue;
            };
            // Cancelled all at once and awaited below with one deadline, so that many changed targets cost
            // one deadline, not one each.
            running.stop.cancel();
            match wanted.remove(&name) {
                Some(target) => {
                    let forget = (running.db != target.engine.db()).then_some(running.db);
                    changes.restarted.push(name.clone());
                    to_start.push(target);
                    stopping.push((name, running.task, forget, false));
                }
                None => {
                    changes.removed.push(name.clone());
                    stopping.push((name, running.task, Some(running.db), true));
                }
            }
        }
        // Stopped before anything starts, so that a changed target never has two tasks (two connections).
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        for (name, mut task, forget, removed) in stopping {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(target_name = %name, deadline = ?STOP_DEADLINE, "target task did not stop in time; aborted");
                task.abort();
                let _ = task.await;
            }
            if let Some(db) = forget {
                self.metrics.forget_target(&name, db);
            }
            if removed {
                self.store.remove(&name);
            }
        }
        for (name, target) in wanted {
            changes.added.push(name);
            to_start.push(target);
        }
        self.store
            .expect_targets(self.running.len() + to_start.len());
        for target in to_start {
            self.start(target, shutdown);
        }
        changes
    }
}

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
        let mut previous: Option<Instant> = None;
        loop {
            let scheduled = tokio::select! {
                scheduled = ticker.tick() => scheduled,
                _ = shutdown.cancelled() => break,
            };
            self.record_start(scheduled, previous);
            previous = Some(scheduled);
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

    /// How late this poll starts, and how many scheduled polls the previous one overran: the ticker skips
    /// to the next multiple of the interval, so the gap between two scheduled instants counts them.
    fn record_start(&self, scheduled: Instant, previous: Option<Instant>) {
        let late = Instant::now().saturating_duration_since(scheduled);
        self.metrics.poll_start_delay.observe(late.as_secs_f64());
        let Some(previous) = previous else { return };
        let interval = self.target.interval.as_nanos();
        let gap = scheduled.saturating_duration_since(previous).as_nanos();
        let skipped = gap
            .checked_div(interval)
            .map_or(0, |ticks| ticks.saturating_sub(1));
        if skipped > 0 {
            self.metrics
                .polls_skipped
                .with_label_values(&[&self.target.name, self.collector.db()])
                .inc_by(u64::try_from(skipped).unwrap_or(u64::MAX));
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
                    .collector_error(&self.target.name, db, view.view, kind.as_str());
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prometheus::Registry;

    use super::*;

    /// Every poll takes `takes` of (paused) tokio time and answers with nothing.
    struct Slow {
        takes: Duration,
    }

    #[async_trait::async_trait]
    impl Collector for Slow {
        fn db(&self) -> &'static str {
            "postgres"
        }

        async fn poll(&mut self) -> Result<Collected, CollectError> {
            tokio::time::sleep(self.takes).await;
            Ok(Collected {
                samples: Vec::new(),
                views: Vec::new(),
            })
        }

        fn abandon_connection(&mut self) {}

        async fn close(&mut self) {}
    }

    fn target(interval_s: u64) -> Target {
        let text = format!(
            "targets:\n  - name: slow\n    type: postgres\n    interval: {interval_s}s\n    timeout: {interval_s}s\n    connection: {{host: db, port: 5432, user: u, password: p}}\n"
        );
        let no_env = |_: &str| None;
        let mut config = crate::config::load_str(Path::new("dbwatch.yml"), &text, &no_env)
            .unwrap_or_else(|errors| panic!("{errors}"));
        config.targets.remove(0)
    }

    /// Runs one target for `run` of paused time with polls that take `takes`; returns its metrics.
    async fn run(interval_s: u64, takes: Duration, run: Duration) -> SelfMetrics {
        let metrics = SelfMetrics::register(&Registry::new()).expect("metrics register");
        let mut target = target(interval_s);
        // Longer than the interval only here: a poll that overruns is what skips the next ones.
        target.timeout = takes * 2;
        let task = TargetTask::new(
            target,
            Box::new(Slow { takes }),
            Arc::new(SnapshotStore::new(1)),
            metrics.clone(),
        );
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(task.run(shutdown.clone()));
        tokio::time::sleep(run).await;
        shutdown.cancel();
        handle.await.expect("the task ends when cancelled");
        metrics
    }

    #[tokio::test(start_paused = true)]
    async fn polls_that_keep_time_start_on_schedule_and_skip_none() {
        let metrics = run(10, Duration::from_secs(1), Duration::from_secs(95)).await;
        let starts = metrics.poll_start_delay.get_sample_count();
        // The start offset is under the interval: polls at offset, +10 s, ..., at least 9 in 95 s.
        assert!((9..=10).contains(&starts), "{starts} polls started");
        assert!(
            metrics.poll_start_delay.get_sample_sum() < 0.001,
            "paused time starts every poll exactly on its instant"
        );
        assert_eq!(
            metrics
                .polls_skipped
                .with_label_values(&["slow", "postgres"])
                .get(),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_longer_than_the_interval_starts_the_next_late_and_skips_the_rest() {
        // Each poll takes 25 s of a 10 s interval: the poll due during it starts 15 s late, the one after is
        // skipped, so polls run every 30 s.
        let metrics = run(10, Duration::from_secs(25), Duration::from_secs(125)).await;
        let skipped = metrics
            .polls_skipped
            .with_label_values(&["slow", "postgres"])
            .get();
        let starts = metrics.poll_start_delay.get_sample_count();
        assert!(skipped >= 3, "{skipped} skipped in 125 s");
        assert!((4..=6).contains(&starts), "{starts} polls started");
        assert!(
            metrics.poll_start_delay.get_sample_sum() >= 15.0 * 3.0,
            "late starts are measured: {} s in all",
            metrics.poll_start_delay.get_sample_sum()
        );
    }
}
