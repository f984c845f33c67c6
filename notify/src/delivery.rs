//! Delivery from the durable outbox: per destination one request in flight, FIFO per group, the receiver's
//! `Retry-After`, jittered backoff, and dead letters after `max_attempts`, a permanent refusal, the give-up
//! time, or when the outbox overflows. Every send task is owned here, in one `JoinSet`: the notifier that owns
//! this aborts them when it ends.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use dbwatch_rules::alerting::unix_millis;

use super::clock::{instant_after, millis};
use super::config::{DeliveryOptions, NotifyConfig, MAX_RETRY_AFTER};
use super::integrations::Outcome;
use super::metrics::NotifyMetrics;
use super::store::{log_key, OutboxEntry, Payload, State};
use dbwatch_events::{Body as EventBody, EventSink, NotificationOutcome};

/// Undelivered notifications kept at most. Past it the oldest are shed (dead-lettered, counted): a newer
/// notification of a group carries the group's whole current state, so the oldest are the least useful, and an
/// outbox that grows while a receiver hangs makes every fsynced state write larger. 10,000 holds a storm of
/// 5,000 alerts in groups of one, firing and then resolved.
pub const MAX_OUTBOX_ENTRIES: usize = 10_000;
/// A send task is abandoned (and retried) after this much more than the delivery timeout; the request and the
/// SMTP session have their own timeouts, so this only guards against one that does not honour them.
const SEND_GRACE: Duration = Duration::from_secs(5);

/// Where one outbox entry goes: (receiver, integration index).
pub(crate) type Destination = (String, usize);

/// What a send task returns.
pub(crate) type Sent = (u64, Destination, Outcome);

/// Makes a saved state safe to run: times from the file (written by another version, on another clock, or
/// by hand) are brought within what this process would have set, so none can wedge a lane. An entry queued
/// "in the future" counts from now; one held back longer than the `Retry-After` cap is held only as long as
/// the cap. Entries whose give-up time has passed are dead-lettered by the first loop turn.
pub(crate) fn restore(state: &mut State, delivery: &DeliveryOptions, wall: i64) {
    let cap = wall.saturating_add(millis(retry_after_cap(delivery)));
    for entry in &mut state.outbox {
        entry.created_at = entry.created_at.min(wall);
        entry.not_before = entry.not_before.min(cap);
    }
}

fn retry_after_cap(delivery: &DeliveryOptions) -> Duration {
    delivery.max_retry_after.min(MAX_RETRY_AFTER)
}

/// When the notifier gives up on `entry`: its queueing time plus `max_age`.
pub(crate) fn give_up_at(entry: &OutboxEntry, delivery: &DeliveryOptions) -> i64 {
    entry.created_at.saturating_add(millis(delivery.max_age))
}

/// The sends in flight and the destinations' lanes.
pub(crate) struct Delivery {
    client: reqwest::Client,
    metrics: NotifyMetrics,
    inflight: JoinSet<Sent>,
    /// Destinations with a request in flight, and when each may be sent to again.
    busy: BTreeSet<Destination>,
    pub(crate) not_before: HashMap<Destination, Instant>,
    /// The entry and destination of each send task, by task id: a task that panics or is aborted still frees
    /// its destination and has its entry retried.
    sending: HashMap<Id, (u64, Destination)>,
    /// The state changed here (a delivery settled) and must be saved.
    dirty: bool,
    /// Every attempt's answer and every dead letter are recorded here.
    events: EventSink,
}

impl Delivery {
    pub fn new(client: reqwest::Client, metrics: NotifyMetrics) -> Delivery {
        Delivery {
            client,
            metrics,
            inflight: JoinSet::new(),
            busy: BTreeSet::new(),
            not_before: HashMap::new(),
            sending: HashMap::new(),
            dirty: false,
            events: EventSink::default(),
        }
    }

    /// Records every attempt's answer, and every dead letter, in the event history.
    pub fn recording_to(mut self, events: EventSink) -> Delivery {
        self.events = events;
        self
    }

    /// The next send task to finish; pending forever when none is in flight (for `select!`).
    pub async fn next_finished(&mut self) -> Result<(Id, Sent), JoinError> {
        match self.inflight.join_next_with_id().await {
            Some(joined) => joined,
            None => std::future::pending().await,
        }
    }

