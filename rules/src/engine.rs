//! The rules engine task: evaluates each group on its interval over the snapshot store, publishes `ALERTS`
//! for `/metrics`, persists alert state and sends state transitions to the notifier.
//!
//! One task owns the history and the alert states. Each evaluation cycle runs on the blocking pool (it is
//! CPU work: a read of every snapshot and every due rule) and hands the state back, so nothing is shared and
//! no lock is held across an `.await`. A cycle that overruns makes the group skip the missed evaluations, as
//! Prometheus does, and counts them.
//!
//! Transitions are logged; every cycle publishes the whole view on the [`AlertsHandle`]'s watch, which wakes
//! the notifier: a slow or absent notifier never stalls evaluation, publications coalesce instead of
//! queueing, and nothing is lost when either side is restarted by its supervisor, since the notifier
//! reconciles from [`AlertsHandle::view`], which lists every instance with its state and times.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::alerting::{
    system_time, unix_millis, AlertState, AlertTransition, EvalEnv, ALERTS_FOR_STATE_METRIC,
    ALERTS_METRIC,
};
use super::eval::cache::EvalCache;
use super::group::{evaluate_group, GroupState};
use super::history::{History, NameFilter, LOOKBACK_MS};
use super::labels::Metric;
use super::model::{millis, Rule, RuleSet};
use super::state;
use super::trends::{TrendOptions, Trends};
use crate::source::{SampleSource, TargetSamples};
use dbwatch_events::{Body as EventBody, EventSink};
use dbwatch_metric::text::{write_label, write_value};

/// The evaluation interval of groups that do not set one (Prometheus' default is 1m; dbwatch polls every 15s
/// by default, and evaluating as often makes the history see every poll).
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(15);
/// How often the state file is rewritten while alerts are active, even without transitions, so that a restart
/// knows how long dbwatch was down.
const STATE_REFRESH_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where `alerts.json` lives; `None` keeps alert state in memory only.
    pub state_dir: Option<PathBuf>,
    /// For groups without their own `interval`.
    pub evaluation_interval: Duration,
    /// Shown to templates as `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// Shown to templates as `$externalURL`.
    pub external_url: String,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            state_dir: None,
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            external_labels: BTreeMap::new(),
            external_url: String::new(),
        }
    }
}

/// The engine's own metrics, registered in the daemon's registry.
#[derive(Clone)]
pub struct RuleMetrics {
    pub evaluations: IntCounterVec,
    pub evaluation_failures: IntCounterVec,
    pub iterations_missed: IntCounterVec,
    pub template_errors: IntCounter,
    pub state_write_failures: IntCounter,
    pub history_series: IntGauge,
    pub last_duration: prometheus::GaugeVec,
}

impl RuleMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let evaluations = IntCounterVec::new(
            Opts::new(
                "dbwatch_rule_group_evaluations_total",
                "Evaluations of the rule group",
            ),
            &["group"],
        )?;
        let evaluation_failures = IntCounterVec::new(
            Opts::new(
                "dbwatch_rule_evaluation_failures_total",
                "Rule evaluations that failed (the rule's alerts kept their state)",
            ),
            &["group"],
        )?;
        let iterations_missed = IntCounterVec::new(
            Opts::new(
                "dbwatch_rule_group_iterations_missed_total",
                "Evaluations of the rule group skipped because the previous one overran",
            ),
            &["group"],
        )?;
        let template_errors = IntCounter::new(
            "dbwatch_rule_template_errors_total",
            "Label or annotation templates that failed to expand; the raw text was used",
        )?;
        let state_write_failures = IntCounter::new(
            "dbwatch_rule_state_write_failures_total",
            "Failed writes of the alert state file",
        )?;
        let history_series = IntGauge::new(
            "dbwatch_rule_history_series",
            "Series held in the rules engine's in-memory history",
        )?;
        let last_duration = prometheus::GaugeVec::new(
            Opts::new(
                "dbwatch_rule_group_last_duration_seconds",
                "Wall time of the rule group's last evaluation",
            ),
            &["group"],
        )?;
        registry.register(Box::new(evaluations.clone()))?;
        registry.register(Box::new(evaluation_failures.clone()))?;
        registry.register(Box::new(iterations_missed.clone()))?;
        registry.register(Box::new(template_errors.clone()))?;
        registry.register(Box::new(state_write_failures.clone()))?;
        registry.register(Box::new(history_series.clone()))?;
        registry.register(Box::new(last_duration.clone()))?;
        Ok(RuleMetrics {
            evaluations,
            evaluation_failures,
            iterations_missed,
            template_errors,
            state_write_failures,
            history_series,
            last_duration,
        })
    }
}

/// One alert instance as the rest of the daemon sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSummary {
    pub group: String,
    pub alertname: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: SystemTime,
    pub fired_at: Option<SystemTime>,
    pub resolved_at: Option<SystemTime>,
}

