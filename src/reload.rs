//! Reloading the configuration while running: on SIGHUP and `POST /-/reload`, as Prometheus does.
//!
//! One task (the [`Reloader`]) owns the reload: requests queue on its channel and are applied one at a time, so
//! two reloads never interleave. A reload reads and validates everything first, through [`crate::load::load`]
//! (the path of `dbwatch check-config`): the configuration file, every rule file and the routing file. Any
//! problem, or a change that cannot be applied to a running daemon, leaves the running set untouched, is logged
//! with its file, line and key path, and sets `dbwatch_config_last_reload_successful` to 0. Only then is the new
//! set handed to its owners, each of which swaps it in whole:
//!
//! - the scheduler ([`crate::scheduler::SchedulerHandle::apply`]) keeps targets whose settings are unchanged
//!   (task, connection, schedule, last snapshot), stops changed and removed ones (awaited, within a deadline)
//!   and starts changed and new ones;
//! - the rules engine gets the new rule set on a `watch` ([`RuleUpdate`]) and swaps it between two
//!   evaluations, alert state carried by rule identity and the sample history kept;
//! - the notifier gets the new routing ([`NotifierSeed::reload`]) and rebuilds its groups from its
//!   notification log, so nothing already sent is sent again.
//!
//! Every outcome is answered to the requester and published on a `watch` ([`ReloadHandle::outcomes`]) for
//! whoever wants to show or record reloads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::load::{self, Loaded};
use crate::scheduler::{SchedulerHandle, TargetChanges};
use crate::self_metrics::ReloadMetrics;
use dbwatch_notify::NotifierSeed;
use dbwatch_rules::RuleUpdate;

/// How long a requester waits for its reload's outcome. Reading the files and stopping changed targets
/// (all at once, within `scheduler::STOP_DEADLINE`) take far less; past this the answer is a 503 and the
/// reload still completes. Inside the web layer's `REQUEST_TIMEOUT` (30 s), so the POST gets this answer.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(20);
/// Requests waiting behind the one being applied; more are refused as busy.
const QUEUE: usize = 8;

/// What asked for the reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Http,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Http => "POST /-/reload",
        }
    }
}

