//! The notifier: one task that reconciles the engine's alert view into groups ([`crate::reconcile`]) and
//! delivers what they queue from the durable outbox ([`crate::delivery`]), plus the Alertmanager forwarder.
//!
//! It is woken by a `watch` on the alert view: state, not events. Every publication of a view marks the
//! receiver changed, several publications while the notifier is busy coalesce into one wake-up, and a
//! restarted notifier simply reads the latest view. It also reconciles on its own every 500 ms (group timers,
//! retries).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use dbwatch_rules::alerting::unix_millis;
use dbwatch_rules::{AlertsHandle, AlertsView};

use super::clock::{instant_after, TICK};
use super::config::NotifyConfig;
use super::delivery::{restore, Delivery};
use super::forward;
use super::metrics::NotifyMetrics;
use super::reconcile::{Grouper, Inputs};
use super::route::RouteTree;
use super::silence;
use super::store::{self, State};

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

pub struct Notifier {
    config: Arc<NotifyConfig>,
    tree: Arc<RouteTree>,
    /// Marked changed by a reload's new routing ([`NotifierSeed::reload`]).
    routing: watch::Receiver<Arc<NotifyConfig>>,
    state_dir: PathBuf,
    state: State,
    metrics: NotifyMetrics,
    alerts: AlertsHandle,
    /// Marked changed by every view the engine publishes.
    views: watch::Receiver<Arc<AlertsView>>,
    client: reqwest::Client,
    grouper: Grouper,
    delivery: Delivery,
    silences: Arc<silence::Silences>,
    forwarder: forward::Forwarder,
    seed: NotifierSeed,
}

/// What a notifier is built from. The supervisor keeps it to build a new notifier from the saved state when
/// the running one ends before shutdown; what it holds (configuration, metrics, the alerts view, the silences
/// the API serves, the HTTP client) is shared by every instance.
#[derive(Clone)]
pub struct NotifierSeed {
    /// The routing in force: a reload replaces it, and a rebuilt notifier starts from the latest.
    routing: Arc<watch::Sender<Arc<NotifyConfig>>>,
    state_dir: PathBuf,
    metrics: NotifyMetrics,
    alerts: AlertsHandle,
    silences: Arc<silence::Silences>,
    client: reqwest::Client,
    fault: Arc<AtomicBool>,
    /// Wakes the running notifier for the fault hook.
    poke: Arc<Notify>,
    /// The event history every delivery attempt is recorded in.
    events: dbwatch_events::EventSink,
}

impl NotifierSeed {
    /// A notifier restored from the outbox and notification log saved in the state folder.
    pub fn build(&self) -> Result<Notifier, NotifyError> {
        let wall = unix_millis(SystemTime::now());
        let mut routing = self.routing.subscribe();
        let config = Arc::clone(&routing.borrow_and_update());
        let mut state = store::load(&self.state_dir)?;
        restore(&mut state, &config.delivery, wall);
        self.metrics
            .outbox
            .set(i64::try_from(state.outbox.len()).unwrap_or(i64::MAX));
        if !state.outbox.is_empty() {
            tracing::info!(
                queued = state.outbox.len(),
                "notifications restored from the outbox"
            );
        }
        let delivery = &config.delivery;
        let forwarder = forward::Forwarder::new(
            delivery.alertmanagers.clone(),
            delivery.alertmanager_resend,
            delivery.timeout,
            delivery.external_url.clone(),
        );
        Ok(Notifier {
            tree: Arc::new(RouteTree::new(&config.route)),
            config,
            routing,
            state_dir: self.state_dir.clone(),
            state,
            metrics: self.metrics.clone(),
            alerts: self.alerts.clone(),
            views: self.alerts.subscribe(),
            client: self.client.clone(),
            grouper: Grouper::default(),
            delivery: Delivery::new(self.client.clone(), self.metrics.clone())
                .recording_to(self.events.clone()),
            silences: Arc::clone(&self.silences),
            forwarder,
            seed: self.clone(),
        })
    }

    /// Replaces the routing (a reload): the running notifier picks it up at its next loop turn, and a notifier
    /// rebuilt later starts from it. Receivers, routes, inhibitions and timings apply to the next notification;
    /// the notification log and outbox are kept, so what was already sent is not sent again.
    pub fn reload(&self, config: NotifyConfig) {
        init_receiver_metrics(&self.metrics, &config);
        self.routing.send_replace(Arc::new(config));
    }

    /// Test hook, not reachable from the network: the running notifier returns at its next loop turn without
    /// saving, as a task that died would, so that a test can watch the supervisor restart it.
    #[doc(hidden)]
    pub fn inject_stop(&self) {
        self.fault.store(true, Ordering::SeqCst);
        self.poke.notify_one();
    }
}