/// Every alert instance after the last evaluation, and their `ALERTS` series already rendered.
#[derive(Debug, Default)]
pub struct AlertsView {
    /// Pending, firing and recently resolved instances.
    pub alerts: Vec<AlertSummary>,
    pub evaluated_at: Option<SystemTime>,
    /// The recent samples of the series the engine was asked to keep trends of
    /// ([`RulesEngine::keeping_trends`]); empty otherwise.
    pub trends: Arc<Trends>,
    exposition: String,
}

/// A cheap handle on the latest [`AlertsView`]; clones share it. A `watch` channel: readers see the latest
/// state, and a subscriber (the notifier) is woken by each publication without any queue of events.
#[derive(Debug, Clone)]
pub struct AlertsHandle {
    view: Arc<watch::Sender<Arc<AlertsView>>>,
}

impl Default for AlertsHandle {
    fn default() -> Self {
        AlertsHandle {
            view: Arc::new(watch::Sender::new(Arc::new(AlertsView::default()))),
        }
    }
}

impl AlertsHandle {
    pub fn view(&self) -> Arc<AlertsView> {
        Arc::clone(&self.view.borrow())
    }

    /// A receiver that is marked changed by every publication from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<AlertsView>> {
        self.view.subscribe()
    }

    /// Appends `ALERTS` and `ALERTS_FOR_STATE` in the text exposition format; nothing when no alert is active.
    pub fn render(&self, out: &mut String) {
        out.push_str(&self.view().exposition);
    }

    /// Publishes alerts that did not come from an engine: for tests and tools that drive the notifier alone.
    pub fn publish_alerts(&self, alerts: Vec<AlertSummary>, evaluated_at: SystemTime) {
        self.publish(AlertsView {
            alerts,
            evaluated_at: Some(evaluated_at),
            trends: Arc::default(),
            exposition: String::new(),
        });
    }

    fn publish(&self, view: AlertsView) {
        self.view.send_replace(Arc::new(view));
    }
}

/// The engine: build it with [`RulesEngine::new`], keep its [`AlertsHandle`], spawn [`RulesEngine::run`].
pub struct RulesEngine {
    store: Arc<dyn SampleSource>,
    rules: Arc<RuleSet>,
    core: Core,
    options: EngineOptions,
    metrics: RuleMetrics,
    alerts: AlertsHandle,
    updates: Option<watch::Receiver<RuleUpdate>>,
    events: EventSink,
    written: Option<Arc<dyn WrittenSink>>,
}

/// Receives, after each evaluation, every series the rules wrote at `t` (Unix milliseconds): recording rules'
/// results, `ALERTS` and `ALERTS_FOR_STATE`, and the staleness markers of series no longer written — what a
/// Prometheus server appends to its storage and remote-writes. Called on the engine's task: it must not wait.
pub trait WrittenSink: Send + Sync {
    fn written(&self, t: i64, series: &[(Metric, f64)]);
}

/// What an evaluation cycle needs and changes; moved to the blocking pool and back.
struct Core {
    rules: Arc<RuleSet>,
    history: History,
    /// The evaluator's caches over `history`, kept from rule to rule and cycle to cycle.
    cache: EvalCache,
    states: Vec<GroupState>,
    env: EvalEnv,
    state_dir: Option<PathBuf>,
    last_saved: Option<i64>,
    trends: Option<TrendOptions>,
    /// Whether the cycle collects what it wrote for a [`WrittenSink`].
    export: bool,
}

struct CycleOutcome {
    transitions: Vec<AlertTransition>,
    failures: Vec<(usize, usize)>,
    template_errors: u64,
    durations: Vec<(usize, Duration)>,
    view: AlertsView,
    history_series: usize,
    state_error: Option<String>,
    /// With [`Core::export`]: what the groups wrote, at `t`.
    written: Vec<(Metric, f64)>,
    t: i64,
}