/// One reload, as answered and published.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadOutcome {
    pub trigger: Trigger,
    pub at: SystemTime,
    pub result: Result<ReloadSummary, ReloadFailure>,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadSummary {
    pub targets: TargetChanges,
    pub rule_groups: usize,
    pub rules: usize,
    /// Whether a routing file was applied (false without one).
    pub routing: bool,
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailure {
    pub kind: FailureKind,
    /// The problem as logged: file, line and key path for a bad file.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A file could not be read or has problems: the requester's to fix.
    Invalid,
    /// The files are valid but change something a running daemon cannot change.
    Refused,
    /// The daemon is shutting down, or the reload did not finish within [`RELOAD_DEADLINE`].
    Unavailable,
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(summary) => {
                let t = &summary.targets;
                write!(
                    f,
                    "reloaded: targets kept {}, restarted {}, added {}, removed {}; {} rules in {} groups{}",
                    list(&t.kept),
                    list(&t.restarted),
                    list(&t.added),
                    list(&t.removed),
                    summary.rules,
                    summary.rule_groups,
                    if summary.routing { "; routing applied" } else { "" }
                )
            }
            Err(failure) => write!(
                f,
                "reload failed, the previous configuration keeps running: {}",
                failure.message
            ),
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

struct Request {
    trigger: Trigger,
    reply: oneshot::Sender<ReloadOutcome>,
}

/// Asks the reloader for reloads; cloning shares it.
#[derive(Clone)]
pub struct ReloadHandle {
    requests: mpsc::Sender<Request>,
    outcomes: watch::Receiver<Option<ReloadOutcome>>,
}

impl ReloadHandle {
    /// Reloads and answers the outcome, within [`RELOAD_DEADLINE`].
    pub async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let unavailable = |message: &str| ReloadOutcome {
            trigger,
            at: SystemTime::now(),
            result: Err(ReloadFailure {
                kind: FailureKind::Unavailable,
                message: message.to_owned(),
            }),
        };
        let (reply, answer) = oneshot::channel();
        if let Err(error) = self.requests.try_send(Request { trigger, reply }) {
            return unavailable(match error {
                mpsc::error::TrySendError::Full(_) => "too many reloads are waiting; try again",
                mpsc::error::TrySendError::Closed(_) => "dbwatch is shutting down",
            });
        }
        match tokio::time::timeout(RELOAD_DEADLINE, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => unavailable("dbwatch is shutting down"),
            Err(_) => {
                unavailable("the reload did not finish in time; it completes in the background")
            }
        }
    }

    /// The latest reload's outcome (`None` before the first); marked changed by each reload. The hook for
    /// whatever records or shows reloads (an events history, the status page).
    pub fn outcomes(&self) -> watch::Receiver<Option<ReloadOutcome>> {
        self.outcomes.clone()
    }
}

/// The running set's owners, as the reloader reaches them.
pub struct Owners {
    pub scheduler: SchedulerHandle,
    pub rules: Arc<watch::Sender<RuleUpdate>>,
    /// `None` without a routing file.
    pub notifier: Option<NotifierSeed>,
}

/// The one task that applies reloads.
pub struct Reloader {
    config_file: PathBuf,
    /// The configuration running now, to compare the next one with.
    current: Config,
    owners: Owners,
    /// What the daemon adds to the routing file's delivery options (`app::run` sets them at start).
    external_url: String,
    metrics: ReloadMetrics,
    requests: mpsc::Receiver<Request>,
    outcomes: watch::Sender<Option<ReloadOutcome>>,
}

impl Reloader {
    pub fn new(
        config_file: PathBuf,
        current: Config,
        owners: Owners,
        external_url: String,
        metrics: ReloadMetrics,
    ) -> (Reloader, ReloadHandle) {
        let (requests_tx, requests) = mpsc::channel(QUEUE);
        let (outcomes, outcomes_rx) = watch::channel(None);
        (
            Reloader {
                config_file,
                current,
                owners,
                external_url,
                metrics,
                requests,
                outcomes,
            },
            ReloadHandle {
                requests: requests_tx,
                outcomes: outcomes_rx,
            },
        )
    }

    /// Applies requests one at a time until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let request = tokio::select! {
                request = self.requests.recv() => request,
                _ = shutdown.cancelled() => None,
            };
            let Some(Request { trigger, reply }) = request else {
                return;
            };
            let result = self.reload().await;
            let outcome = ReloadOutcome {
                trigger,
                at: SystemTime::now(),
                result,
            };
            match &outcome.result {
                Ok(_) => {
                    self.metrics.succeeded(outcome.at);
                    tracing::info!(trigger = trigger.as_str(), "{outcome}");
                }
                Err(failure) if failure.kind == FailureKind::Unavailable => {
                    tracing::warn!(trigger = trigger.as_str(), "{outcome}");
                }
                Err(_) => {
                    self.metrics.failed();
                    tracing::error!(trigger = trigger.as_str(), "{outcome}");
                }
            }
            self.outcomes.send_replace(Some(outcome.clone()));
            // The requester may have given up waiting.
            let _ = reply.send(outcome);
        }
    }

    async fn reload(&mut self) -> Result<ReloadSummary, ReloadFailure> {
        let file = self.config_file.clone();
        // Globs and file reads: blocking IO, off the runtime's two workers.
        let loaded = tokio::task::spawn_blocking(move || load::load(&file))
            .await
            .map_err(|error| ReloadFailure {
                kind: FailureKind::Unavailable,
                message: format!("the load task failed: {error}"),
            })?
            .map_err(|error| ReloadFailure {
                kind: FailureKind::Invalid,
                message: error.to_string(),
            })?;
        let refusals = refusals(&self.current, &loaded, self.owners.notifier.is_some());
        if !refusals.is_empty() {
            return Err(ReloadFailure {
                kind: FailureKind::Refused,
                message: format!("{}: {}", self.config_file.display(), refusals.join("; ")),
            });
        }
        let Loaded {
            config,
            rules,
            routing,
            ..
        } = loaded;
        let targets = self
            .owners
            .scheduler
            .apply(config.targets.clone())
            .await
            .map_err(|error| ReloadFailure {
                kind: FailureKind::Unavailable,
                message: error.to_string(),
            })?;
        let summary = ReloadSummary {
            targets,
            rule_groups: rules.groups.len(),
            rules: rules.rule_count(),
            routing: routing.is_some(),
        };
        self.owners.rules.send_replace(RuleUpdate {
            rules: Arc::new(rules),
            evaluation_interval: config.rules.evaluation_interval,
            external_labels: config.rules.external_labels.clone(),
        });
        if let (Some(seed), Some(mut routing)) = (&self.owners.notifier, routing) {
            routing.delivery.external_url = self.external_url.clone();
            routing.delivery.alertmanagers = config.alerting.alertmanagers.clone();
            seed.reload(routing);
        }
        self.current = config;
        Ok(summary)
    }
}