impl Notifier {
    /// Loads the outbox and notification log saved in `state_dir` (created if missing). The notifier reconciles
    /// whenever `alerts` publishes a view, and on its own every 500 ms.
    pub fn new(
        config: NotifyConfig,
        state_dir: &Path,
        registry: &Registry,
        alerts: AlertsHandle,
    ) -> Result<Notifier, NotifyError> {
        std::fs::create_dir_all(state_dir).map_err(|source| NotifyError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let silences = Arc::new(silence::Silences::load(state_dir)?);
        let metrics = NotifyMetrics::register(registry)?;
        init_receiver_metrics(&metrics, &config);
        let client = http_client(config.delivery.timeout)?;
        let seed = NotifierSeed {
            routing: Arc::new(watch::Sender::new(Arc::new(config))),
            state_dir: state_dir.to_owned(),
            metrics,
            alerts,
            silences,
            client,
            fault: Arc::new(AtomicBool::new(false)),
            poke: Arc::new(Notify::new()),
            events: dbwatch_events::EventSink::default(),
        };
        seed.build()
    }

    /// Records every delivery attempt and silence change in the event history, in this notifier and in those
    /// its seed builds.
    pub fn recording_to(mut self, events: dbwatch_events::EventSink) -> Notifier {
        self.silences.recording_to(events.clone());
        self.seed.events = events.clone();
        self.delivery =
            Delivery::new(self.client.clone(), self.metrics.clone()).recording_to(events);
        self
    }

    /// The silences the API serves and the notifier applies, for the status page.
    pub fn silences(&self) -> Arc<silence::Silences> {
        Arc::clone(&self.silences)
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
        let mut wake = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // A new view: reconcile below reads the latest. Never an error while `self.alerts` holds the
                // sender; if it were, the branch is disabled for this turn and the tick still runs.
                Ok(()) = self.views.changed() => {}
                _ = self.seed.poke.notified() => {}
                Ok(()) = self.routing.changed() => self.apply_routing(),
                joined = self.delivery.next_finished() => {
                    self.delivery.finished(&mut self.state, &self.config, joined);
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
            self.silences.record_expiries(wall);
            changed |= self.shed(wall);
            changed |= self.expire(wall);
            // Settled entries were changed in `finished`; saving once per loop turn covers both.
            changed |= self.delivery.take_dirty();
            if changed {
                // Awaited before dispatch: what is sent is durable first.
                self.save().await;
            }
            self.delivery.dispatch(&self.state, &self.config, now);
            self.forwarder
                .tick(&self.alerts.view(), now, &self.client, &self.metrics);
            wake = self.next_wake(now);
        }
        self.delivery.abort_all();
        self.save().await;
        self.forwarder.finish(&self.metrics).await;
    }

    /// Takes the latest routing in. The groups are rebuilt from the notification log, exactly as a restarted
    /// notifier rebuilds them, so a group already told is not told again and the next notification follows the
    /// new routes, receivers and timings.
    fn apply_routing(&mut self) {
        let config = Arc::clone(&self.routing.borrow_and_update());
        self.tree = Arc::new(RouteTree::new(&config.route));
        self.config = config;
        self.grouper = Grouper::default();
        tracing::info!(receivers = self.config.receivers.len(), "routing reloaded");
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

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = instant_after(now, TICK);
        if let Some(at) = self.grouper.next_flush() {
            wake = wake.min(at);
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
        if let Some(at) = self.delivery.next_open(now) {
            wake = wake.min(at);
        }
        wake.max(instant_after(now, Duration::from_millis(5)))
    }

    /// Brings groups up to date with the engine's latest view and flushes the due ones. True when the state
    /// changed.
    fn reconcile(&mut self, now: Instant) -> bool {
        let inputs = Inputs {
            config: &self.config,
            tree: &self.tree,
            silences: &self.silences,
            view: self.alerts.view(),
            template_failures: &self.metrics.template_failures,
        };
        self.grouper.reconcile(inputs, &mut self.state, now)
    }

    fn shed(&mut self, wall: i64) -> bool {
        self.delivery.shed(&mut self.state, wall)
    }

    fn expire(&mut self, wall: i64) -> bool {
        self.delivery.expire(&mut self.state, &self.config, wall)
    }

    #[cfg(test)]
    fn settle(
        &mut self,
        id: u64,
        destination: crate::delivery::Destination,
        outcome: crate::integrations::Outcome,
    ) {
        self.delivery
            .settle(&mut self.state, &self.config, id, destination, outcome);
    }

    /// One reconcile, as a loop turn runs it: for benchmarks and tests.
    #[doc(hidden)]
    pub fn reconcile_now(&mut self) -> bool {
        self.reconcile(Instant::now())
    }

    /// Forgets the group timers, so that the next reconcile flushes every group again: for benchmarks.
    #[doc(hidden)]
    pub fn reset_timers(&mut self) {
        self.grouper.reset_timers();
    }
}

/// Creates each receiver's series at zero, so that a first failure is a visible increase.
fn init_receiver_metrics(metrics: &NotifyMetrics, config: &NotifyConfig) {
    for receiver in &config.receivers {
        for integration in &receiver.integrations {
            for outcome in ["delivered", "retried", "failed"] {
                metrics.notifications.with_label_values(&[
                    receiver.name.as_str(),
                    integration.kind().as_str(),
                    outcome,
                ]);
            }
            metrics
                .dead_letters
                .with_label_values(&[receiver.name.as_str(), integration.kind().as_str()]);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{restore, Destination, MAX_OUTBOX_ENTRIES};
    use crate::integrations::Outcome;
    use crate::store::{self, OutboxEntry, State};
    use crate::{load_str, DeliveryOptions};
    use dbwatch_rules::alerting::unix_millis;
    use dbwatch_rules::{AlertState, AlertSummary};
    use std::collections::BTreeMap;
    use std::time::Duration;

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
        let notifier =
            Notifier::new(config, dir, &Registry::new(), alerts.clone()).expect("notifier");
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
    fn a_failing_template_still_queues_the_notification_and_is_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let routing = "route:\n  receiver: chat\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n  - name: chat\n    slack_configs:\n      - api_url: http://127.0.0.1:1/x\n        title: '{{ .Alerts.Nope }}'\n        text: 'fine: {{ .CommonLabels.target }}'\n";
        let config =
            load_str(Path::new("routing.yml"), routing, &|_: &str| None).expect("valid routing");
        let alerts = AlertsHandle::default();
        let registry = Registry::new();
        let mut notifier =
            Notifier::new(config, dir.path(), &registry, alerts.clone()).expect("notifier");
        alerts.publish_alerts(vec![alert(AlertState::Firing)], SystemTime::now());
        assert!(notifier.reconcile(Instant::now()));
        assert_eq!(notifier.state.outbox.len(), 1, "the notification is queued");
        let store::Payload::Slack { body } = &notifier.state.outbox[0].payload else {
            panic!("not a slack payload");
        };
        assert_eq!(body["attachments"][0]["title"], "[FIRING:1] down");
        assert_eq!(body["attachments"][0]["text"], "fine: pg");
        let counted = notifier
            .metrics
            .template_failures
            .with_label_values(&["slack"])
            .get();
        assert_eq!(counted, 1);
        let families = registry.gather();
        assert!(families
            .iter()
            .any(|family| family.name() == "dbwatch_notification_template_failures_total"));
    }

    #[test]
    fn a_reloaded_routing_applies_to_the_next_notification_and_resends_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut notifier, alerts) = notifier(dir.path());
        let start = Instant::now();
        alerts.publish_alerts(vec![alert(AlertState::Firing)], SystemTime::now());
        assert!(notifier.reconcile(start));
        assert_eq!(queued(&notifier), ["firing"]);
        // Delivered.
        notifier.state.outbox.clear();

        // The receiver edited (another URL) and the group timings changed.
        let edited = ROUTING
            .replace("127.0.0.1:1/hook", "127.0.0.1:2/other")
            .replace("group_interval: 1s", "group_interval: 2s");
        let config =
            load_str(Path::new("routing.yml"), &edited, &|_: &str| None).expect("valid routing");
        notifier.seed().reload(config);
        assert!(notifier
            .routing
            .has_changed()
            .expect("the seed holds the sender"));
        notifier.apply_routing();
        assert_eq!(notifier.config.route.group_interval, Duration::from_secs(2));
        let mut now = start;
        for _ in 0..3 {
            now += Duration::from_secs(3);
            notifier.reconcile(now);
        }
        assert_eq!(
            queued(&notifier),
            Vec::<String>::new(),
            "already told: not sent again"
        );

        // A new alert goes out once, through the new routing.
        let mut other = alert(AlertState::Firing);
        other.alertname = "other".into();
        other.labels.insert("alertname".into(), "other".into());
        alerts.publish_alerts(vec![alert(AlertState::Firing), other], SystemTime::now());
        now += Duration::from_secs(3);
        assert!(notifier.reconcile(now));
        assert_eq!(queued(&notifier), ["firing"]);
        // A notifier rebuilt by its supervisor starts from the reloaded routing.
        let rebuilt = notifier.seed().build().expect("rebuilt");
        assert_eq!(rebuilt.config.route.group_interval, Duration::from_secs(2));
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
        let notifier =
            Notifier::new(config, dir, &registry, AlertsHandle::default()).expect("notifier");
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
        let held = notifier.delivery.not_before[&destination];
        assert!(held <= Instant::now() + crate::config::MAX_RETRY_AFTER);
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