impl RulesEngine {
    /// Builds the engine and restores the alert state saved in `options.state_dir`, if any. Every evaluation
    /// is published on the [`AlertsHandle`] (see [`RulesEngine::publishing_to`]).
    pub fn new(
        store: Arc<dyn SampleSource>,
        rules: impl Into<Arc<RuleSet>>,
        options: EngineOptions,
        metrics: RuleMetrics,
    ) -> RulesEngine {
        let rules: Arc<RuleSet> = rules.into();
        for long in long_lookbacks(&rules) {
            tracing::warn!(group = %long.group, rule = %long.rule, lookback = %humantime::format_duration(Duration::from_millis(long.lookback_ms.unsigned_abs())),
                per_series_day_kib = crate::load::HISTORY_KIB_PER_SERIES_DAY_AT_15S, "a rule reads more than a day back into the in-memory history: every series it selects is kept that long (KiB per series per day at a 15 s interval); watch the memory, or evaluate it in Prometheus");
        }
        let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
        if let Some(dir) = &options.state_dir {
            match state::load(dir) {
                Ok(Some(saved)) => {
                    let report =
                        state::restore(&saved, &rules, &mut states, unix_millis(SystemTime::now()));
                    if report.expired {
                        tracing::warn!(
                            dropped = report.dropped,
                            "saved alert state is older than the outage tolerance; starting afresh"
                        );
                    } else {
                        tracing::info!(
                            restored = report.restored,
                            dropped = report.dropped,
                            "alert state restored"
                        );
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "cannot restore alert state; starting afresh")
                }
            }
        }
        let core = Core {
            history: history_for(&rules, &options),
            cache: EvalCache::default(),
            rules: Arc::clone(&rules),
            states,
            env: EvalEnv {
                external_labels: options.external_labels.clone(),
                external_url: options.external_url.clone(),
            },
            state_dir: options.state_dir.clone(),
            last_saved: None,
            trends: None,
            export: false,
        };
        RulesEngine {
            store,
            rules,
            core,
            options,
            metrics,
            alerts: AlertsHandle::default(),
            updates: None,
            events: EventSink::default(),
            written: None,
        }
    }

    /// Hands every cycle's written series to `sink` (remote_write).
    pub fn writing_to(mut self, sink: Arc<dyn WrittenSink>) -> RulesEngine {
        self.written = Some(sink);
        self.core.export = true;
        self
    }

    /// Records every alert transition in the event history.
    pub fn recording_to(mut self, events: EventSink) -> RulesEngine {
        self.events = events;
        self
    }

    /// Keeps the series named `names` for `window` whether a rule selects them or not, and publishes their
    /// samples over that window with every view ([`AlertsView::trends`]), for the status page.
    pub fn keeping_trends(mut self, names: &[&str], window: Duration) -> RulesEngine {
        let window_ms = millis(window);
        self.core.history = history_for(&self.rules, &self.options).keep_longer(names, window_ms);
        self.core.trends = Some(TrendOptions {
            names: names.iter().map(|name| Arc::from(*name)).collect(),
            window_ms,
        });
        self
    }

    /// Publishes to `alerts` instead of a handle of its own: an engine rebuilt by its supervisor keeps the
    /// handle that `/metrics`, the status page and the notifier already read.
    pub fn publishing_to(mut self, alerts: AlertsHandle) -> RulesEngine {
        self.alerts = alerts;
        self
    }

    /// The handle `/metrics` renders `ALERTS` from and the notifier reconciles from.
    pub fn alerts(&self) -> AlertsHandle {
        self.alerts.clone()
    }

    /// Applies every rule set published on `updates` (a reload) to the running engine, keeping alert state by
    /// rule identity and the sample history (see [`RuleUpdate`]).
    pub fn reloading_from(mut self, updates: watch::Receiver<RuleUpdate>) -> RulesEngine {
        self.updates = Some(updates);
        self
    }

    /// Evaluates until `shutdown` is cancelled, then writes the alert state one last time.
    pub async fn run(self, shutdown: CancellationToken) {
        let RulesEngine {
            store,
            mut rules,
            mut core,
            mut options,
            metrics,
            alerts,
            mut updates,
            events,
            written,
        } = self;
        if !rules.groups.is_empty() {
            // Evaluating before the first polls would see no series at all; wait for them, boundedly.
            let ready_deadline = Instant::now() + options.evaluation_interval;
            while Instant::now() < ready_deadline {
                let (polled, expected) = store.progress();
                if polled >= expected {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
        let mut schedule = Schedule::new(&rules, &options, Instant::now());
        let mut last_t = i64::MIN;
        loop {
            let due_at = schedule.next_due();
            tokio::select! {
                _ = tokio::time::sleep_until(due_at.unwrap_or_else(Instant::now)), if due_at.is_some() => {}
                update = next_update(&mut updates) => {
                    let Some(update) = update else {
                        // The reloader is gone (shutdown under way): evaluate on with what runs.
                        updates = None;
                        continue;
                    };
                    let t = unix_millis(SystemTime::now()).max(last_t.saturating_add(1));
                    let old_rules = Arc::clone(&rules);
                    let new_options = EngineOptions {
                        evaluation_interval: update.evaluation_interval,
                        external_labels: update.external_labels.clone(),
                        ..options.clone()
                    };
                    last_t = t;
                    let swap_options = new_options.clone();
                    let snapshots = store.latest();
                    let swapped = tokio::task::spawn_blocking(move || {
                        let report = core.swap(&update, &swap_options, &snapshots, t);
                        (core, report)
                    })
                    .await;
                    let Ok((returned, carried)) = swapped else {
                        tracing::error!("the rules engine's reload task failed; stopping the engine");
                        return;
                    };
                    core = returned;
                    rules = Arc::clone(&core.rules);
                    options = new_options;
                    forget_groups(&metrics, &old_rules, &rules);
                    schedule = schedule.reschedule(&old_rules, &rules, &options, Instant::now());
                    alerts.publish(core.view(t));
                    tracing::info!(
                        groups = rules.groups.len(),
                        rules = rules.rule_count(),
                        alerts_kept = carried.restored,
                        alerts_dropped = carried.dropped,
                        "rules reloaded"
                    );
                    continue;
                }
                _ = shutdown.cancelled() => break,
            }
            let now = Instant::now();
            let due = schedule.take_due(now, &rules, &metrics);
            let t = unix_millis(SystemTime::now()).max(last_t.saturating_add(1));
            last_t = t;
            let snapshots = store.latest();
            let cycle = tokio::task::spawn_blocking(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    core.cycle(&snapshots, t, &due)
                }));
                (core, outcome)
            })
            .await;
            let outcome = match cycle {
                Ok((returned, outcome)) => {
                    core = returned;
                    outcome
                }
                Err(error) => {
                    tracing::error!(error = %error, "the rules engine's evaluation task failed; stopping the engine");
                    return;
                }
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::error!("a rule evaluation panicked; the cycle's results are lost");
                    continue;
                }
            };
            if let Some(sink) = &written {
                if !outcome.written.is_empty() {
                    sink.written(outcome.t, &outcome.written);
                }
            }
            report(&rules, &metrics, &alerts, &events, outcome);
        }
        if let Err(error) =
            tokio::task::spawn_blocking(move || core.save(unix_millis(SystemTime::now()))).await
        {
            tracing::warn!(error = %error, "cannot write the alert state at shutdown");
        }
    }
}

