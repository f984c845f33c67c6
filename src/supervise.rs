//! Supervision of the long-running components (the rules engine, the notifier, or the Alertmanager forwarder
//! when it runs without a notifier): a component that ends
//! before shutdown, by a panic or by returning, is rebuilt from its saved state and started again after a
//! bounded backoff. Every restart is counted and logged, and while a component is down
//! `dbwatch_component_up{component}` is 0, `/-/ready` answers 503 naming it and the status page shows it, so a
//! dead notifier never looks healthy.
//!
//! Why rebuild rather than only respawn: a component that died may have died *because of* its in-memory state
//! (the notifier's panic on a receiver's `Retry-After` was one), so the new instance starts from what was last
//! made durable (`alerts.json`, `notifications.json`), exactly as after a process restart. What the two
//! components share (the alerts view, the wake-up `Notify`, the silences, the metrics) lives outside them and
//! survives the restart.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

/// Wait before the first restart; doubled for each restart in a row, up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// A component that keeps dying is restarted at most this often, so a crash loop costs little CPU and log.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run at least this long counts as healthy: the next failure starts again from [`INITIAL_BACKOFF`].
const STABLE_RUN: Duration = Duration::from_secs(600);

/// One component as `/-/ready` and the status page show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentStatus {
    pub name: &'static str,
    pub up: bool,
    pub restarts: u64,
    /// Why it last ended, while it is down or since its last restart.
    pub last_failure: Option<String>,
    /// When it last came up or went down.
    pub since: SystemTime,
}

/// The supervised components' health, shared by the supervisors, `/-/ready`, the status page and `/metrics`.
#[derive(Clone)]
pub struct Components {
    states: Arc<Mutex<BTreeMap<&'static str, ComponentStatus>>>,
    restarts: IntCounterVec,
    up: IntGaugeVec,
}

impl Components {
    pub fn register(registry: &Registry) -> Result<Components, prometheus::Error> {
        let restarts = IntCounterVec::new(
            Opts::new(
                "dbwatch_component_restarts_total",
                "Restarts of a supervised component (rules, notifier, forwarder) after it ended before shutdown",
            ),
            &["component"],
        )?;
        let up = IntGaugeVec::new(
            Opts::new(
                "dbwatch_component_up",
                "1 while the supervised component (rules, notifier, forwarder) runs, 0 while it is down",
            ),
            &["component"],
        )?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(up.clone()))?;
        Ok(Components {
            states: Arc::default(),
            restarts,
            up,
        })
    }

    fn set(&self, name: &'static str, up: bool, failure: Option<String>) {
        self.up.with_label_values(&[name]).set(i64::from(up));
        self.restarts.with_label_values(&[name]);
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let status = states.entry(name).or_insert_with(|| ComponentStatus {
            name,
            up,
            restarts: 0,
            last_failure: None,
            since: SystemTime::now(),
        });
        status.up = up;
        status.since = SystemTime::now();
        if failure.is_some() {
            status.last_failure = failure;
        }
    }

    fn restarted(&self, name: &'static str) {
        self.restarts.with_label_values(&[name]).inc();
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(status) = states.get_mut(name) {
            status.restarts = status.restarts.saturating_add(1);
        }
    }

    /// Every component, by name.
    pub fn statuses(&self) -> Vec<ComponentStatus> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The names of the components that are down.
    pub fn down(&self) -> Vec<&'static str> {
        self.statuses()
            .into_iter()
            .filter(|status| !status.up)
            .map(|status| status.name)
            .collect()
    }
}

/// Runs the component `build` makes until `shutdown`, rebuilding and restarting it whenever it ends first.
///
/// `build` gets the shutdown token and returns the component's run future (or why it cannot be built, which is
/// treated like a failure: retried after the backoff). The future runs in its own task so that a panic is
/// caught as a `JoinError` instead of unwinding through the supervisor. At shutdown the supervisor waits for the
/// component to finish (it saves its state on cancellation), so the caller's task tracker covers it.
pub async fn supervise<B, F>(
    name: &'static str,
    components: Components,
    shutdown: CancellationToken,
    build: B,
) where
    B: FnMut(CancellationToken) -> Result<F, String>,
    F: Future<Output = ()> + Send + 'static,
{
    supervise_with(
        name,
        components,
        shutdown,
        (INITIAL_BACKOFF, MAX_BACKOFF),
        build,
    )
    .await
}

