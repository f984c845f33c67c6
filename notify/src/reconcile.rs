//! Grouping: the engine's view brought into aggregation groups along the route tree, with inhibition and
//! silences applied, each group's timers (group_wait, group_interval, repeat_interval), and Alertmanager's
//! dedup decision against the notification log, which queues what is due in the outbox.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::IntCounterVec;
use tokio::time::Instant;

use dbwatch_rules::alerting::unix_millis;
use dbwatch_rules::{AlertState, AlertsView};

use super::clock::{instant_after, millis};
use super::config::{NotifyConfig, Route};
use super::render::{self, Notice};
use super::route::{self, RouteTree};
use super::silence::Silences;
use super::store::{log_key, AlertRecord, LogEntry, OutboxEntry, State};

/// What one reconcile reads.
pub(crate) struct Inputs<'a> {
    pub config: &'a NotifyConfig,
    pub tree: &'a RouteTree,
    pub silences: &'a Silences,
    pub view: Arc<AlertsView>,
    /// `dbwatch_notification_template_failures_total`, by integration.
    pub template_failures: &'a IntCounterVec,
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

/// What depends only on one published view: each alert's fingerprint and whether inhibition mutes it (the
/// inhibition pass is indexed, see [`route::Inhibitor`], and still costs a pass over every firing alert).
struct ViewFacts {
    view: Arc<AlertsView>,
    fingerprints: Vec<String>,
    inhibited: Vec<bool>,
}

impl ViewFacts {
    fn new(config: &NotifyConfig, view: &Arc<AlertsView>) -> ViewFacts {
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

/// The live groups' timers and the facts of the last view reconciled.
#[derive(Default)]
pub(crate) struct Grouper {
    /// Next flush of each live group.
    timers: HashMap<String, Instant>,
    /// Fingerprints and inhibition of the last view reconciled.
    facts: Option<ViewFacts>,
}

impl Grouper {
    /// The earliest next flush of any group.
    pub fn next_flush(&self) -> Option<Instant> {
        self.timers.values().min().copied()
    }

    /// Forgets the group timers, so that the next reconcile flushes every group again: for benchmarks.
    pub fn reset_timers(&mut self) {
        self.timers.clear();
    }

    /// Brings groups up to date with the engine's latest view and flushes the due ones. True when the state
    /// changed.
    pub fn reconcile(&mut self, inputs: Inputs<'_>, state: &mut State, now: Instant) -> bool {
        let Inputs {
            config,
            tree,
            silences,
            view,
            template_failures,
        } = inputs;
        // Before the engine's first evaluation the view is empty, not "everything resolved".
        if view.evaluated_at.is_none() {
            return false;
        }
        let wall = unix_millis(SystemTime::now());
        // The engine publishes a new view once per evaluation (15 s by default) and this runs every 500 ms:
        // what depends on the view alone is computed once per view.
        let facts = match self.facts.take() {
            Some(facts) if Arc::ptr_eq(&facts.view, &view) => facts,
            _ => ViewFacts::new(config, &view),
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
            state
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
            if firing && silences.silenced_by(&alert.labels, wall).is_some() {
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
        for entry in state.log.values() {
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
        let logged_groups: HashSet<String> = state
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
            // A muted route's notifications are held, not dropped: nothing is logged as told, so the first
            // flush after the interval ends sends what is due then (Alertmanager's time mute stages).
            let held = group.route.is_some_and(|route| {
                chrono::DateTime::from_timestamp_millis(wall)
                    .is_some_and(|at| config.muted_at(route, at))
            });
            if held {
                tracing::debug!(group = %group.key, "notification held by a time interval");
            } else {
                changed |= flush(state, config, group, &muted, wall, template_failures);
            }
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
}

/// Alertmanager's dedup decision for each integration of the group's receiver, against the log; queues the
/// notifications that are due. True when the state changed.
fn flush(
    state: &mut State,
    config: &NotifyConfig,
    group: &Group<'_>,
    muted: &BTreeSet<String>,
    wall: i64,
    template_failures: &IntCounterVec,
) -> bool {
    let Some(receiver) = config.receiver(&group.receiver) else {
        // The configuration changed since the log was written: nothing can be sent there any more.
        let before = state.log.len();
        state
            .log
            .retain(|_, entry| entry.group_key != group.key || entry.receiver != group.receiver);
        tracing::warn!(receiver = %group.receiver, group = %group.key, "receiver no longer configured; its pending resolves are dropped");
        return before != state.log.len();
    };
    let repeat = group
        .route
        .map(|route| route.repeat_interval)
        .unwrap_or(config.route.repeat_interval);
    let mut changed = false;
    for (index, integration) in receiver.integrations.iter().enumerate() {
        let key = log_key(&group.key, &receiver.name, index);
        let entry = state.log.get(&key);
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
                    || (!firing.is_empty() && wall.saturating_sub(entry.sent_at) >= millis(repeat))
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
                first_of_episode,
                templating: Default::default(),
            };
            let payload = integration.render(&notice);
            // A failed template fell back to the built-in text: the notification goes out, the failure is told.
            for failure in notice.templating.take_failures() {
                template_failures
                    .with_label_values(&[integration.kind().as_str()])
                    .inc();
                tracing::warn!(
                    receiver = %receiver.name,
                    integration = integration.kind().as_str(),
                    field = %failure.field,
                    error = %failure.error,
                    "a notification template failed; the field uses dbwatch's built-in text"
                );
            }
            state.enqueue(OutboxEntry {
                id: 0,
                receiver: receiver.name.clone(),
                integration: index,
                integration_kind: integration.kind().as_str().to_owned(),
                group_key: group.key.clone(),
                payload,
                created_at: wall,
                attempts: 0,
                not_before: 0,
                last_error: None,
            });
            tracing::info!(
                receiver = %receiver.name,
                integration = integration.kind().as_str(),
                group = %group.key,
                firing = firing.len(),
                resolved = resolved.len(),
                "notification queued"
            );
        }
        if firing.is_empty() && carried.is_empty() {
            state.log.remove(&key);
        } else {
            let mut told = firing;
            told.extend(carried);
            state.log.insert(
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

/// `{a="1", b="2"}`, the group's identity within its route.
fn label_string(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}