/// The next rule set a reload published; `None` when there is no reloader (or it is gone). Without one it
/// never resolves, so the `select!` above only ever evaluates.
async fn next_update(updates: &mut Option<watch::Receiver<RuleUpdate>>) -> Option<RuleUpdate> {
    let Some(receiver) = updates.as_mut() else {
        return std::future::pending().await;
    };
    receiver.changed().await.ok()?;
    Some(receiver.borrow_and_update().clone())
}

/// A rule set and the settings it is evaluated with, as a reload hands them to the running engine. The engine
/// swaps them in between two evaluations: the alert states move over by the identity rule of `alerts.json`
/// (group name, rule name, rank among same-named rules; [`state::carry`]) with their times unchanged, and the
/// sample history is kept (copied into one sized for the new rules), so range functions see no gap.
#[derive(Debug, Clone)]
pub struct RuleUpdate {
    pub rules: Arc<RuleSet>,
    pub evaluation_interval: Duration,
    pub external_labels: BTreeMap<String, String>,
}

/// When each group is next due, by index into the running rule set.
struct Schedule {
    intervals: Vec<Duration>,
    next_due: Vec<Instant>,
}

impl Schedule {
    fn new(rules: &RuleSet, options: &EngineOptions, start: Instant) -> Schedule {
        let intervals = group_intervals(rules, options);
        Schedule {
            next_due: vec![start; intervals.len()],
            intervals,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.next_due.iter().min().copied()
    }

    /// A group kept by a reload (same file, name and interval) keeps its place in time; any other is due now.
    fn reschedule(
        self,
        old: &RuleSet,
        new: &RuleSet,
        options: &EngineOptions,
        now: Instant,
    ) -> Schedule {
        let intervals = group_intervals(new, options);
        let next_due = new
            .groups
            .iter()
            .zip(&intervals)
            .map(|(group, interval)| {
                old.groups
                    .iter()
                    .position(|old| old.name == group.name && old.file == group.file)
                    .filter(|&index| self.intervals.get(index) == Some(interval))
                    .and_then(|index| self.next_due.get(index).copied())
                    .unwrap_or(now)
            })
            .collect();
        Schedule {
            intervals,
            next_due,
        }
    }

    /// The groups due at `now`, their next times advanced (skipped evaluations counted, as Prometheus does).
    fn take_due(&mut self, now: Instant, rules: &RuleSet, metrics: &RuleMetrics) -> Vec<usize> {
        let due: Vec<usize> = (0..self.next_due.len())
            .filter(|&index| self.next_due[index] <= now)
            .collect();
        for &index in &due {
            let interval = self.intervals[index];
            self.next_due[index] += interval;
            if self.next_due[index] <= now {
                let behind = now.duration_since(self.next_due[index]);
                let missed = (behind.as_nanos() / interval.as_nanos().max(1)) as u64 + 1;
                metrics
                    .iterations_missed
                    .with_label_values(&[rules.groups[index].name.as_str()])
                    .inc_by(missed);
                self.next_due[index] += interval * u32::try_from(missed).unwrap_or(u32::MAX);
            }
        }
        due
    }
}

fn group_intervals(rules: &RuleSet, options: &EngineOptions) -> Vec<Duration> {
    rules
        .groups
        .iter()
        .map(|group| {
            group
                .interval
                .unwrap_or(options.evaluation_interval)
                .max(Duration::from_millis(1))
        })
        .collect()
}

/// Takes the per-group series of groups a reload removed out of `/metrics`.
fn forget_groups(metrics: &RuleMetrics, old: &RuleSet, new: &RuleSet) {
    for group in &old.groups {
        if new.groups.iter().any(|kept| kept.name == group.name) {
            continue;
        }
        let name = [group.name.as_str()];
        // Absent children (a group never evaluated) are not an error worth reporting.
        let _ = metrics.evaluations.remove_label_values(&name);
        let _ = metrics.evaluation_failures.remove_label_values(&name);
        let _ = metrics.iterations_missed.remove_label_values(&name);
        let _ = metrics.last_duration.remove_label_values(&name);
    }
}

fn report(
    rules: &RuleSet,
    metrics: &RuleMetrics,
    alerts: &AlertsHandle,
    events: &EventSink,
    outcome: CycleOutcome,
) {
    for (group, duration) in &outcome.durations {
        let name = rules.groups[*group].name.as_str();
        metrics.evaluations.with_label_values(&[name]).inc();
        metrics
            .last_duration
            .with_label_values(&[name])
            .set(duration.as_secs_f64());
    }
    for (group, failures) in &outcome.failures {
        metrics
            .evaluation_failures
            .with_label_values(&[rules.groups[*group].name.as_str()])
            .inc_by(*failures as u64);
    }
    metrics.template_errors.inc_by(outcome.template_errors);
    metrics
        .history_series
        .set(i64::try_from(outcome.history_series).unwrap_or(i64::MAX));
    if let Some(error) = &outcome.state_error {
        metrics.state_write_failures.inc();
        tracing::warn!(error = %error, "cannot persist alert state");
    }
    alerts.publish(outcome.view);
    for transition in &outcome.transitions {
        tracing::info!(
            alertname = %transition.alertname,
            from = transition.from.as_str(),
            to = transition.to.as_str(),
            labels = ?transition.labels,
            "alert state changed"
        );
        events.record_at(
            unix_millis(transition.at),
            EventBody::Alert {
                alertname: transition.alertname.clone(),
                group: transition.group.clone(),
                from: transition.from.as_str().to_owned(),
                to: transition.to.as_str().to_owned(),
                labels: transition.labels.clone(),
                annotations: transition.annotations.clone(),
                value: Some(transition.value),
                active_at: unix_millis(transition.active_at),
            },
        );
    }
}

impl Core {
    fn cycle(
        &mut self,
        snapshots: &[Arc<dyn TargetSamples>],
        t: i64,
        due: &[usize],
    ) -> CycleOutcome {
        self.history.scrape(snapshots, t);
        let mut transitions = Vec::new();
        let mut failures = Vec::new();
        let mut template_errors = 0;
        let mut durations = Vec::with_capacity(due.len());
        let mut written = Vec::new();
        for &index in due {
            let started = std::time::Instant::now();
            self.states[index].export = self.export;
            let outcome = evaluate_group(
                &self.rules.groups[index],
                &mut self.states[index],
                &mut self.history,
                &mut self.cache,
                t,
                &self.env,
            );
            durations.push((index, started.elapsed()));
            if !outcome.failures.is_empty() {
                failures.push((index, outcome.failures.len()));
            }
            template_errors += outcome.template_errors;
            transitions.extend(outcome.transitions);
            written.extend(outcome.exported);
        }
        let cutoff = self.history.trim(t);
        self.cache.end_cycle(cutoff);
        let mut view = self.view(t);
        if let Some(trends) = &self.trends {
            view.trends = Arc::new(Trends::read(&self.history, trends, t));
        }
        let active = view
            .alerts
            .iter()
            .any(|alert| alert.state != AlertState::Inactive);
        let refresh_due = self
            .last_saved
            .is_none_or(|saved| t - saved >= STATE_REFRESH_MS);
        let state_error = if !transitions.is_empty() || (active && refresh_due) {
            self.save(t).err()
        } else {
            None
        };
        CycleOutcome {
            transitions,
            failures,
            template_errors,
            durations,
            view,
            history_series: self.history.stats().series,
            state_error,
            written,
            t,
        }
    }

