//! Runs dbwatch's notifier alone, fed from a JSON file of alerts instead of a rules engine: the process the
//! crash test (tests/notify.rs) SIGKILLs and restarts.
//!
//! ```text
//! notify_driver ROUTING_FILE STATE_DIR ALERTS_JSON [INITIAL_BACKOFF_MS] [TIMEOUT_MS]
//! ```
//!
//! ALERTS_JSON is re-read every 50 ms and published as the engine's view: a list of
//! `{"labels": {...}, "annotations": {...}, "state": "firing"|"inactive", "active_at_ms": N,
//! "fired_at_ms": N|null, "resolved_at_ms": N|null}`. A missing or half-written file keeps the last view.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dbwatch_notify::{self as notify, Notifier};
use dbwatch_rules::{AlertState, AlertSummary, AlertsHandle};
use tokio_util::sync::CancellationToken;

#[derive(serde::Deserialize)]
struct FileAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    state: AlertState,
    active_at_ms: u64,
    fired_at_ms: Option<u64>,
    resolved_at_ms: Option<u64>,
}

fn at(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

fn read_alerts(path: &PathBuf) -> Option<Vec<AlertSummary>> {
    let text = std::fs::read(path).ok()?;
    let alerts: Vec<FileAlert> = serde_json::from_slice(&text).ok()?;
    Some(
        alerts
            .into_iter()
            .map(|alert| AlertSummary {
                group: "driver".to_owned(),
                alertname: alert.labels.get("alertname").cloned().unwrap_or_default(),
                labels: alert.labels,
                annotations: alert.annotations,
                state: alert.state,
                value: 1.0,
                active_at: at(alert.active_at_ms),
                fired_at: alert.fired_at_ms.map(at),
                resolved_at: alert.resolved_at_ms.map(at),
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    // The daemon's logging, `RUST_LOG` included, so that tests see what the daemon would print.
    dbwatch::logging::init("info");
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: notify_driver ROUTING_FILE STATE_DIR ALERTS_JSON [INITIAL_BACKOFF_MS] [TIMEOUT_MS]");
        return ExitCode::from(2);
    }
    let mut config = match notify::load_file(&PathBuf::from(&args[1])) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let millis = |index: usize, default: u64| {
        args.get(index)
            .and_then(|text| text.parse().ok())
            .map_or(Duration::from_millis(default), Duration::from_millis)
    };
    config.delivery.initial_backoff = millis(4, 200);
    config.delivery.max_backoff = Duration::from_secs(1);
    config.delivery.timeout = millis(5, 2000);
    config.delivery.max_attempts = 10_000;
    let alerts_file = PathBuf::from(&args[3]);
    tracing::debug!(state = %args[2], "notify driver started");
    let handle = AlertsHandle::default();
    let registry = prometheus::Registry::new();
    let notifier = match Notifier::new(config, &PathBuf::from(&args[2]), &registry, handle.clone())
    {
        Ok(notifier) => notifier,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let shutdown = CancellationToken::new();
    let feeder = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            while !shutdown.is_cancelled() {
                if let Some(alerts) = read_alerts(&alerts_file) {
                    handle.publish_alerts(alerts, SystemTime::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let run = tokio::spawn(notifier.run(shutdown.clone()));
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
    let _ = run.await;
    let _ = feeder.await;
    ExitCode::SUCCESS
}
