//! Wiring: build every piece from the validated config, spawn the tasks, wait for shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{self, HttpState};
pub use crate::load::{load, LoadError, Loaded};
use crate::reload::{self, Owners, Reloader};
use crate::scheduler::Scheduler;
use crate::self_metrics::SelfMetrics;
use crate::store::SnapshotStore;
use crate::supervise::{supervise, Components};
use crate::web::WebConfig;
use dbwatch_notify::{self as notify, Notifier};
use dbwatch_rules::{
    self as rules, AlertsHandle, EngineOptions, RuleMetrics, RuleUpdate, RulesEngine,
};
use dbwatch_storage::{self as storage, Storage};

/// How long tasks get to finish after a shutdown signal before the process exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register the daemon's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot listen for SIGHUP (reloads): {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
    #[error("cannot set up remote_write: {0}")]
    RemoteWrite(#[source] dbwatch_remote_write::ClientError),
}

/// Process-level settings that come from flags rather than the configuration file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--config.file`: read again on every reload.
    pub config_file: PathBuf,
    pub listen: SocketAddr,
    /// TLS and basic auth for the HTTP endpoint; `None` serves plain HTTP.
    pub web: Option<WebConfig>,
    /// Where alert state, the notification log and outbox and the silences are kept across restarts; opened
    /// (created, probed and locked) before anything else, and held for as long as the daemon runs.
    pub storage: Arc<Storage>,
    /// `--web.external-url`: how users reach dbwatch, for the links in notifications. `None`:
    /// `http(s)://<listen address>`.
    pub external_url: Option<String>,
    /// `--web.enable-unauthenticated-writes`: without `basic_auth_users`, accept writes (silences) from anyone.
    pub unauthenticated_writes: bool,
}

impl RunOptions {
    /// The URL in notification links: `--web.external-url`, else the listen address, https when TLS is on.
    pub fn external_url(&self) -> String {
        match &self.external_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let tls = self.web.as_ref().is_some_and(WebConfig::tls_enabled);
                format!("{}://{}", if tls { "https" } else { "http" }, self.listen)
            }
        }
    }
}