    /// Swaps in a reloaded rule set at `t` (see [`RuleUpdate`]); reports how many alert instances moved over.
    fn swap(
        &mut self,
        update: &RuleUpdate,
        options: &EngineOptions,
        snapshots: &[Arc<dyn TargetSamples>],
        t: i64,
    ) -> state::RestoreReport {
        // A last read into the old history first: the series of targets the same reload removed get their
        // staleness markers there, and the markers are copied over like every other sample.
        self.history.scrape(snapshots, t);
        let rules = Arc::clone(&update.rules);
        let saved = state::snapshot(&self.rules, &self.states, t);
        let mut states: Vec<GroupState> = rules.groups.iter().map(GroupState::for_group).collect();
        let report = state::carry(&saved, &rules, &mut states);
        let mut history = history_for(&rules, options);
        // The status UI's trends outlive a reload: the new history keeps their names as long as the old did.
        if let Some(trends) = &self.trends {
            let names: Vec<&str> = trends.names.iter().map(|name| &**name).collect();
            history = history.keep_longer(&names, trends.window_ms);
        }
        copy_history(&self.history, &mut history);
        self.history = history;
        // Cached results and pairings belong to the old rules' expressions.
        self.cache = EvalCache::default();
        self.rules = rules;
        self.states = states;
        self.env = EvalEnv {
            external_labels: update.external_labels.clone(),
            external_url: self.env.external_url.clone(),
        };
        // The carried state is written at once, so that a crash right after a reload restores it.
        if let Err(error) = self.save(t) {
            tracing::warn!(error = %error, "cannot persist alert state after a reload");
        }
        report
    }

