//! Forwarding to Alertmanager clusters (`POST /api/v2/alerts`), for deployments that keep their Alertmanagers
//! for HA, routing or silences: dbwatch then plays Prometheus' part.
//!
//! Alertmanager's protocol is state, not events: a client re-sends every firing alert before its `endsAt`
//! passes and sends resolved alerts with `endsAt` set to when they resolved (`docs/alerts_api.md`). So this
//! needs no outbox: each push carries the whole current view, to every configured Alertmanager (not one behind
//! a load balancer), whenever the view's alerts change and at least every `resend` interval; a failed push is
//! repaired by the next one. Firing alerts get `endsAt = now + 4 × resend`, as Prometheus sets it, so a dbwatch
//! that died is noticed by Alertmanager resolving its alerts, never by alerts that fire forever.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::TICK;
use super::integrations::http::answer_text;
use super::metrics::NotifyMetrics;
use super::render::rfc3339;
use dbwatch_rules::alerting::unix_millis;
use dbwatch_rules::{AlertState, AlertsHandle, AlertsView};
use dbwatch_secret::redact_url;

/// What was pushed: each alert's labels and whether it was firing.
type Signature = Vec<(BTreeMap<String, String>, bool)>;

/// How long pushes in flight at shutdown may still take before they are aborted: a resolve that is on its
/// way is worth a moment, a hanging Alertmanager must not hold the daemon's exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub struct Forwarder {
    urls: Vec<String>,
    resend: Duration,
    timeout: Duration,
    external_url: String,
    last: Option<(Instant, Signature)>,
    /// The current push, one task per Alertmanager: owned here, so they end with the notifier (or the
    /// supervised task) that owns the forwarder, and are given [`SHUTDOWN_GRACE`] at shutdown.
    pushes: JoinSet<(String, Result<(), String>)>,
}

impl Forwarder {
    pub fn new(
        urls: Vec<String>,
        resend: Duration,
        timeout: Duration,
        external_url: String,
    ) -> Forwarder {
        Forwarder {
            urls,
            resend,
            timeout,
            external_url,
            last: None,
            pushes: JoinSet::new(),
        }
    }

    /// Pushes the view when it changed or the resend interval passed; at most one push in flight.
    pub fn tick(
        &mut self,
        view: &AlertsView,
        now: Instant,
        client: &reqwest::Client,
        metrics: &NotifyMetrics,
    ) {
        // Reap the finished pushes: count and log each.
        while let Some(joined) = self.pushes.try_join_next() {
            reap(joined, metrics);
        }
        if self.urls.is_empty() || view.evaluated_at.is_none() || !self.pushes.is_empty() {
            return;
        }
        let signature: Signature = view
            .alerts
            .iter()
            .filter(|alert| alert.fired_at.is_some() && alert.state != AlertState::Pending)
            .map(|alert| (alert.labels.clone(), alert.state == AlertState::Firing))
            .collect();
        let due = match &self.last {
            None => !signature.is_empty(),
            Some((at, previous)) => {
                *previous != signature || now.duration_since(*at) >= self.resend
            }
        };
        if !due {
            return;
        }
        let wall = unix_millis(SystemTime::now());
        let valid_until = wall.saturating_add(
            i64::try_from(self.resend.saturating_mul(4).as_millis()).unwrap_or(i64::MAX),
        );
        let alerts: Vec<Value> = view
            .alerts
            .iter()
            .filter(|alert| alert.fired_at.is_some() && alert.state != AlertState::Pending)
            .map(|alert| {
                let ends_at = match (alert.state, alert.resolved_at) {
                    (AlertState::Firing, _) | (_, None) => valid_until,
                    (_, Some(resolved)) => unix_millis(resolved),
                };
                json!({
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "startsAt": rfc3339(unix_millis(alert.fired_at.unwrap_or(alert.active_at))),
                    "endsAt": rfc3339(ends_at),
                    "generatorURL": self.external_url,
                })
            })
            .collect();
        self.last = Some((now, signature));
        let body = Value::Array(alerts).to_string();
        let timeout = self.timeout;
        // One task per Alertmanager, so they run concurrently; each bounded by the request timeout.
        for url in &self.urls {
            let push = push(client, url, body.clone(), timeout);
            let url = url.clone();
            self.pushes.spawn(async move {
                let outcome =
                    tokio::time::timeout(timeout.saturating_add(Duration::from_secs(1)), push)
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (url, outcome)
            });
        }
    }

    /// Pushes on its own, for a dbwatch with `alerting.alertmanagers` and no routing file of its own: the
    /// notifier's loop reduced to the forwarder, woken by each view the engine publishes and every tick, until
    /// `shutdown`.
    pub async fn run(
        mut self,
        alerts: AlertsHandle,
        client: reqwest::Client,
        metrics: NotifyMetrics,
        shutdown: CancellationToken,
    ) {
        let mut views = alerts.subscribe();
        loop {
            self.tick(&alerts.view(), Instant::now(), &client, &metrics);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Never an error while `alerts` holds the sender; the tick covers it if it were.
                Ok(()) = views.changed() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        self.finish(&metrics).await;
    }

    /// At shutdown: waits up to [`SHUTDOWN_GRACE`] for the pushes in flight (counting them), then aborts the
    /// rest.
    pub async fn finish(&mut self, metrics: &NotifyMetrics) {
        let deadline = Instant::now() + SHUTDOWN_GRACE.min(self.timeout);
        while let Ok(Some(joined)) =
            tokio::time::timeout_at(deadline, self.pushes.join_next()).await
        {
            reap(joined, metrics);
        }
        self.pushes.shutdown().await;
    }
}

/// Counts and logs one finished push.
fn reap(
    joined: Result<(String, Result<(), String>), tokio::task::JoinError>,
    metrics: &NotifyMetrics,
) {
    let (url, outcome) = match joined {
        Ok(done) => done,
        Err(error) => {
            if !error.is_cancelled() {
                tracing::warn!(error = %error, "an Alertmanager push task failed; the next push repairs it");
            }
            return;
        }
    };
    let label = match &outcome {
        Ok(()) => "delivered",
        Err(_) => "retried",
    };
    metrics
        .notifications
        .with_label_values(&["alertmanager", "alertmanager", label])
        .inc();
    if let Err(reason) = outcome {
        tracing::warn!(alertmanager = %redact_url(&url), reason = %reason, "cannot push alerts to Alertmanager; the next push repairs it");
    }
}

fn push(
    client: &reqwest::Client,
    url: &str,
    body: String,
    timeout: Duration,
) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
    let request = client
        .post(format!("{}/api/v2/alerts", url.trim_end_matches('/')))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(timeout);
    async move {
        // The caller logs the URL, redacted; the causes say why it failed.
        let mut response = request.send().await.map_err(|error| {
            let error = error.without_url();
            let mut text = format!("request failed: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let (_, shown) = answer_text(&mut response, timeout, 300).await;
            Err(format!("answered {}: {shown}", status.as_u16()))
        }
    }
}
