//! Wiring: build every piece from the validated config, spawn the tasks, wait for shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::scheduler::{self, TargetTask};
use crate::self_metrics::SelfMetrics;
use crate::store::SnapshotStore;

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
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let registry = Registry::new();
    let metrics = SelfMetrics::register(&registry)?;
    let store = Arc::new(SnapshotStore::new(config.targets.len()));
    let tracker = TaskTracker::new();

    for target in config.targets {
        let collector = scheduler::build_collector(&target.engine);
        let task = TargetTask::new(target, collector, Arc::clone(&store), metrics.clone());
        tracker.spawn(task.run(shutdown.clone()));
    }
    tracker.close();

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| AppError::Listen {
            address: listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(address = %bound, "serving /metrics");
    let router = http::router(HttpState {
        store: Arc::clone(&store),
        registry,
    });
    let server_shutdown = shutdown.clone();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
        .await;
    // The server ends first only on an error; the pollers must stop too.
    shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            deadline = %humantime::format_duration(SHUTDOWN_DEADLINE),
            "tasks did not finish before the shutdown deadline"
        );
    }
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