    fn save(&mut self, t: i64) -> Result<(), String> {
        let Some(dir) = &self.state_dir else {
            return Ok(());
        };
        let file = state::snapshot(&self.rules, &self.states, t);
        state::save(dir, &file).map_err(|error| error.to_string())?;
        self.last_saved = Some(t);
        Ok(())
    }

    fn view(&self, t: i64) -> AlertsView {
        let mut alerts = Vec::new();
        let mut exposition_alerts = Vec::new();
        let mut exposition_for_state = Vec::new();
        for (group, state) in self.rules.groups.iter().zip(&self.states) {
            for (rule, rule_state) in group.rules.iter().zip(&state.rules) {
                let Rule::Alerting(alerting) = rule else {
                    continue;
                };
                for alert in rule_state.alerts.values() {
                    alerts.push(AlertSummary {
                        group: group.name.clone(),
                        alertname: alerting.name.clone(),
                        labels: alert.labels.to_map(),
                        annotations: alert.annotations.clone(),
                        state: alert.state,
                        value: alert.value,
                        active_at: system_time(alert.active_at),
                        fired_at: alert.fired_at.map(system_time),
                        resolved_at: alert.resolved_at.map(system_time),
                    });
                    if alert.state == AlertState::Inactive {
                        continue;
                    }
                    let mut builder = alert.labels.builder();
                    builder.set("alertstate", alert.state.as_str());
                    exposition_alerts.push((builder.build(), 1.0));
                    exposition_for_state.push((
                        alert.labels.clone(),
                        alert.active_at.div_euclid(1000) as f64,
                    ));
                }
            }
        }
        alerts.sort_by(|a, b| (&a.alertname, &a.labels).cmp(&(&b.alertname, &b.labels)));
        let mut exposition = String::new();
        write_family(
            &mut exposition,
            ALERTS_METRIC,
            "Pending and firing alert instances of dbwatch's alerting rules, 1 each",
            exposition_alerts,
        );
        write_family(
            &mut exposition,
            ALERTS_FOR_STATE_METRIC,
            "Unix time at which each pending or firing alert instance became active",
            exposition_for_state,
        );
        AlertsView {
            alerts,
            evaluated_at: Some(system_time(t)),
            trends: Arc::default(),
            exposition,
        }
    }
}

fn write_family(out: &mut String, name: &str, help: &str, mut series: Vec<(Metric, f64)>) {
    if series.is_empty() {
        return;
    }
    series.sort_by(|a, b| a.0.cmp_labels(&b.0));
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    for (metric, value) in series {
        out.push_str(name);
        out.push('{');
        for (index, (label, label_value)) in metric.labels().iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_label(out, label, label_value);
        }
        out.push_str("} ");
        write_value(out, value);
        out.push('\n');
    }
}

/// Copies every sample `from` holds of a name `into` keeps: a reload's new history starts with the old one's
/// past, so `rate()` and `for` see no gap.
fn copy_history(from: &History, into: &mut History) {
    let every = crate::promql::Selector {
        name: None,
        matchers: Vec::new(),
        offset_ms: 0,
        at: None,
        text: String::new(),
    };
    from.for_each_selected(&every, |metric, points| {
        if metric.name().is_some_and(|name| !into.keeps(name)) {
            return;
        }
        for point in points {
            into.append(metric, point.t, point.v);
        }
    });
}

/// Only the metrics some rule can select are kept in the history.
fn name_filter(rules: &RuleSet) -> NameFilter {
    let mut selectors = Vec::new();
    for group in &rules.groups {
        for rule in &group.rules {
            rule.expr()
                .visit_selectors(&mut |selector, _| selectors.push(selector));
        }
    }
    NameFilter::for_selectors(selectors)
}

