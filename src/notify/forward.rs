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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::time::Instant;

use super::render::rfc3339;
use super::NotifyMetrics;
use crate::rules::alerting::unix_millis;
use crate::rules::{AlertState, AlertsView};

/// What was pushed: each alert's labels and whether it was firing.
type Signature = Vec<(BTreeMap<String, String>, bool)>;

pub struct Forwarder {
    urls: Vec<String>,
    resend: Duration,
    timeout: Duration,
    external_url: String,
    last: Option<(Instant, Signature)>,
    busy: Arc<AtomicBool>,
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
            busy: Arc::new(AtomicBool::new(false)),
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
        if self.urls.is_empty() || view.evaluated_at.is_none() || self.busy.load(Ordering::SeqCst) {
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
        let valid_until = wall + i64::try_from((self.resend * 4).as_millis()).unwrap_or(i64::MAX);
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
        let urls = self.urls.clone();
        let client = client.clone();
        let metrics = metrics.clone();
        let timeout = self.timeout;
        let busy = Arc::clone(&self.busy);
        busy.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            let pushes = urls
                .iter()
                .map(|url| push(&client, url, body.clone(), timeout));
            for (url, outcome) in urls.iter().zip(futures_join(pushes).await) {
                let label = match &outcome {
                    Ok(()) => "delivered",
                    Err(_) => "retried",
                };
                metrics
                    .notifications
                    .with_label_values(&["alertmanager", "alertmanager", label])
                    .inc();
                if let Err(reason) = outcome {
                    tracing::warn!(alertmanager = %url, reason = %reason, "cannot push alerts to Alertmanager; the next push repairs it");
                }
            }
            busy.store(false, Ordering::SeqCst);
        });
    }
}

/// Awaits every push concurrently, in order.
async fn futures_join<F: std::future::Future<Output = Result<(), String>> + Send + 'static>(
    pushes: impl Iterator<Item = F>,
) -> Vec<Result<(), String>> {
    let handles: Vec<_> = pushes.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(
            handle
                .await
                .unwrap_or_else(|error| Err(format!("push task failed: {error}"))),
        );
    }
    out
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
        let response = request
            .send()
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(format!(
                "answered {}: {}",
                status.as_u16(),
                text.chars().take(300).collect::<String>()
            ))
        }
    }
}