/// Checks a `--web.external-url` value: an absolute http or https URL.
pub fn parse_external_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|error| format!("{text:?}: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?}: not an http:// or https:// URL with a host"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(
    loaded: Loaded,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let Loaded {
        config,
        rules,
        routing,
        ..
    } = loaded;
    let listen = options.listen;
    let storage_path = options.storage.path().to_owned();
    let external_url = options.external_url();
    let registry = Registry::new();
    storage::register_metrics(
        &registry,
        &[
            rules::state::STATE_FILE,
            notify::store::STATE_FILE,
            notify::silence::SILENCES_FILE,
        ],
    )?;
    let metrics = SelfMetrics::register(&registry)?;
    let rule_metrics = RuleMetrics::register(&registry)?;
    let tracker = TaskTracker::new();
    // Started before the first poll, so that no snapshot is published before its queue exists.
    let remote_write = if config.remote_write.is_empty() {
        None
    } else {
        let remote_metrics = dbwatch_remote_write::RemoteWriteMetrics::register(&registry)?;
        let writers = dbwatch_remote_write::RemoteWriters::start(
            config.remote_write.clone(),
            &remote_metrics,
            &tracker,
            &shutdown,
        )
        .map_err(AppError::RemoteWrite)?;
        let encoder = dbwatch_remote_write::SeriesEncoder::new(&config.rules.external_labels);
        Some(crate::remote_write::Forwarder::new(writers, encoder))
    };
    let mut store = SnapshotStore::new(config.targets.len());
    if let Some(forward) = &remote_write {
        store = store.forwarding_to(Arc::new(forward.clone()));
        // The daemon's own metrics, at the rules' cadence (a global setting; targets poll at their own).
        tracker.spawn(crate::remote_write::forward_own_metrics(
            registry.clone(),
            forward.clone(),
            config.rules.evaluation_interval,
            shutdown.clone(),
        ));
    }
    let store = Arc::new(store);
    metrics.reload.succeeded(std::time::SystemTime::now());
    // The event history (alert transitions, notifications, silences, target changes); its writer is owned
    // here like every task, and recording never waits for it.
    let event_metrics = dbwatch_events::EventMetrics::register(&registry)?;
    let (events, writer) = dbwatch_events::channel(
        &storage_path,
        dbwatch_events::Retention::default(),
        event_metrics,
    );
    tracker.spawn(writer.run(shutdown.clone()));
    tracker.spawn(crate::target_events::run(
        Arc::clone(&store),
        events.clone(),
        shutdown.clone(),
    ));
    let thresholds = Arc::new(crate::web::ui::Thresholds::from_rules(&rules));

    // The scheduler owns the target tasks; the reloader reaches it through its handle.
    let (scheduler, scheduler_handle) = Scheduler::new(Arc::clone(&store), metrics.clone());
    tracker.spawn(scheduler.run(config.targets.clone(), shutdown.clone()));

    // Shared by every instance of the engine and the notifier, so that either can be restarted alone: the
    // engine publishes the view (a watch: each publication wakes the notifier), the notifier reconciles from
    // it.
    let components = Components::register(&registry)?;
    let alerts = AlertsHandle::default();
    // The rule set in force: a reload publishes the next one, the running engine swaps it in, and an engine
    // rebuilt by its supervisor starts from the latest.
    let rule_updates = Arc::new(tokio::sync::watch::Sender::new(RuleUpdate {
        rules: Arc::new(rules),
        evaluation_interval: config.rules.evaluation_interval,
        external_labels: config.rules.external_labels.clone(),
    }));
    {
        let store = Arc::clone(&store);
        let rule_updates = Arc::clone(&rule_updates);
        let external_url = external_url.clone();
        let storage_path = storage_path.clone();
        let alerts = alerts.clone();
        let events = events.clone();
        let remote_write = remote_write.clone();
        // Each build restores `alerts.json`, as a process restart would.
        tracker.spawn(supervise(
            "rules",
            components.clone(),
            shutdown.clone(),
            move |token| {
                // Subscribed before reading, so that a reload published in between is not missed.
                let mut updates = rule_updates.subscribe();
                let current = updates.borrow_and_update().clone();
                let engine_options = EngineOptions {
                    state_dir: Some(storage_path.clone()),
                    evaluation_interval: current.evaluation_interval,
                    external_labels: current.external_labels.clone(),
                    external_url: external_url.clone(),
                };
                let engine = RulesEngine::new(
                    Arc::clone(&store) as Arc<dyn dbwatch_rules::SampleSource>,
                    current.rules,
                    engine_options,
                    rule_metrics.clone(),
                )
                .publishing_to(alerts.clone())
                .reloading_from(updates)
                .recording_to(events.clone())
                .keeping_trends(crate::web::ui::TREND_NAMES, crate::web::ui::TREND_WINDOW);
                let engine = match &remote_write {
                    Some(forward) => engine.writing_to(Arc::new(forward.clone())),
                    None => engine,
                };
                Ok(engine.run(token))
            },
        ));
    }
    let mut notifier_seed = None;
    let notify_api = match routing {
        Some(mut routing) => {
            routing.delivery.external_url = external_url.clone();
            routing.delivery.alertmanagers = config.alerting.alertmanagers.clone();
            // Built here once so that an unusable state (an unreadable file) fails the start; rebuilt by the
            // supervisor from the saved outbox and log after a failure.
            let notifier = Notifier::new(routing, &storage_path, &registry, alerts.clone())?
                .recording_to(events.clone());
            let api = (notifier.api_router(), notifier.silences());
            let seed = notifier.seed();
            notifier_seed = Some(seed.clone());
            let mut first = Some(notifier);
            tracker.spawn(supervise(
                "notifier",
                components.clone(),
                shutdown.clone(),
                move |token| {
                    let notifier = match first.take() {
                        Some(notifier) => notifier,
                        None => seed.build().map_err(|error| error.to_string())?,
                    };
                    Ok(notifier.run(token))
                },
            ));
            Some(api)
        }
        // Alertmanager does the routing: dbwatch only pushes its alerts there, as Prometheus would. No silences
        // API here, since dbwatch's silences mute only its own notifications; they are made in Alertmanager.
        None if !config.alerting.alertmanagers.is_empty() => {
            let delivery = notify::DeliveryOptions::default();
            let metrics = notify::NotifyMetrics::register(&registry)?;
            let client =
                notify::http_client(delivery.timeout).map_err(notify::NotifyError::Client)?;
            let alertmanagers = config.alerting.alertmanagers.clone();
            let external_url = external_url.clone();
            let alerts = alerts.clone();
            tracker.spawn(supervise(
                "forwarder",
                components.clone(),
                shutdown.clone(),
                move |token| {
                    let forwarder = notify::forward::Forwarder::new(
                        alertmanagers.clone(),
                        delivery.alertmanager_resend,
                        delivery.timeout,
                        external_url.clone(),
                    );
                    Ok(forwarder.run(alerts.clone(), client.clone(), metrics.clone(), token))
                },
            ));
            None
        }
        // Without a routing file or Alertmanagers alerts are only logged (by the engine) and shown.
        None => None,
    };
    let (reloader, reload_handle) = Reloader::new(
        options.config_file.clone(),
        config,
        Owners {
            scheduler: scheduler_handle,
            rules: rule_updates,
            notifier: notifier_seed,
        },
        external_url.clone(),
        metrics.reload.clone(),
    );
    tracker.spawn(reloader.run(shutdown.clone()));
    tracker.spawn(reload::record_outcomes(
        reload_handle.outcomes(),
        events.clone(),
        shutdown.clone(),
    ));
    #[cfg(unix)]
    tracker.spawn(
        reload::on_sighup(reload_handle.clone(), shutdown.clone()).map_err(AppError::Signal)?,
    );
    tracker.close();

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| AppError::Listen {
            address: listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    let mut web = options.web.clone().unwrap_or_default();
    tracing::info!(
        address = %bound,
        tls = web.tls_enabled(),
        basic_auth = web.basic_auth_enabled(),
        write_users = ?web.write_users().collect::<Vec<_>>(),
        external_url = %external_url,
        "serving /metrics"
    );
    if options.unauthenticated_writes {
        if web.basic_auth_enabled() {
            tracing::warn!(
                "--web.enable-unauthenticated-writes is ignored: basic_auth_users are configured, so writes \
                 need a user listed under write_users"
            );
        } else {
            tracing::warn!(
                address = %bound,
                "--web.enable-unauthenticated-writes: anyone who can reach this address can create and expire \
                 silences, and so mute every page"
            );
            // The external URL's host is how operators name dbwatch; the rebinding check accepts it.
            let hosts = reqwest::Url::parse(&external_url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
                .into_iter()
                .collect();
            web = web.with_unauthenticated_writes(hosts);
        }
    }
    let (notify_api, silences) = notify_api.unzip();
    let ui = crate::web::ui::UiState {
        store: Arc::clone(&store),
        alerts: alerts.clone(),
        components: components.clone(),
        silences,
        events: dbwatch_events::EventLog::new(&storage_path),
        thresholds,
        writers: crate::web::ui::Writers::of(&web),
        csrf: crate::web::ui::Csrf::default(),
    };
    let router = http::router(HttpState {
        store: Arc::clone(&store),
        registry,
        alerts,
        components,
    })
    .merge(crate::web::ui::router(ui))
    .merge(crate::web::events_api::router(
        dbwatch_events::EventLog::new(&storage_path),
    ))
    // A write like any other non-GET: the web layer requires a write user for it.
    .merge(http::reload_router(reload_handle));
    // The silences API (Alertmanager's v2 paths), so amtool can manage dbwatch's silences.
    let router = match notify_api {
        Some(api) => router.merge(api),
        None => router,
    };
    // The deadline counts from the shutdown signal and covers everything: the server's drain of open
    // connections (at most web::DRAIN_TIMEOUT) and the tasks' last saves, which run at the same time.
    let everything = async {
        let served = crate::web::serve(listener, router, Some(web), shutdown.clone()).await;
        // The server ends first only on an error; the pollers must stop too.
        shutdown.cancel();
        tracker.wait().await;
        served
    };
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_DEADLINE).await;
    };
    let served = tokio::select! {
        served = everything => served,
        _ = deadline => {
            tracing::warn!(
                deadline = %humantime::format_duration(SHUTDOWN_DEADLINE),
                "tasks did not finish before the shutdown deadline"
            );
            Ok(())
        }
    };
    served.map_err(AppError::Serve)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; only SIGINT stops the daemon");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
