//! Notifications: Alertmanager-style routing, grouping and inhibition of the rules engine's alerts, delivered to
//! Slack, PagerDuty, email and webhooks through a durable outbox.
//!
//! ```text
//!  AlertsHandle::view() ──(every evaluation; transitions only wake the loop)──► reconcile
//!        │ firing + resolved alerts, inhibition applied
//!        ▼
//!  route tree ──► groups (route + group_by values) ──► timers: group_wait, group_interval, repeat_interval
//!        │ flush: compare with the notification log (per group × receiver × integration)
//!        ▼
//!  render (built-in, cannot fail) ──► store: log entry + outbox entry written together, fsynced
//!        │
//!        ▼
//!  delivery: per destination one request in flight, FIFO per group, Retry-After, jittered backoff,
//!            dead letter after max_attempts or a permanent refusal
//! ```
//!
//! Why reconcile from the full view rather than from transitions: the engine drops transitions when the channel
//! is full and a restart loses whatever was in flight, while the view always lists every pending, firing and
//! recently resolved instance. Diffing the view against the persisted notification log (like Alertmanager's
//! dedup stage) makes every notification a function of state, not of events, so none can be lost: an alert
//! notified as firing that is no longer in the view at all (dbwatch was down past the engine's 15-minute resolved
//! retention) is resolved from the copy kept in the log. Transitions only wake the loop so that a new alert goes
//! out without waiting for the next tick.
//!
//! Delivery is at-least-once: an entry is removed only after its destination accepted it. A crash between the
//! acceptance and that removal re-sends it after the restart; PagerDuty folds such a repeat into the same
//! incident through the stable `dedup_key`.

pub mod config;
pub mod forward;
pub mod html;
pub mod matcher;
pub mod render;
pub mod route;
pub mod send;
pub mod silence;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::Notify;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use dbwatch_rules::alerting::unix_millis;
use dbwatch_rules::{AlertState, AlertsHandle};

use config::Route;
pub use config::{
    load_file, load_str, DeliveryOptions, Integration, NotifyConfig, NotifyConfigErrors,
};
use render::Notice;
use route::RouteTree;
use send::Outcome;
use store::{log_key, AlertRecord, LogEntry, OutboxEntry, State};

/// How often the view is reconciled when nothing wakes the loop earlier.
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// Slack allows about one message per second per webhook.
const SLACK_SPACING: Duration = Duration::from_secs(1);
/// Undelivered notifications kept at most. Past it the oldest are shed (dead-lettered, counted): a newer
/// notification of a group carries the group's whole current state, so the oldest are the least useful, and an
/// outbox that grows while a receiver hangs makes every fsynced state write larger. 10,000 holds a storm of
/// 5,000 alerts in groups of one, firing and then resolved.
pub const MAX_OUTBOX_ENTRIES: usize = 10_000;
/// A send task is abandoned (and retried) after this much more than the delivery timeout; the request and the
/// SMTP session have their own timeouts, so this only guards against one that does not honour them.
const SEND_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot create the notifier state folder {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot register the notifier's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The notifier's metrics, in the daemon's registry.
#[derive(Clone)]
pub struct NotifyMetrics {
    pub notifications: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub outbox: IntGauge,
    pub latency: HistogramVec,
    pub state_write_failures: prometheus::IntCounter,
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
        registry.register(Box::new(notifications.clone()))?;
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
        })
    }
}

/// An aggregation group as of one reconcile.
struct Group<'a> {
    key: String,
    receiver: String,
    route: Option<&'a Route>,
    labels: BTreeMap<String, String>,
    firing: BTreeMap<String, AlertRecord>,
    /// Resolved instances still in the view.
    resolved: BTreeMap<String, AlertRecord>,
}

/// Where one outbox entry goes: (receiver, integration index).
type Destination = (String, usize);

/// What depends only on one published view: each alert's fingerprint and whether inhibition mutes it (the
/// inhibition pass is indexed, see [`route::Inhibitor`], and still costs a pass over every firing alert).
struct ViewFacts {
    view: Arc<dbwatch_rules::AlertsView>,
    fingerprints: Vec<String>,
    inhibited: Vec<bool>,
}

impl ViewFacts {
    fn new(config: &NotifyConfig, view: &Arc<dbwatch_rules::AlertsView>) -> ViewFacts {
        let inhibitor = route::Inhibitor::new(
            &config.inhibit_rules,
            view.alerts
                .iter()
                .filter(|alert| alert.state == AlertState::Firing)
                .map(|alert| &alert.labels),
        );
        ViewFacts {
            view: Arc::clone(view),
            fingerprints: view
                .alerts
                .iter()
                .map(|alert| render::fingerprint(&alert.labels))
                .collect(),
            inhibited: view
                .alerts
                .iter()
                .map(|alert| {
                    alert.state == AlertState::Firing && inhibitor.inhibited(&alert.labels)
                })
                .collect(),
        }
    }
}

