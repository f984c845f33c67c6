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
pub mod matcher;
pub mod render;
pub mod route;
pub mod send;
pub mod silence;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::rules::alerting::unix_millis;
use crate::rules::{AlertState, AlertTransition, AlertsHandle};

use config::Route;
pub use config::{
    load_file, load_str, DeliveryOptions, Integration, NotifyConfig, NotifyConfigErrors,
};
use render::Notice;
use route::RouteTree;
use send::Outcome;
use store::{log_key, AlertRecord, LogEntry, OutboxEntry, State};

/// How often the view is reconciled when nothing wakes the loop earlier.
const TICK: Duration = Duration::from_millis(500);
/// Slack allows about one message per second per webhook.
const SLACK_SPACING: Duration = Duration::from_secs(1);

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

pub struct Notifier {
    config: Arc<NotifyConfig>,
    tree: Arc<RouteTree>,
    state_dir: PathBuf,
    state: State,
    metrics: NotifyMetrics,
    alerts: AlertsHandle,
    transitions: mpsc::Receiver<AlertTransition>,
    client: reqwest::Client,
    /// Next flush of each live group.
    timers: HashMap<String, Instant>,
    /// Destinations with a request in flight, and when each may be sent to again.
    busy: BTreeSet<Destination>,
    not_before: HashMap<Destination, Instant>,
    /// The state changed outside `reconcile` (a delivery settled) and must be saved.
    dirty_flag: bool,
    silences: Arc<silence::Silences>,
    forwarder: forward::Forwarder,
}