    /// Records a finished send task; one that panicked or failed frees its destination and has its entry
    /// retried like any failed attempt.
    pub fn finished(
        &mut self,
        state: &mut State,
        config: &NotifyConfig,
        joined: Result<(Id, Sent), JoinError>,
    ) {
        match joined {
            Ok((task, (id, destination, outcome))) => {
                self.sending.remove(&task);
                self.settle(state, config, id, destination, outcome);
            }
            Err(error) => {
                let reason = if error.is_panic() {
                    "the send task panicked".to_owned()
                } else {
                    format!("the send task failed: {error}")
                };
                tracing::error!(reason = %reason, "a notification send task failed");
                if let Some((id, destination)) = self.sending.remove(&error.id()) {
                    self.settle(
                        state,
                        config,
                        id,
                        destination,
                        Outcome::Retry {
                            reason,
                            retry_after: None,
                        },
                    );
                }
            }
        }
    }

    /// True (once) when a settled delivery changed the state.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The earliest time a held-back destination opens again, if any is later than `now`.
    pub fn next_open(&self, now: Instant) -> Option<Instant> {
        self.not_before
            .values()
            .filter(|at| **at > now)
            .min()
            .copied()
    }

    /// Ends every send in flight (their entries stay in the outbox for the next start).
    pub fn abort_all(&mut self) {
        self.inflight.abort_all();
    }