pub struct Notifier {
    config: Arc<NotifyConfig>,
    tree: Arc<RouteTree>,
    state_dir: PathBuf,
    state: State,
    metrics: NotifyMetrics,
    alerts: AlertsHandle,
    /// Woken by the rules engine after an evaluation with transitions; shared, so it survives a restart of
    /// either side.
    wake: Arc<Notify>,
    client: reqwest::Client,
    /// Next flush of each live group.
    timers: HashMap<String, Instant>,
    /// Destinations with a request in flight, and when each may be sent to again.
    busy: BTreeSet<Destination>,
    not_before: HashMap<Destination, Instant>,
    /// The entry and destination of each send task, by task id: a task that panics or is aborted still frees
    /// its destination and has its entry retried.
    sending: HashMap<Id, (u64, Destination)>,
    /// Fingerprints and inhibition of the last view reconciled.
    facts: Option<ViewFacts>,
    /// The state changed outside `reconcile` (a delivery settled) and must be saved.
    dirty_flag: bool,
    silences: Arc<silence::Silences>,
    forwarder: forward::Forwarder,
    seed: NotifierSeed,
}

/// What a notifier is built from. The supervisor keeps it to build a new notifier from the saved state when
/// the running one ends before shutdown; what it holds (configuration, metrics, the alerts view, the wake-up,
/// the silences the API serves, the HTTP client) is shared by every instance.
#[derive(Clone)]
pub struct NotifierSeed {
    config: Arc<NotifyConfig>,
    state_dir: PathBuf,
    metrics: NotifyMetrics,
    alerts: AlertsHandle,
    wake: Arc<Notify>,
    silences: Arc<silence::Silences>,
    client: reqwest::Client,
    fault: Arc<AtomicBool>,
}

impl NotifierSeed {
    /// A notifier restored from the outbox and notification log saved in the state folder.
    pub fn build(&self) -> Result<Notifier, NotifyError> {
        let wall = unix_millis(SystemTime::now());
        let mut state = store::load(&self.state_dir)?;
        restore(&mut state, &self.config.delivery, wall);
        self.metrics
            .outbox
            .set(i64::try_from(state.outbox.len()).unwrap_or(i64::MAX));
        if !state.outbox.is_empty() {
            tracing::info!(
                queued = state.outbox.len(),
                "notifications restored from the outbox"
            );
        }
        let delivery = &self.config.delivery;
        let forwarder = forward::Forwarder::new(
            delivery.alertmanagers.clone(),
            delivery.alertmanager_resend,
            delivery.timeout,
            delivery.external_url.clone(),
        );
        Ok(Notifier {
            tree: Arc::new(RouteTree::new(&self.config.route)),
            config: Arc::clone(&self.config),
            state_dir: self.state_dir.clone(),
            state,
            metrics: self.metrics.clone(),
            alerts: self.alerts.clone(),
            wake: Arc::clone(&self.wake),
            client: self.client.clone(),
            timers: HashMap::new(),
            busy: BTreeSet::new(),
            not_before: HashMap::new(),
            sending: HashMap::new(),
            facts: None,
            dirty_flag: false,
            silences: Arc::clone(&self.silences),
            forwarder,
            seed: self.clone(),
        })
    }