/// What the new configuration changes that a running daemon cannot, each named by key with the reason. The
/// flags (`--web.listen-address`, `--storage.path`, `--web.config.file`, `--web.external-url`) are not in
/// the file and are never re-read: they change with a restart only.
fn refusals(current: &Config, new: &Loaded, notifier_runs: bool) -> Vec<String> {
    let mut refused = Vec::new();
    let routing_now = current.alerting.routing_file.is_some();
    let routing_next = new.config.alerting.routing_file.is_some();
    if routing_now != routing_next || routing_next != notifier_runs {
        refused.push(format!(
            "alerting.config_file: {} a routing file needs a restart (it starts or stops the notifier and the silences API)",
            if routing_next { "adding" } else { "removing" }
        ));
    }
    if current.alerting.alertmanagers != new.config.alerting.alertmanagers {
        refused.push(
            "alerting.alertmanagers: cannot change while running (the Alertmanager push is set up at start); restart dbwatch"
                .to_owned(),
        );
    }
    if current.remote_write != new.config.remote_write {
        refused.push(
            "remote_write: cannot change while running (its queues and connections are set up at start); restart dbwatch"
                .to_owned(),
        );
    }
    let remote_writing = !current.remote_write.is_empty();
    if remote_writing && current.rules.external_labels != new.config.rules.external_labels {
        refused.push(
            "global.external_labels: cannot change while remote_write is configured (they are part of every remote-written series' identity); restart dbwatch"
                .to_owned(),
        );
    }
    refused
}

/// Reloads on every SIGHUP until `shutdown`. Installed before anything else runs, so that a SIGHUP never
/// takes the default action (ending the process).
#[cfg(unix)]
pub fn on_sighup(
    handle: ReloadHandle,
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(async move {
        loop {
            tokio::select! {
                received = hangup.recv() => {
                    if received.is_none() {
                        return;
                    }
                }
                _ = shutdown.cancelled() => return,
            }
            // The outcome is logged by the reloader.
            let _ = handle.reload(Trigger::Signal).await;
        }
    })
}

/// Records every reload's outcome in the event history, until `shutdown`. The outcome is published on a
/// watch, so a burst of reloads may record only the last of them; each one is also logged and counted.
pub async fn record_outcomes(
    mut outcomes: watch::Receiver<Option<ReloadOutcome>>,
    events: dbwatch_events::EventSink,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = outcomes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.cancelled() => return,
        }
        let Some(outcome) = outcomes.borrow_and_update().clone() else {
            continue;
        };
        let trigger = match outcome.trigger {
            Trigger::Signal => "sighup",
            Trigger::Http => "http",
        };
        match &outcome.result {
            Ok(_) => events.reload(true, trigger, None),
            Err(failure) => events.reload(false, trigger, Some(failure.message.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn loaded(text: &str) -> Loaded {
        let no_env = |_: &str| None;
        Loaded {
            config: crate::config::load_str(Path::new("dbwatch.yml"), text, &no_env)
                .unwrap_or_else(|errors| panic!("{errors}")),
            rule_files: Vec::new(),
            rules: dbwatch_rules::RuleSet::default(),
            routing: None,
        }
    }

    const TARGETS: &str = "targets:\n  - name: a\n    type: postgres\n    connection: {host: db, port: 5432, user: u, password: p}\n";

    #[test]
    fn remote_write_and_its_external_labels_change_only_with_a_restart() {
        let pushing = |url: &str, cluster: &str| {
            loaded(&format!(
                "global:\n  external_labels: {{cluster: {cluster}}}\nremote_write:\n  - url: {url}\n{TARGETS}"
            ))
        };
        let current = pushing("http://mimir:9009/api/v1/push", "eu").config;
        let same = pushing("http://mimir:9009/api/v1/push", "eu");
        assert!(refusals(&current, &same, false).is_empty());
        let moved = refusals(
            &current,
            &pushing("http://other:9009/api/v1/push", "eu"),
            false,
        );
        assert_eq!(moved.len(), 1);
        assert!(
            moved[0].starts_with("remote_write: cannot change while running"),
            "{moved:?}"
        );
        let relabelled = refusals(
            &current,
            &pushing("http://mimir:9009/api/v1/push", "us"),
            false,
        );
        assert_eq!(relabelled.len(), 1);
        assert!(
            relabelled[0].starts_with("global.external_labels: cannot change while remote_write"),
            "{relabelled:?}"
        );
        // Without remote_write, external labels reload like everything else (the rules engine takes them).
        let quiet = loaded(&format!(
            "global:\n  external_labels: {{cluster: eu}}\n{TARGETS}"
        ))
        .config;
        let relabelled = loaded(&format!(
            "global:\n  external_labels: {{cluster: us}}\n{TARGETS}"
        ));
        assert!(refusals(&quiet, &relabelled, false).is_empty());
    }
}
