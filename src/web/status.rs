//! The JSON the status UI (`web::ui`) shows as pages: `/api/v1/targets` and `/api/v1/alerts`, from the
//! snapshot store and the rules engine's latest view; nothing that touches a database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::store::{Snapshot, SnapshotStore};
use crate::supervise::Components;
use dbwatch_rules::{AlertState, AlertSummary, AlertsHandle};

/// What the status routes read.
#[derive(Clone)]
pub struct StatusState {
    pub store: Arc<SnapshotStore>,
    pub alerts: AlertsHandle,
    pub components: Components,
}

/// `/api/v1/targets` and `/api/v1/alerts`, to merge into the daemon's router.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/api/v1/targets", get(targets_api))
        .route("/api/v1/alerts", get(alerts_api))
        .with_state(state)
}

/// One target as the status page and its API show it.
struct TargetStatus {
    target: String,
    db: &'static str,
    labels: BTreeMap<String, String>,
    up: bool,
    last_poll: SystemTime,
    poll_duration: Option<f64>,
    last_success: Option<f64>,
    /// Collectors (views) that did not answer in the last poll.
    failing: Vec<String>,
    /// The bounded kind of the last poll's failure.
    error_kind: Option<&'static str>,
}

fn target_status(snapshot: &Snapshot) -> TargetStatus {
    let value = |name: &str| {
        snapshot
            .samples
            .iter()
            .find(|sample| sample.name() == name)
            .map(|sample| sample.value)
    };
    let failing = snapshot
        .samples
        .iter()
        .filter(|sample| sample.name() == "dbwatch_collector_success" && sample.value == 0.0)
        .filter_map(|sample| sample.label("collector").map(str::to_owned))
        .collect();
    TargetStatus {
        target: snapshot.target.clone(),
        db: snapshot.db,
        labels: snapshot.labels.clone(),
        up: snapshot.up,
        last_poll: snapshot.taken_at,
        poll_duration: value("dbwatch_poll_duration_seconds"),
        last_success: value("dbwatch_last_success_timestamp_seconds")
            .filter(|seconds| *seconds > 0.0),
        failing,
        error_kind: snapshot.error_kind,
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn unix_to_rfc3339(seconds: f64) -> Option<String> {
    let duration = std::time::Duration::try_from_secs_f64(seconds).ok()?;
    Some(rfc3339(UNIX_EPOCH + duration))
}

/// Active alerts first by state (firing before pending), then by name and labels.
fn active_alerts(alerts: &AlertsHandle) -> Vec<AlertSummary> {
    let mut active: Vec<AlertSummary> = alerts
        .view()
        .alerts
        .iter()
        .filter(|alert| matches!(alert.state, AlertState::Firing | AlertState::Pending))
        .cloned()
        .collect();
    active.sort_by(|a, b| {
        let rank = |alert: &AlertSummary| u8::from(alert.state != AlertState::Firing);
        (rank(a), &a.alertname, &a.labels).cmp(&(rank(b), &b.alertname, &b.labels))
    });
    active
}

async fn targets_api(State(state): State<StatusState>) -> Json<Value> {
    let targets: Vec<Value> = state
        .store
        .snapshots()
        .iter()
        .map(|snapshot| {
            let status = target_status(snapshot);
            json!({
                "target": status.target,
                "db": status.db,
                "labels": status.labels,
                "up": status.up,
                "lastPoll": rfc3339(status.last_poll),
                "pollDurationSeconds": status.poll_duration,
                "lastSuccess": status.last_success.and_then(unix_to_rfc3339),
                "failingCollectors": status.failing,
                "lastErrorKind": status.error_kind,
            })
        })
        .collect();
    let (polled, configured) = state.store.progress();
    Json(json!({
        "status": "success",
        "data": {"targets": targets, "polled": polled, "configured": configured},
    }))
}

/// The shape of Prometheus's `/api/v1/alerts`, so the same tools read both.
async fn alerts_api(State(state): State<StatusState>) -> Json<Value> {
    let alerts: Vec<Value> = active_alerts(&state.alerts)
        .iter()
        .map(|alert| {
            let mut labels = alert.labels.clone();
            labels.insert("alertname".to_owned(), alert.alertname.clone());
            json!({
                "labels": labels,
                "annotations": alert.annotations,
                "state": alert.state.as_str(),
                "activeAt": rfc3339(alert.active_at),
                "value": alert.value.to_string(),
            })
        })
        .collect();
    Json(json!({"status": "success", "data": {"alerts": alerts}}))
}