    /// Sheds the oldest entries past [`MAX_OUTBOX_ENTRIES`]. True when any was shed.
    pub fn shed(&mut self, state: &mut State, wall: i64) -> bool {
        let excess = state.outbox.len().saturating_sub(MAX_OUTBOX_ENTRIES);
        if excess == 0 {
            return false;
        }
        let sending: HashSet<u64> = self.sending.values().map(|(id, _)| *id).collect();
        // Oldest first (the outbox is in id order), skipping entries being sent, whose outcome is still to come.
        let shed: Vec<u64> = state
            .outbox
            .iter()
            .filter(|entry| !sending.contains(&entry.id))
            .take(excess)
            .map(|entry| entry.id)
            .collect();
        for id in shed {
            if let Some(entry) = state.take(id) {
                dead_letter(
                    state,
                    &self.metrics,
                    &self.events,
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
    pub fn expire(&mut self, state: &mut State, config: &NotifyConfig, wall: i64) -> bool {
        let delivery = &config.delivery;
        let sending: HashSet<u64> = self.sending.values().map(|(id, _)| *id).collect();
        let expired: Vec<(u64, String)> = state
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
            if let Some(entry) = state.take(id) {
                dead_letter(state, &self.metrics, &self.events, entry, reason, wall);
            }
        }
        any
    }

    /// Starts a send for every entry that is due, at most one per destination, in queue order per group.
    pub fn dispatch(&mut self, state: &State, config: &NotifyConfig, now: Instant) {
        let wall = unix_millis(SystemTime::now());
        let mut blocked: BTreeSet<(String, usize, String)> = BTreeSet::new();
        for entry in &state.outbox {
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
            let Some(integration) = config
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
                let task = self
                    .inflight
                    .spawn(async move { (id, destination, Outcome::Permanent { reason }) });
                self.sending
                    .insert(task.id(), (id, (entry.receiver.clone(), entry.integration)));
                continue;
            };
            if let Some(spacing) = integration.spacing() {
                self.not_before
                    .insert(destination.clone(), instant_after(now, spacing));
            }
            self.busy.insert(destination.clone());
            let client = self.client.clone();
            let payload = entry.payload.clone();
            let timeout = config.delivery.timeout;
            let id = entry.id;
            let sent_to = destination.clone();
            let task = self.inflight.spawn(async move {
                let guard = timeout.saturating_add(SEND_GRACE);
                let outcome =
                    tokio::time::timeout(guard, integration.send(&client, &payload, timeout))
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
    pub fn settle(
        &mut self,
        state: &mut State,
        config: &NotifyConfig,
        id: u64,
        destination: Destination,
        outcome: Outcome,
    ) {
        self.busy.remove(&destination);
        let Some(mut entry) = state.take(id) else {
            return;
        };
        self.dirty = true;
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
                record(
                    &self.events,
                    state,
                    &entry,
                    entry.attempts.saturating_add(1),
                    NotificationOutcome::Delivered,
                    None,
                    None,
                );
            }
            Outcome::Permanent { reason } => {
                counter("failed");
                entry.attempts = entry.attempts.saturating_add(1);
                dead_letter(state, &self.metrics, &self.events, entry, reason, wall);
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                counter("retried");
                entry.attempts = entry.attempts.saturating_add(1);
                if entry.attempts >= config.delivery.max_attempts {
                    dead_letter(
                        state,
                        &self.metrics,
                        &self.events,
                        entry,
                        format!(
                            "gave up after {} attempts: {reason}",
                            config.delivery.max_attempts
                        ),
                        wall,
                    );
                    return;
                }
                let delivery = &config.delivery;
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
                    dead_letter(state, &self.metrics, &self.events,
                        entry,
                        format!("its next attempt, in {delay:?}, would fall past its give-up time ({max_age} after being queued): {reason}"),
                        wall,
                    );
                    return;
                }
                tracing::warn!(receiver = %entry.receiver, integration = %kind, group = %entry.group_key, attempt = entry.attempts, retry_in = ?delay, reason = %reason, "notification failed; will retry");
                record(
                    &self.events,
                    state,
                    &entry,
                    entry.attempts,
                    NotificationOutcome::Retry,
                    Some(reason.clone()),
                    Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                );
                entry.not_before = next;
                entry.last_error = Some(reason);
                // Back to its place: queue order is delivery order within a group.
                let position = state
                    .outbox
                    .iter()
                    .position(|other| other.id > entry.id)
                    .unwrap_or(state.outbox.len());
                state.outbox.insert(position, entry);
            }
        }
    }
}

fn dead_letter(
    state: &mut State,
    metrics: &NotifyMetrics,
    events: &EventSink,
    entry: OutboxEntry,
    reason: String,
    wall: i64,
) {
    record(
        events,
        state,
        &entry,
        entry.attempts,
        NotificationOutcome::DeadLettered,
        Some(reason.clone()),
        None,
    );
    metrics
        .dead_letters
        .with_label_values(&[entry.receiver.as_str(), entry.integration_kind.as_str()])
        .inc();
    tracing::error!(receiver = %entry.receiver, integration = %entry.integration_kind, group = %entry.group_key, attempts = entry.attempts, reason = %reason, "notification dead-lettered");
    state.dead_letter(entry, reason, wall);
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

/// Records one attempt (or a dead letter) of `entry` in the event history, with the alert names and targets
/// it is about: from the notification log's entry for its group and integration, or, once that is gone (a
/// resolve that ended the group), from the webhook body's alerts.
fn record(
    events: &EventSink,
    state: &State,
    entry: &OutboxEntry,
    attempt: u32,
    outcome: NotificationOutcome,
    answer: Option<String>,
    retry_in_ms: Option<u64>,
) {
    if !events.is_enabled() {
        return;
    }
    let mut alertnames = BTreeSet::new();
    let mut targets = BTreeSet::new();
    let mut add = |labels: &dyn Fn(&str) -> Option<String>| {
        alertnames.extend(labels("alertname"));
        targets.extend(labels("target"));
    };
    if let Some(log) = state.log.get(&log_key(
        &entry.group_key,
        &entry.receiver,
        entry.integration,
    )) {
        add(&|name| log.group_labels.get(name).cloned());
        for alert in &log.firing {
            add(&|name| alert.labels.get(name).cloned());
        }
    }
    if let Payload::Webhook { body } = &entry.payload {
        for alert in body["alerts"].as_array().into_iter().flatten() {
            add(&|name| alert["labels"][name].as_str().map(str::to_owned));
        }
    }
    events.record(EventBody::Notification {
        receiver: entry.receiver.clone(),
        integration: entry.integration_kind.clone(),
        index: entry.integration,
        group_key: entry.group_key.clone(),
        alertnames: alertnames.into_iter().collect(),
        targets: targets.into_iter().collect(),
        attempt,
        outcome,
        answer,
        retry_in_ms,
    });
}