/// [`supervise`] with its backoff bounds given: for tests.
async fn supervise_with<B, F>(
    name: &'static str,
    components: Components,
    shutdown: CancellationToken,
    (initial_backoff, max_backoff): (Duration, Duration),
    mut build: B,
) where
    B: FnMut(CancellationToken) -> Result<F, String>,
    F: Future<Output = ()> + Send + 'static,
{
    let mut backoff = initial_backoff;
    // Declared down until it first runs, so readiness never counts a component that was never started.
    components.set(name, false, None);
    let mut first = true;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let failure = match build(shutdown.clone()) {
            Ok(run) => {
                if !first {
                    components.restarted(name);
                    tracing::warn!(component = name, "component restarted");
                }
                components.set(name, true, None);
                let started = tokio::time::Instant::now();
                let mut task = tokio::spawn(run);
                let ended = tokio::select! {
                    ended = &mut task => ended,
                    _ = shutdown.cancelled() => {
                        // The component sees the same token and saves its state; wait for it, the caller bounds
                        // the wait with the shutdown deadline.
                        let _ = task.await;
                        return;
                    }
                };
                if shutdown.is_cancelled() {
                    return;
                }
                if started.elapsed() >= STABLE_RUN {
                    backoff = initial_backoff;
                }
                match ended {
                    Ok(()) => "it returned before shutdown".to_owned(),
                    Err(error) if error.is_panic() => {
                        format!("it panicked: {}", panic_message(error.into_panic()))
                    }
                    Err(error) => format!("its task failed: {error}"),
                }
            }
            Err(reason) => format!("it cannot be built: {reason}"),
        };
        first = false;
        components.set(name, false, Some(failure.clone()));
        tracing::error!(component = name, reason = %failure, retry_in = ?backoff, "component stopped; restarting it");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = backoff.saturating_mul(2).min(max_backoff);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn gauge(registry: &Registry, name: &str) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric().iter())
            .map(|sample| {
                if sample.get_counter().get_value() != 0.0 {
                    sample.get_counter().get_value()
                } else {
                    sample.get_gauge().get_value()
                }
            })
            .sum()
    }

    #[tokio::test]
    async fn a_panicking_component_is_restarted_counted_and_reported_down_meanwhile() {
        let registry = Registry::new();
        let components = Components::register(&registry).expect("metrics");
        let shutdown = CancellationToken::new();
        let builds = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&builds);
        let supervisor = tokio::spawn(supervise_with(
            "notifier",
            components.clone(),
            shutdown.clone(),
            (Duration::from_millis(300), MAX_BACKOFF),
            move |token: CancellationToken| {
                let build = counted.fetch_add(1, Ordering::SeqCst);
                Ok(async move {
                    if build == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        panic!("injected");
                    }
                    token.cancelled().await;
                })
            },
        ));
        // Down right after the panic, during the first backoff.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(components.down(), ["notifier"]);
        let status = &components.statuses()[0];
        assert_eq!(status.restarts, 0);
        assert!(
            status
                .last_failure
                .as_deref()
                .is_some_and(|reason| reason.contains("panicked: injected")),
            "{status:?}"
        );
        assert_eq!(gauge(&registry, "dbwatch_component_up"), 0.0);
        // Up again after the backoff, counted once.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(components.down().is_empty());
        assert_eq!(components.statuses()[0].restarts, 1);
        assert_eq!(gauge(&registry, "dbwatch_component_restarts_total"), 1.0);
        assert_eq!(gauge(&registry, "dbwatch_component_up"), 1.0);
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        shutdown.cancel();
        supervisor.await.expect("the supervisor ends at shutdown");
    }

    #[tokio::test]
    async fn a_component_that_returns_or_cannot_be_built_backs_off_boundedly() {
        let components = Components::register(&Registry::new()).expect("metrics");
        let shutdown = CancellationToken::new();
        let builds = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&builds);
        let supervisor = tokio::spawn(supervise_with(
            "rules",
            components.clone(),
            shutdown.clone(),
            (Duration::from_millis(10), Duration::from_millis(40)),
            move |_token: CancellationToken| {
                // Every other build fails; the others return at once.
                if counted.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    Err("no state".to_owned())
                } else {
                    Ok(async {})
                }
            },
        ));
        // 10 + 20 + 40 + 40 + … ms: about 25 attempts in a second, not a busy loop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let attempts = builds.load(Ordering::SeqCst);
        assert!((5..=40).contains(&attempts), "{attempts} builds");
        assert_eq!(components.down(), ["rules"]);
        shutdown.cancel();
        supervisor.await.expect("the supervisor ends at shutdown");
    }
}