    /// Test hook, not reachable from the network: the running notifier returns at its next loop turn without
    /// saving, as a task that died would, so that a test can watch the supervisor restart it.
    #[doc(hidden)]
    pub fn inject_stop(&self) {
        self.fault.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Makes a saved state safe to run: times from the file (written by another version, on another clock, or
/// by hand) are brought within what this process would have set, so none can wedge a lane. An entry queued
/// "in the future" counts from now; one held back longer than the `Retry-After` cap is held only as long as
/// the cap. Entries whose give-up time has passed are dead-lettered by the first loop turn.
fn restore(state: &mut State, delivery: &DeliveryOptions, wall: i64) {
    let cap = wall.saturating_add(millis(retry_after_cap(delivery)));
    for entry in &mut state.outbox {
        entry.created_at = entry.created_at.min(wall);
        entry.not_before = entry.not_before.min(cap);
    }
}

/// Milliseconds of `duration`, saturating at `i64::MAX`.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// `now + delay`, or a year from now if that overflows (no delay the notifier computes comes close).
fn instant_after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn retry_after_cap(delivery: &DeliveryOptions) -> Duration {
    delivery.max_retry_after.min(config::MAX_RETRY_AFTER)
}

/// When the notifier gives up on `entry`: its queueing time plus `max_age`.
fn give_up_at(entry: &OutboxEntry, delivery: &DeliveryOptions) -> i64 {
    entry.created_at.saturating_add(millis(delivery.max_age))
}

impl Notifier {
    /// Loads the outbox and notification log saved in `state_dir` (created if missing). `wake` is notified by
    /// the rules engine when alerts change state; the notifier also reconciles on its own every 500 ms.
    pub fn new(
        config: NotifyConfig,
        state_dir: &Path,
        registry: &Registry,
        alerts: AlertsHandle,
        wake: Arc<Notify>,
    ) -> Result<Notifier, NotifyError> {
        std::fs::create_dir_all(state_dir).map_err(|source| NotifyError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let silences = Arc::new(silence::Silences::load(state_dir)?);
        let metrics = NotifyMetrics::register(registry)?;
        for receiver in &config.receivers {
            for integration in &receiver.integrations {
                for outcome in ["delivered", "retried", "failed"] {
                    metrics.notifications.with_label_values(&[
                        receiver.name.as_str(),
                        integration.kind(),
                        outcome,
                    ]);
                }
                metrics
                    .dead_letters
                    .with_label_values(&[receiver.name.as_str(), integration.kind()]);
            }
        }
        let client = http_client(config.delivery.timeout)?;
        let seed = NotifierSeed {
            config: Arc::new(config),
            state_dir: state_dir.to_owned(),
            metrics,
            alerts,
            wake,
            silences,
            client,
            fault: Arc::new(AtomicBool::new(false)),
        };
        seed.build()
    }

    /// What the supervisor rebuilds this notifier from.
    pub fn seed(&self) -> NotifierSeed {
        self.seed.clone()
    }

    /// The silences API (Alertmanager API v2 paths), sharing the notifier's silences.
    pub fn api_router(&self) -> axum::Router {
        silence::router(Arc::clone(&self.silences))
    }

    /// Routes, groups and delivers until `shutdown`. Undelivered notifications stay in the outbox for the next
    /// start.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut inflight: JoinSet<(u64, Destination, Outcome)> = JoinSet::new();
        let mut wake = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Only a wake-up: the view it came with is already published.
                _ = self.wake.notified() => {}
                Some(joined) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    match joined {
                        Ok((task, (id, destination, outcome))) => {
                            self.sending.remove(&task);
                            self.settle(id, destination, outcome);
                        }
                        Err(error) => {
                            let reason = if error.is_panic() {
                                "the send task panicked".to_owned()
                            } else {
                                format!("the send task failed: {error}")
                            };
                            tracing::error!(reason = %reason, "a notification send task failed");
                            // Its destination is freed and its entry retried like any failed attempt.
                            if let Some((id, destination)) = self.sending.remove(&error.id()) {
                                self.settle(id, destination, Outcome::Retry { reason, retry_after: None });
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            if self.seed.fault.swap(false, Ordering::SeqCst) {
                tracing::error!("injected fault: the notifier stops without saving");
                return;
            }
            let now = Instant::now();
            let mut changed = self.reconcile(now);
            let wall = unix_millis(SystemTime::now());
            changed |= self.shed(wall);
            changed |= self.expire(wall);
            // Settled entries were changed in `settle`; saving once per loop turn covers both.
            changed |= self.take_dirty();
            if changed {
                // Awaited before dispatch: what is sent is durable first.
                self.save().await;
            }
            self.dispatch(now, &mut inflight);
            self.forwarder.tick(
                &self.alerts.view(),
                now,
                &self.client,
                &self.metrics,
                &shutdown,
            );
            wake = self.next_wake(now);
        }
        inflight.abort_all();
        self.save().await;
        self.forwarder.finish().await;
    }

    fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty_flag)
    }

    /// Writes the state on the blocking pool: serialising a large outbox and two fsyncs must not hold one of
    /// the runtime's two workers.
    async fn save(&mut self) {
        self.metrics
            .outbox
            .set(i64::try_from(self.state.outbox.len()).unwrap_or(i64::MAX));
        let dir = self.state_dir.clone();
        let state = self.state.clone();
        let saved = tokio::task::spawn_blocking(move || store::save(&dir, &state)).await;
        let error = match saved {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => format!("the write task failed: {error}"),
        };
        self.metrics.state_write_failures.inc();
        tracing::error!(error = %error, "cannot persist the notifier state; notifications may repeat after a restart");
    }

    /// Sheds the oldest entries past [`MAX_OUTBOX_ENTRIES`]. True when any was shed.
    fn shed(&mut self, wall: i64) -> bool {
        let excess = self.state.outbox.len().saturating_sub(MAX_OUTBOX_ENTRIES);
        if excess == 0 {
            return false;
        }
        let sending: HashSet<u64> = self.sending.values().map(|(id, _)| *id).collect();
        // Oldest first (the outbox is in id order), skipping entries being sent, whose outcome is still to come.
        let shed: Vec<u64> = self
            .state
            .outbox
            .iter()
            .filter(|entry| !sending.contains(&entry.id))
            .take(excess)
            .map(|entry| entry.id)
            .collect();
        for id in shed {
            if let Some(entry) = self.state.take(id) {
                self.dead_letter(
                    entry,
                    format!("shed: the outbox holds more than {MAX_OUTBOX_ENTRIES} notifications"),
                    wall,
                );
            }
        }
        true
    }

    /// Dead-letters the entries whose give-up time has passed, or whose next attempt would come after it. True
    /// when any was.
    fn expire(&mut self, wall: i64) -> bool {
        let delivery = &self.config.delivery;
        let sending: HashSet<u64> = self.sending.values().map(|(id, _)| *id).collect();
        let expired: Vec<(u64, String)> = self
            .state
            .outbox
            .iter()
            .filter(|entry| !sending.contains(&entry.id))
            .filter_map(|entry| {
                let give_up = give_up_at(entry, delivery);
                let last = entry
                    .last_error
                    .as_deref()
                    .map(|error| format!("; last error: {error}"))
                    .unwrap_or_default();
                let reason = if wall >= give_up {
                    Some(format!(
                        "not delivered within {} of being queued{last}",
                        humantime::format_duration(delivery.max_age)
                    ))
                } else if entry.not_before > give_up {
                    Some(format!(
                        "its next attempt would fall past its give-up time ({} after being queued){last}",
                        humantime::format_duration(delivery.max_age)
                    ))
                } else {
                    None
                };
                reason.map(|reason| (entry.id, reason))
            })
            .collect();
        let any = !expired.is_empty();
        for (id, reason) in expired {
            if let Some(entry) = self.state.take(id) {
                self.dead_letter(entry, reason, wall);
            }
        }
        any
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = instant_after(now, TICK);
        for at in self.timers.values() {
            wake = wake.min(*at);
        }
        let wall = unix_millis(SystemTime::now());
        for entry in self
            .state
            .outbox
            .iter()
            .filter(|entry| entry.not_before > wall)
        {
            let delay = Duration::from_millis(
                u64::try_from(entry.not_before.saturating_sub(wall)).unwrap_or(0),
            );
            wake = wake.min(instant_after(now, delay));
        }
        for at in self.not_before.values() {
            if *at > now {
                wake = wake.min(*at);
            }
        }
        wake.max(instant_after(now, Duration::from_millis(5)))
    }

    /// One reconcile, as a loop turn runs it: for benchmarks and tests.
    #[doc(hidden)]
    pub fn reconcile_now(&mut self) -> bool {
        self.reconcile(Instant::now())
    }

    /// Forgets the group timers, so that the next reconcile flushes every group again: for benchmarks.
    #[doc(hidden)]
    pub fn reset_timers(&mut self) {
        self.timers.clear();
    }
}

impl Notifier {
    /// Brings groups up to date with the engine's latest view and flushes the due ones. True when the state
    /// changed.
    fn reconcile(&mut self, now: Instant) -> bool {
        let view = self.alerts.view();
        // Before the engine's first evaluation the view is empty, not "everything resolved".
        if view.evaluated_at.is_none() {
            return false;
        }
        let config = Arc::clone(&self.config);
        let tree = Arc::clone(&self.tree);
        let wall = unix_millis(SystemTime::now());
        // The engine publishes a new view once per evaluation (15 s by default) and this runs every 500 ms:
        // what depends on the view alone is computed once per view.
        let facts = match self.facts.take() {
            Some(facts) if Arc::ptr_eq(&facts.view, &view) => facts,
            _ => ViewFacts::new(&config, &view),
        };
        let mut muted: BTreeSet<String> = BTreeSet::new();
        // No false resolve: an alert told as firing that the engine now holds as *pending* has not resolved; the
        // engine lost its state (a corrupt or lost alerts.json, or one older than the outage tolerance), and its
        // `for` is running again. Such an alert is carried as still firing, like a muted one, until the engine
        // fires it again (already told: no new page) or resolves it itself (then the resolve goes out).
        let told_firing: BTreeSet<&str> = if view
            .alerts
            .iter()
            .any(|alert| alert.state == AlertState::Pending)
        {
            self.state
                .log
                .values()
                .flat_map(|entry| entry.firing.iter().map(|alert| alert.fingerprint.as_str()))
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut held: BTreeSet<String> = BTreeSet::new();
        let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
        for (index, alert) in view.alerts.iter().enumerate() {
            let firing = match (alert.state, alert.fired_at, alert.resolved_at) {
                (AlertState::Firing, _, _) => true,
                // Resolved after having fired: a pending alert that went away never notified anyone.
                (AlertState::Inactive, Some(_), Some(_)) => false,
                (AlertState::Pending, _, _) => {
                    if !told_firing.is_empty() {
                        let fingerprint = render::fingerprint(&alert.labels);
                        if told_firing.contains(fingerprint.as_str()) {
                            held.insert(fingerprint);
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let fingerprint = facts.fingerprints[index].clone();
            if firing && self.silences.silenced_by(&alert.labels, wall).is_some() {
                muted.insert(fingerprint);
                continue;
            }
            if firing && facts.inhibited[index] {
                muted.insert(fingerprint);
                continue;
            }
            let record = AlertRecord {
                fingerprint: fingerprint.clone(),
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                starts_at: unix_millis(alert.fired_at.unwrap_or(alert.active_at)),
                ends_at: if firing {
                    None
                } else {
                    alert.resolved_at.map(unix_millis)
                },
            };
            for matched in tree.matches(&config.route, &alert.labels) {
                let labels = route::group_labels(matched.route, &alert.labels);
                let key = format!("{{{}}}:{}", matched.id, label_string(&labels));
                let group = groups.entry(key.clone()).or_insert_with(|| Group {
                    key,
                    receiver: matched.route.receiver.clone(),
                    route: Some(matched.route),
                    labels,
                    firing: BTreeMap::new(),
                    resolved: BTreeMap::new(),
                });
                let slot = if firing {
                    &mut group.firing
                } else {
                    &mut group.resolved
                };
                slot.insert(fingerprint.clone(), record.clone());
            }
        }
        // A held alert that another rule with the very same labels has firing is told as firing already.
        muted.extend(held.into_iter().filter(|fingerprint| {
            !groups
                .values()
                .any(|group| group.firing.contains_key(fingerprint))
        }));
        // Groups told about firing alerts that have since vanished from the view still owe a resolve.
        for entry in self.state.log.values() {
            groups
                .entry(entry.group_key.clone())
                .or_insert_with(|| Group {
                    key: entry.group_key.clone(),
                    receiver: entry.receiver.clone(),
                    route: None,
                    labels: entry.group_labels.clone(),
                    firing: BTreeMap::new(),
                    resolved: BTreeMap::new(),
                });
        }
        let mut changed = false;
        let live: BTreeSet<&String> = groups.keys().collect();
        self.timers.retain(|key, _| live.contains(key));
        // The groups the log has entries for, once per reconcile rather than a scan of the log per group.
        let logged_groups: HashSet<String> = self
            .state
            .log
            .values()
            .map(|entry| entry.group_key.clone())
            .collect();
        for group in groups.values() {
            let logged = logged_groups.contains(&group.key);
            if group.firing.is_empty() && !logged {
                self.timers.remove(&group.key);
                continue;
            }
            let due = *self.timers.entry(group.key.clone()).or_insert_with(|| {
                if logged {
                    // Resumed after a restart: the group was notified before, so no new group_wait.
                    return now;
                }
                let wait = group
                    .route
                    .map(|route| route.group_wait)
                    .unwrap_or_default();
                let oldest = group
                    .firing
                    .values()
                    .map(|alert| alert.starts_at)
                    .min()
                    .unwrap_or(wall);
                // Alertmanager flushes at once when the first alert started longer than group_wait ago.
                let waited =
                    Duration::from_millis(u64::try_from(wall.saturating_sub(oldest)).unwrap_or(0));
                instant_after(now, wait.saturating_sub(waited))
            });
            if due > now {
                continue;
            }
            changed |= self.flush(&config, group, &muted, wall);
            let interval = group
                .route
                .map(|route| route.group_interval)
                .unwrap_or(config.route.group_interval);
            self.timers
                .insert(group.key.clone(), instant_after(now, interval));
        }
        drop(groups);
        self.facts = Some(facts);
        changed
    }

    /// Alertmanager's dedup decision for each integration of the group's receiver, against the log; queues the
    /// notifications that are due. True when the state changed.
    fn flush(
        &mut self,
        config: &NotifyConfig,
        group: &Group<'_>,
        muted: &BTreeSet<String>,
        wall: i64,
    ) -> bool {
        let Some(receiver) = config.receiver(&group.receiver) else {
            // The configuration changed since the log was written: nothing can be sent there any more.
            let before = self.state.log.len();
            self.state.log.retain(|_, entry| {
                entry.group_key != group.key || entry.receiver != group.receiver
            });
            tracing::warn!(receiver = %group.receiver, group = %group.key, "receiver no longer configured; its pending resolves are dropped");
            return before != self.state.log.len();
        };
        let repeat = group
            .route
            .map(|route| route.repeat_interval)
            .unwrap_or(config.route.repeat_interval);
        let mut changed = false;
        for (index, integration) in receiver.integrations.iter().enumerate() {
            let key = log_key(&group.key, &receiver.name, index);
            let entry = self.state.log.get(&key);
            let mut firing: Vec<AlertRecord> = group.firing.values().cloned().collect();
            firing.sort_by(|a, b| a.labels.cmp(&b.labels));
            // Muted alerts told as firing stay so in the log: inhibition hides them, it does not resolve them.
            let carried: Vec<AlertRecord> = entry
                .map(|entry| {
                    entry
                        .firing
                        .iter()
                        .filter(|alert| muted.contains(&alert.fingerprint))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let resolved: Vec<AlertRecord> = entry
                .map(|entry| {
                    entry
                        .firing
                        .iter()
                        .filter(|alert| {
                            !group.firing.contains_key(&alert.fingerprint)
                                && !muted.contains(&alert.fingerprint)
                        })
                        .map(|alert| {
                            group
                                .resolved
                                .get(&alert.fingerprint)
                                .cloned()
                                .unwrap_or_else(|| AlertRecord {
                                    ends_at: Some(wall),
                                    ..alert.clone()
                                })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let needed = match entry {
                None => !firing.is_empty(),
                Some(entry) => {
                    let told: BTreeSet<&str> = entry
                        .firing
                        .iter()
                        .map(|alert| alert.fingerprint.as_str())
                        .collect();
                    let told_resolved: BTreeSet<&str> =
                        entry.resolved.iter().map(String::as_str).collect();
                    firing
                        .iter()
                        .any(|alert| !told.contains(alert.fingerprint.as_str()))
                        || (firing.is_empty() && !resolved.is_empty())
                        || (integration.send_resolved()
                            && resolved
                                .iter()
                                .any(|alert| !told_resolved.contains(alert.fingerprint.as_str())))
                        || (!firing.is_empty()
                            && wall.saturating_sub(entry.sent_at) >= millis(repeat))
                }
            };
            if !needed {
                continue;
            }
            let first_of_episode = entry.is_none();
            let episode = entry.map(|entry| entry.episode).unwrap_or(wall);
            let send = !firing.is_empty() || integration.send_resolved();
            if send {
                let notice = Notice {
                    receiver: &receiver.name,
                    group_key: &group.key,
                    group_labels: &group.labels,
                    firing: firing.clone(),
                    resolved: if integration.send_resolved() {
                        resolved.clone()
                    } else {
                        Vec::new()
                    },
                    external_url: &config.delivery.external_url,
                    now: wall,
                    episode,
                };
                let payload = match integration {
                    Integration::Slack(slack) => render::slack(slack, &notice),
                    Integration::PagerDuty(pagerduty) => render::pagerduty(pagerduty, &notice),
                    Integration::Email(email) => render::email(email, &notice, first_of_episode),
                    Integration::Webhook(webhook) => render::webhook(webhook, &notice),
                };
                self.state.enqueue(OutboxEntry {
                    id: 0,
                    receiver: receiver.name.clone(),
                    integration: index,
                    integration_kind: integration.kind().to_owned(),
                    group_key: group.key.clone(),
                    payload,
                    created_at: wall,
                    attempts: 0,
                    not_before: 0,
                    last_error: None,
                });
                tracing::info!(
                    receiver = %receiver.name,
                    integration = integration.kind(),
                    group = %group.key,
                    firing = firing.len(),
                    resolved = resolved.len(),
                    "notification queued"
                );
            }
            if firing.is_empty() && carried.is_empty() {
                self.state.log.remove(&key);
            } else {
                let mut told = firing;
                told.extend(carried);
                self.state.log.insert(
                    key,
                    LogEntry {
                        group_key: group.key.clone(),
                        receiver: receiver.name.clone(),
                        integration: index,
                        group_labels: group.labels.clone(),
                        firing: told,
                        resolved: resolved
                            .iter()
                            .map(|alert| alert.fingerprint.clone())
                            .collect(),
                        sent_at: wall,
                        episode,
                    },
                );
            }
            changed = true;
        }
        changed
    }

    /// Starts a send for every entry that is due, at most one per destination, in queue order per group.
    fn dispatch(&mut self, now: Instant, inflight: &mut JoinSet<(u64, Destination, Outcome)>) {
        let wall = unix_millis(SystemTime::now());
        let mut blocked: BTreeSet<(String, usize, String)> = BTreeSet::new();
        for entry in &self.state.outbox {
            let destination: Destination = (entry.receiver.clone(), entry.integration);
            let lane = (
                entry.receiver.clone(),
                entry.integration,
                entry.group_key.clone(),
            );
            // A resolve must never overtake its group's earlier notification, whatever happens to that one.
            if !blocked.insert(lane) {
                continue;
            }
            if entry.not_before > wall
                || self.busy.contains(&destination)
                || self
                    .not_before
                    .get(&destination)
                    .is_some_and(|at| *at > now)
            {
                continue;
            }
            let Some(integration) = self
                .config
                .receiver(&entry.receiver)
                .and_then(|receiver| receiver.integrations.get(entry.integration))
                .cloned()
            else {
                // Settled below as a permanent failure, through the same path as any other.
                let id = entry.id;
                let reason = format!(
                    "receiver {:?} integration {} is no longer configured",
                    entry.receiver, entry.integration
                );
                self.busy.insert(destination.clone());
                let task =
                    inflight.spawn(async move { (id, destination, Outcome::Permanent { reason }) });
                self.sending
                    .insert(task.id(), (id, (entry.receiver.clone(), entry.integration)));
                continue;
            };
            if matches!(integration, Integration::Slack(_)) {
                self.not_before
                    .insert(destination.clone(), instant_after(now, SLACK_SPACING));
            }
            self.busy.insert(destination.clone());
            let client = self.client.clone();
            let payload = entry.payload.clone();
            let timeout = self.config.delivery.timeout;
            let id = entry.id;
            let sent_to = destination.clone();
            let task = inflight.spawn(async move {
                let guard = timeout.saturating_add(SEND_GRACE);
                let outcome = tokio::time::timeout(
                    guard,
                    send::deliver(&client, &integration, &payload, timeout),
                )
                .await
                .unwrap_or_else(|_| Outcome::Retry {
                    reason: format!("the send did not finish within {guard:?}"),
                    retry_after: None,
                });
                (id, sent_to, outcome)
            });
            self.sending.insert(task.id(), (id, destination));
        }
    }

    /// Records the outcome of one send: delivered entries leave the outbox, others are rescheduled or
    /// dead-lettered.
    fn settle(&mut self, id: u64, destination: Destination, outcome: Outcome) {
        self.busy.remove(&destination);
        let Some(mut entry) = self.state.take(id) else {
            return;
        };
        self.dirty_flag = true;
        let wall = unix_millis(SystemTime::now());
        let kind = entry.integration_kind.clone();
        let counter = |outcome: &str| {
            self.metrics
                .notifications
                .with_label_values(&[entry.receiver.as_str(), kind.as_str(), outcome])
                .inc()
        };
        match outcome {
            Outcome::Delivered => {
                counter("delivered");
                let seconds = wall.saturating_sub(entry.created_at).max(0) as f64 / 1000.0;
                self.metrics
                    .latency
                    .with_label_values(&[kind.as_str()])
                    .observe(seconds);
                tracing::info!(receiver = %entry.receiver, integration = %kind, group = %entry.group_key, attempts = entry.attempts + 1, "notification delivered");
            }
            Outcome::Permanent { reason } => {
                counter("failed");
                entry.attempts = entry.attempts.saturating_add(1);
                self.dead_letter(entry, reason, wall);
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                counter("retried");
                entry.attempts = entry.attempts.saturating_add(1);
                if entry.attempts >= self.config.delivery.max_attempts {
                    self.dead_letter(
                        entry,
                        format!(
                            "gave up after {} attempts: {reason}",
                            self.config.delivery.max_attempts
                        ),
                        wall,
                    );
                    return;
                }
                let delivery = &self.config.delivery;
                // Parsed and capped in `send`; capped again here for outcomes from anywhere else.
                let retry_after = retry_after.map(|after| after.min(retry_after_cap(delivery)));
                let delay = retry_after.unwrap_or_else(|| backoff(delivery, entry.attempts));
                if let Some(after) = retry_after {
                    // Retry-After speaks for the whole destination, not only for this message.
                    self.not_before
                        .insert(destination, instant_after(Instant::now(), after));
                }
                let next = wall.saturating_add(millis(delay));
                if next > give_up_at(&entry, delivery) {
                    let max_age = humantime::format_duration(delivery.max_age);
                    self.dead_letter(
                        entry,
                        format!("its next attempt, in {delay:?}, would fall past its give-up time ({max_age} after being queued): {reason}"),
                        wall,
                    );
                    return;
                }
                tracing::warn!(receiver = %entry.receiver, integration = %kind, group = %entry.group_key, attempt = entry.attempts, retry_in = ?delay, reason = %reason, "notification failed; will retry");
                entry.not_before = next;
                entry.last_error = Some(reason);
                // Back to its place: queue order is delivery order within a group.
                let position = self
                    .state
                    .outbox
                    .iter()
                    .position(|other| other.id > entry.id)
                    .unwrap_or(self.state.outbox.len());
                self.state.outbox.insert(position, entry);
            }
        }
    }

    fn dead_letter(&mut self, entry: OutboxEntry, reason: String, wall: i64) {
        self.metrics
            .dead_letters
            .with_label_values(&[entry.receiver.as_str(), entry.integration_kind.as_str()])
            .inc();
        tracing::error!(receiver = %entry.receiver, integration = %entry.integration_kind, group = %entry.group_key, attempts = entry.attempts, reason = %reason, "notification dead-lettered");
        self.state.dead_letter(entry, reason, wall);
    }
}

/// Exponential backoff with jitter: between half and all of `initial × 2^(attempt-1)`, capped.
fn backoff(options: &DeliveryOptions, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = options
        .initial_backoff
        .saturating_mul(1u32 << exponent)
        .min(options.max_backoff);
    full.mul_f64(rand::random_range(0.5..=1.0))
}

/// The HTTP client of every receiver and Alertmanager push.
pub fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(concat!("dbwatch/", env!("CARGO_PKG_VERSION")))
        // A redirect would re-POST the body (PagerDuty's carries the routing key) to wherever the answer
        // points; the configured URL is the only destination. A 3xx is a permanent refusal.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// `{a="1", b="2"}`, the group's identity within its route.
fn label_string(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbwatch_rules::AlertSummary;

    const ROUTING: &str = "\
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:1/hook
";

    /// A notifier on `dir` as a fresh process would build it, with its own handle on the engine's view.
    fn notifier(dir: &Path) -> (Notifier, AlertsHandle) {
        let config =
            load_str(Path::new("routing.yml"), ROUTING, &|_: &str| None).expect("valid routing");
        let alerts = AlertsHandle::default();
        let notifier = Notifier::new(
            config,
            dir,
            &Registry::new(),
            alerts.clone(),
            Arc::new(Notify::new()),
        )
        .expect("notifier");
        (notifier, alerts)
    }

    fn alert(state: AlertState) -> AlertSummary {
        let at = SystemTime::now() - Duration::from_secs(600);
        AlertSummary {
            group: "g".into(),
            alertname: "down".into(),
            labels: BTreeMap::from([
                ("alertname".to_owned(), "down".to_owned()),
                ("target".to_owned(), "pg".to_owned()),
            ]),
            annotations: BTreeMap::new(),
            state,
            value: 0.0,
            active_at: at,
            fired_at: (state == AlertState::Firing).then_some(at),
            resolved_at: None,
        }
    }

    /// The `status` of every queued webhook body, in queue order.
    fn queued(notifier: &Notifier) -> Vec<String> {
        notifier
            .state
            .outbox
            .iter()
            .map(|entry| match &entry.payload {
                store::Payload::Webhook { body } => {
                    body["status"].as_str().unwrap_or("?").to_owned()
                }
                other => panic!("not a webhook: {other:?}"),
            })
            .collect()
    }

    /// The notifier told the receiver that `down` fires, delivered it, and stopped; the engine then restarted
    /// without its state and holds `down` pending again.
    fn told_firing_then_restarted(dir: &Path) -> (Notifier, AlertsHandle, Instant) {
        let (mut notifier, alerts) = notifier(dir);
        let start = Instant::now();
        alerts.publish_alerts(vec![alert(AlertState::Firing)], SystemTime::now());
        assert!(notifier.reconcile(start));
        assert_eq!(queued(&notifier), ["firing"]);
        notifier.state.outbox.clear();
        store::save(dir, &notifier.state).expect("state saved");
        drop(notifier);

        let (mut notifier, alerts) = self::notifier(dir);
        assert_eq!(notifier.state.log.len(), 1, "the log survived the restart");
        alerts.publish_alerts(vec![alert(AlertState::Pending)], SystemTime::now());
        let mut now = start;
        for _ in 0..3 {
            now += Duration::from_secs(2);
            notifier.reconcile(now);
            assert_eq!(
                queued(&notifier),
                Vec::<String>::new(),
                "no resolve while pending"
            );
        }
        let entry = notifier.state.log.values().next().expect("still logged");
        assert_eq!(entry.firing.len(), 1, "carried as firing");
        (notifier, alerts, now)
    }

    #[test]
    fn a_told_firing_alert_back_as_pending_is_not_resolved_until_the_engine_resolves_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut notifier, alerts, now) = told_firing_then_restarted(dir.path());
        // The condition cleared while pending: the engine drops the instance, and only now is it resolved.
        alerts.publish_alerts(Vec::new(), SystemTime::now());
        notifier.reconcile(now + Duration::from_secs(2));
        assert_eq!(queued(&notifier), ["resolved"]);
        assert!(notifier.state.log.is_empty());
    }

    #[test]
    fn a_told_firing_alert_that_fires_again_after_pending_is_not_paged_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut notifier, alerts, now) = told_firing_then_restarted(dir.path());
        alerts.publish_alerts(vec![alert(AlertState::Firing)], SystemTime::now());
        notifier.reconcile(now + Duration::from_secs(2));
        assert_eq!(queued(&notifier), Vec::<String>::new());
        // And its resolve, when it comes, is sent as usual.
        let mut resolved = alert(AlertState::Inactive);
        resolved.fired_at = Some(SystemTime::now() - Duration::from_secs(60));
        resolved.resolved_at = Some(SystemTime::now());
        alerts.publish_alerts(vec![resolved], SystemTime::now());
        notifier.reconcile(now + Duration::from_secs(4));
        assert_eq!(queued(&notifier), ["resolved"]);
    }

    const HOOK_ROUTING: &str = "route:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:9/\n";

    fn build_notifier(dir: &Path, tune: impl FnOnce(&mut DeliveryOptions)) -> (Notifier, Registry) {
        let no_env = |_: &str| None;
        let mut config =
            load_str(Path::new("r.yml"), HOOK_ROUTING, &no_env).expect("valid routing");
        tune(&mut config.delivery);
        let registry = Registry::new();
        let notifier = Notifier::new(
            config,
            dir,
            &registry,
            AlertsHandle::default(),
            Arc::new(Notify::new()),
        )
        .expect("notifier");
        (notifier, registry)
    }

    fn entry(created_at: i64) -> OutboxEntry {
        OutboxEntry {
            id: 0,
            receiver: "hook".into(),
            integration: 0,
            integration_kind: "webhook".into(),
            group_key: "g".into(),
            payload: store::Payload::Webhook {
                body: serde_json::json!({}),
            },
            created_at,
            attempts: 0,
            not_before: 0,
            last_error: None,
        }
    }

    fn dead_letters(registry: &Registry) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == "dbwatch_notifications_dead_letter_total")
            .flat_map(|family| family.get_metric().iter())
            .map(|sample| sample.get_counter().get_value())
            .sum()
    }

    #[test]
    fn saved_times_are_brought_within_the_caps() {
        let wall = 1_800_000_000_000;
        let mut state = State::default();
        state.enqueue(OutboxEntry {
            not_before: wall + 365 * 24 * 3_600_000,
            ..entry(wall)
        });
        state.enqueue(OutboxEntry {
            not_before: i64::MAX,
            ..entry(i64::MAX)
        });
        restore(&mut state, &DeliveryOptions::default(), wall);
        for entry in &state.outbox {
            assert_eq!(entry.not_before, wall + 3_600_000);
            assert_eq!(entry.created_at, wall);
        }
    }

    #[test]
    fn any_retry_after_is_capped_and_never_passes_the_give_up_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut notifier, registry) = build_notifier(dir.path(), |_| {});
        let wall = unix_millis(SystemTime::now());
        notifier.state.enqueue(entry(wall));
        let destination: Destination = ("hook".into(), 0);
        // Duration::MAX is past anything a header can say; it must neither panic nor hold past the cap.
        notifier.settle(
            1,
            destination.clone(),
            Outcome::Retry {
                reason: "webhook answered 429".into(),
                retry_after: Some(Duration::MAX),
            },
        );
        let held = notifier.not_before[&destination];
        assert!(held <= Instant::now() + config::MAX_RETRY_AFTER);
        let queued = &notifier.state.outbox[0];
        assert!(queued.not_before <= unix_millis(SystemTime::now()) + 3_600_000);
        assert_eq!(dead_letters(&registry), 0.0);

        // With a give-up time closer than the cap, the same answer dead-letters at once.
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut notifier, registry) = build_notifier(dir.path(), |options| {
            options.max_age = Duration::from_secs(600)
        });
        notifier.state.enqueue(entry(wall));
        notifier.settle(
            1,
            destination,
            Outcome::Retry {
                reason: "webhook answered 429".into(),
                retry_after: Some(Duration::MAX),
            },
        );
        assert!(notifier.state.outbox.is_empty());
        assert_eq!(dead_letters(&registry), 1.0);
        let reason = &notifier.state.dead_letters[0].reason;
        assert!(
            reason.contains("would fall past its give-up time (10m after being queued)"),
            "{reason}"
        );
    }

    #[test]
    fn old_entries_expire_and_the_outbox_sheds_its_oldest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut notifier, registry) = build_notifier(dir.path(), |_| {});
        let wall = unix_millis(SystemTime::now());
        // Queued seven hours ago: past the six-hour give-up time.
        notifier.state.enqueue(entry(wall - 7 * 3_600_000));
        assert!(notifier.expire(wall));
        assert!(notifier.state.outbox.is_empty());
        assert!(notifier.state.dead_letters[0]
            .reason
            .starts_with("not delivered within 6h of being queued"));

        for _ in 0..MAX_OUTBOX_ENTRIES + 5 {
            notifier.state.enqueue(entry(wall));
        }
        assert!(notifier.shed(wall));
        assert_eq!(notifier.state.outbox.len(), MAX_OUTBOX_ENTRIES);
        // Ids 2..=6 were the oldest (1 expired above).
        assert_eq!(notifier.state.outbox[0].id, 7);
        assert_eq!(dead_letters(&registry), 6.0);
        assert!(!notifier.shed(wall));
    }
}