impl Notifier {
    /// Loads the outbox and notification log saved in `state_dir` (created if missing).
    pub fn new(
        config: NotifyConfig,
        state_dir: &Path,
        registry: &Registry,
        alerts: AlertsHandle,
        transitions: mpsc::Receiver<AlertTransition>,
    ) -> Result<Notifier, NotifyError> {
        std::fs::create_dir_all(state_dir).map_err(|source| NotifyError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let state = store::load(state_dir)?;
        let silences = Arc::new(silence::Silences::load(state_dir)?);
        let metrics = NotifyMetrics::register(registry)?;
        metrics
            .outbox
            .set(i64::try_from(state.outbox.len()).unwrap_or(i64::MAX));
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
        if !state.outbox.is_empty() {
            tracing::info!(
                queued = state.outbox.len(),
                "notifications restored from the outbox"
            );
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.delivery.timeout)
            .user_agent(concat!("dbwatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let forwarder = forward::Forwarder::new(
            config.delivery.alertmanagers.clone(),
            config.delivery.alertmanager_resend,
            config.delivery.timeout,
            config.delivery.external_url.clone(),
        );
        Ok(Notifier {
            tree: Arc::new(RouteTree::new(&config.route)),
            config: Arc::new(config),
            state_dir: state_dir.to_owned(),
            state,
            metrics,
            alerts,
            transitions,
            client,
            timers: HashMap::new(),
            busy: BTreeSet::new(),
            not_before: HashMap::new(),
            dirty_flag: false,
            silences,
            forwarder,
        })
    }

    /// The silences API (Alertmanager API v2 paths), sharing the notifier's silences.
    pub fn api_router(&self) -> axum::Router {
        silence::router(Arc::clone(&self.silences))
    }

    /// Routes, groups and delivers until `shutdown`. Undelivered notifications stay in the outbox for the next
    /// start.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut inflight: JoinSet<(u64, Destination, Outcome)> = JoinSet::new();
        let mut transitions_open = true;
        let mut wake = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.transitions.recv(), if transitions_open => {
                    match received {
                        // Only a wake-up: the view it came with is already published.
                        Some(_) => while self.transitions.try_recv().is_ok() {},
                        None => transitions_open = false,
                    }
                }
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    match joined {
                        Ok((id, destination, outcome)) => self.settle(id, destination, outcome),
                        Err(error) => tracing::error!(error = %error, "a notification send task failed"),
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            let mut changed = self.reconcile(now);
            // Settled entries were changed in `settle`; saving once per loop turn covers both.
            changed |= self.take_dirty();
            if changed {
                self.save();
            }
            self.dispatch(now, &mut inflight);
            self.forwarder
                .tick(&self.alerts.view(), now, &self.client, &self.metrics);
            wake = self.next_wake(now);
        }
        inflight.abort_all();
        self.save();
    }

    fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty_flag)
    }

    fn save(&mut self) {
        self.metrics
            .outbox
            .set(i64::try_from(self.state.outbox.len()).unwrap_or(i64::MAX));
        if let Err(error) = store::save(&self.state_dir, &self.state) {
            self.metrics.state_write_failures.inc();
            tracing::error!(error = %error, "cannot persist the notifier state; notifications may repeat after a restart");
        }
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + TICK;
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
            let delay = Duration::from_millis(u64::try_from(entry.not_before - wall).unwrap_or(0));
            wake = wake.min(now + delay);
        }
        for at in self.not_before.values() {
            if *at > now {
                wake = wake.min(*at);
            }
        }
        wake.max(now + Duration::from_millis(5))
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
        let firing_labels: Vec<&BTreeMap<String, String>> = view
            .alerts
            .iter()
            .filter(|alert| alert.state == AlertState::Firing)
            .map(|alert| &alert.labels)
            .collect();
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
        for alert in &view.alerts {
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
            let fingerprint = render::fingerprint(&alert.labels);
            if firing && self.silences.silenced_by(&alert.labels, wall).is_some() {
                muted.insert(fingerprint);
                continue;
            }
            if firing
                && route::inhibited(
                    &config.inhibit_rules,
                    &alert.labels,
                    firing_labels.iter().copied(),
                )
            {
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
        for group in groups.values() {
            let logged = self
                .state
                .log
                .values()
                .any(|entry| entry.group_key == group.key);
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
                let waited = Duration::from_millis(u64::try_from(wall - oldest).unwrap_or(0));
                now + wait.saturating_sub(waited)
            });
            if due > now {
                continue;
            }
            changed |= self.flush(&config, group, &muted, wall);
            let interval = group
                .route
                .map(|route| route.group_interval)
                .unwrap_or(config.route.group_interval);
            self.timers.insert(group.key.clone(), now + interval);
        }
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
                            && wall - entry.sent_at
                                >= i64::try_from(repeat.as_millis()).unwrap_or(i64::MAX))
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
                inflight.spawn(async move { (id, destination, Outcome::Permanent { reason }) });
                self.busy
                    .insert((entry.receiver.clone(), entry.integration));
                continue;
            };
            if matches!(integration, Integration::Slack(_)) {
                self.not_before
                    .insert(destination.clone(), now + SLACK_SPACING);
            }
            self.busy.insert(destination.clone());
            let client = self.client.clone();
            let payload = entry.payload.clone();
            let timeout = self.config.delivery.timeout;
            let id = entry.id;
            inflight.spawn(async move {
                let outcome = send::deliver(&client, &integration, &payload, timeout).await;
                (id, destination, outcome)
            });
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
                let seconds = (wall - entry.created_at).max(0) as f64 / 1000.0;
                self.metrics
                    .latency
                    .with_label_values(&[kind.as_str()])
                    .observe(seconds);
                tracing::info!(receiver = %entry.receiver, integration = %kind, group = %entry.group_key, attempts = entry.attempts + 1, "notification delivered");
            }
            Outcome::Permanent { reason } => {
                counter("failed");
                entry.attempts += 1;
                self.dead_letter(entry, reason, wall);
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                counter("retried");
                entry.attempts += 1;
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
                let backoff = backoff(&self.config.delivery, entry.attempts);
                let delay = retry_after.unwrap_or(backoff);
                if let Some(after) = retry_after {
                    // Retry-After speaks for the whole destination, not only for this message.
                    self.not_before.insert(destination, Instant::now() + after);
                }
                tracing::warn!(receiver = %entry.receiver, integration = %kind, group = %entry.group_key, attempt = entry.attempts, retry_in = ?delay, reason = %reason, "notification failed; will retry");
                entry.not_before = wall + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
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
    use crate::rules::AlertSummary;

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
        let (_sender, receiver) = mpsc::channel(1);
        let notifier = Notifier::new(config, dir, &Registry::new(), alerts.clone(), receiver)
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
        notifier.save();
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
}