/// The longest lookback (range plus offset) dbwatch accepts without a warning. Rule files stay Prometheus's
/// format, so longer ones load (refusing them would refuse files Prometheus accepts); but the history is in
/// memory: at a 15 s interval a day is 5,760 samples (about 92 KB) per selected series, so past a day a
/// selector over many series can exhaust the daemon's memory, and a TSDB is the right tool.
pub const HISTORY_RETENTION_WARN_MS: i64 = 24 * 3600 * 1000;

/// A rule whose lookback exceeds [`HISTORY_RETENTION_WARN_MS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongLookback {
    pub group: String,
    pub rule: String,
    pub lookback_ms: i64,
}

/// The rules that make the history keep more than [`HISTORY_RETENTION_WARN_MS`], each with its longest lookback.
pub fn long_lookbacks(rules: &RuleSet) -> Vec<LongLookback> {
    let mut found = Vec::new();
    for group in &rules.groups {
        for rule in &group.rules {
            let longest = rule.expr().reach_ms();
            if longest > HISTORY_RETENTION_WARN_MS {
                found.push(LongLookback {
                    group: group.name.clone(),
                    rule: rule.name().to_owned(),
                    lookback_ms: longest,
                });
            }
        }
    }
    found
}

/// How much history the rules need: the longest range or lookback, plus offsets, plus one interval of margin.
fn retention_ms(rules: &RuleSet, options: &EngineOptions) -> i64 {
    let mut longest = LOOKBACK_MS;
    let mut largest_interval = millis(options.evaluation_interval);
    for group in &rules.groups {
        if let Some(interval) = group.interval {
            largest_interval = largest_interval.max(millis(interval));
        }
        for rule in &group.rules {
            longest = longest.max(rule.expr().reach_ms());
        }
    }
    longest + largest_interval
}

/// Evaluates every group once at `t` over `snapshots` and trims the history, as the engine's cycle does; for
/// benchmarks and tests of whole cycles.
pub fn evaluate_once(
    rules: &RuleSet,
    history: &mut History,
    cache: &mut EvalCache,
    states: &mut [GroupState],
    snapshots: &[Arc<dyn TargetSamples>],
    t: i64,
) -> usize {
    history.scrape(snapshots, t);
    let env = EvalEnv::default();
    let mut alerts = 0;
    for (group, state) in rules.groups.iter().zip(states.iter_mut()) {
        evaluate_group(group, state, history, cache, t, &env);
        alerts += state
            .rules
            .iter()
            .map(|rule| rule.alerts.len())
            .sum::<usize>();
    }
    let cutoff = history.trim(t);
    cache.end_cycle(cutoff);
    alerts
}

/// A history sized for `rules`, as the engine builds it.
pub fn history_for(rules: &RuleSet, options: &EngineOptions) -> History {
    History::new(name_filter(rules), Some(retention_ms(rules, options)))
        .with_sample_interval(shortest_interval_ms(rules, options))
}

/// The shortest evaluation interval: the history gains a sample per series that often.
fn shortest_interval_ms(rules: &RuleSet, options: &EngineOptions) -> i64 {
    rules
        .groups
        .iter()
        .map(|group| millis(group.interval.unwrap_or(options.evaluation_interval)))
        .min()
        .unwrap_or_else(|| millis(options.evaluation_interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_rule_file;
    use crate::source::{Latest, TargetScrape};
    use dbwatch_metric::{MetricDesc, MetricKind};
    use std::path::Path;

    #[test]
    fn lookbacks_past_a_day_are_named_and_shorter_ones_are_not() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: daily\n        expr: max_over_time(db_up[1d]) == 0\n      - alert: weekly\n        expr: db_up offset 7d == 0\n      - record: month:x\n        expr: avg_over_time(db_up[25d] offset 5d)\n";
        let rules = RuleSet {
            groups: parse_rule_file(Path::new("long.yml"), text).expect("valid rules"),
        };
        let long = long_lookbacks(&rules);
        let names: Vec<(&str, i64)> = long
            .iter()
            .map(|long| (long.rule.as_str(), long.lookback_ms))
            .collect();
        let day = 24 * 3600 * 1000;
        // [1d] is exactly the bound: no warning. An offset adds the 5 m instant lookback.
        assert_eq!(
            names,
            vec![("weekly", 7 * day + LOOKBACK_MS), ("month:x", 30 * day)]
        );
        let shipped = crate::load_builtin().expect("shipped rules");
        assert!(long_lookbacks(&shipped).is_empty());
    }

    static DB_UP: MetricDesc = MetricDesc {
        name: "db_up",
        help: "Whether the last poll of the target succeeded",
        kind: MetricKind::Gauge,
        labels: &[],
    };

    fn snapshot(target: &str, up: f64) -> TargetScrape {
        TargetScrape {
            target: target.to_owned(),
            db: "postgres".to_owned(),
            labels: BTreeMap::new(),
            samples: vec![DB_UP.sample(up)],
        }
    }

    #[tokio::test]
    async fn the_engine_evaluates_publishes_persists_and_notifies() {
        let rules = RuleSet {
            groups: parse_rule_file(
                Path::new("r.yml"),
                "groups:\n  - name: fleet\n    interval: 1s\n    rules:\n      - alert: target_down\n        expr: db_up == 0\n        labels:\n          severity: critical\n",
            )
            .expect("valid"),
        };
        let store = Arc::new(Latest::new(1));
        store.publish(snapshot("pg", 0.0));
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = RuleMetrics::register(&Registry::new()).expect("registered");
        let engine = RulesEngine::new(
            Arc::clone(&store) as Arc<dyn SampleSource>,
            rules,
            EngineOptions {
                state_dir: Some(dir.path().to_owned()),
                ..EngineOptions::default()
            },
            metrics,
        );
        let alerts = engine.alerts();
        let mut views = alerts.subscribe();
        let state_of = |views: &watch::Receiver<Arc<AlertsView>>| {
            views.borrow().alerts.first().map(|alert| alert.state)
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(engine.run(shutdown.clone()));

        // A publication wakes every subscriber, the notifier's way of hearing of a change.
        tokio::time::timeout(Duration::from_secs(30), async {
            while state_of(&views) != Some(AlertState::Firing) {
                views.changed().await.expect("the engine publishes");
            }
        })
        .await
        .expect("the alert fires within 30 s");
        let view = alerts.view();
        assert_eq!(view.alerts.len(), 1);
        assert_eq!(view.alerts[0].alertname, "target_down");
        assert_eq!(view.alerts[0].state, AlertState::Firing);
        let mut text = String::new();
        alerts.render(&mut text);
        assert!(
            text.contains("ALERTS{alertname=\"target_down\",alertstate=\"firing\",db=\"postgres\",severity=\"critical\",target=\"pg\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE ALERTS_FOR_STATE gauge\n"), "{text}");
        assert!(dir.path().join(state::STATE_FILE).exists());

        store.publish(snapshot("pg", 1.0));
        tokio::time::timeout(Duration::from_secs(30), async {
            while state_of(&views) != Some(AlertState::Inactive) {
                views.changed().await.expect("the engine publishes");
            }
        })
        .await
        .expect("the alert resolves within 30 s");
        let view = alerts.view();
        assert_eq!(view.alerts[0].state, AlertState::Inactive);
        assert!(view.alerts[0].resolved_at.is_some());
        shutdown.cancel();
        task.await.expect("engine stopped");
        let mut text = String::new();
        alerts.render(&mut text);
        assert!(text.is_empty(), "{text}");
    }

    #[test]
    fn a_reload_keeps_pending_start_times_and_the_sample_history() {
        let parse = |text: &str| RuleSet {
            groups: parse_rule_file(Path::new("r.yml"), text).expect("valid"),
        };
        let before = parse("groups:\n  - name: g\n    rules:\n      - alert: down\n        expr: db_up == 0\n        for: 1m\n");
        // The threshold edited, a rule added that needs the samples from before the reload.
        let after = parse("groups:\n  - name: g\n    rules:\n      - alert: down\n        expr: db_up < 0.5\n        for: 1m\n      - alert: counted\n        expr: count_over_time(db_up[1m]) >= 7\n");
        let store = Arc::new(Latest::new(1));
        store.publish(snapshot("pg", 0.0));
        let metrics = RuleMetrics::register(&Registry::new()).expect("registered");
        let engine = RulesEngine::new(
            Arc::clone(&store) as Arc<dyn SampleSource>,
            before,
            EngineOptions::default(),
            metrics,
        );
        let mut core = engine.core;
        let start = 1_700_000_000_000;
        for second in 0..5 {
            core.cycle(&store.latest(), start + second * 1000, &[0]);
        }
        let pending = |core: &Core, rule: usize| {
            core.states[0].rules[rule]
                .alerts
                .values()
                .next()
                .map(|alert| (alert.state, alert.active_at))
        };
        assert_eq!(pending(&core, 0), Some((AlertState::Pending, start)));

        let update = RuleUpdate {
            rules: Arc::new(after),
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            external_labels: BTreeMap::new(),
        };
        let report = core.swap(
            &update,
            &EngineOptions::default(),
            &store.latest(),
            start + 5_500,
        );
        assert_eq!((report.restored, report.dropped), (1, 0));
        core.cycle(&store.latest(), start + 6_000, &[0]);
        // Same start time: it fires a minute after it first went pending, not a minute after the reload.
        assert_eq!(pending(&core, 0), Some((AlertState::Pending, start)));
        // Seven samples in the last minute: five from before the reload, the reload's own read, one after; a
        // history started afresh would hold two.
        assert_eq!(
            pending(&core, 1).map(|(state, _)| state),
            Some(AlertState::Firing)
        );
        core.cycle(&store.latest(), start + 60_000, &[0]);
        assert_eq!(
            pending(&core, 0).map(|(state, _)| state),
            Some(AlertState::Firing)
        );
    }
}
