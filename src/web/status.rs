//! The status page at `/` and the JSON behind it (`/api/v1/targets`, `/api/v1/alerts`): what an operator
//! checks first. Server-rendered HTML from the snapshot store and the rules engine's latest view; no script, no
//! build step, nothing that touches a database.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::store::{Snapshot, SnapshotStore};
use crate::supervise::Components;
use dbwatch_notify::html;
use dbwatch_rules::{AlertState, AlertSummary, AlertsHandle};

/// What the status routes read.
#[derive(Clone)]
pub struct StatusState {
    pub store: Arc<SnapshotStore>,
    pub alerts: AlertsHandle,
    pub components: Components,
}

/// `/`, `/api/v1/targets` and `/api/v1/alerts`, to merge into the daemon's router.
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/", get(page))
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

fn ago(time: SystemTime, now: SystemTime) -> String {
    match now.duration_since(time) {
        Ok(elapsed) if elapsed.as_secs() > 0 => format!(
            "{} ago",
            humantime::format_duration(std::time::Duration::from_secs(elapsed.as_secs()))
        ),
        _ => "just now".to_owned(),
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
    table{border-collapse:collapse;margin-bottom:1.5em}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;\
    text-align:left;vertical-align:top}th{background:#f4f4f4}.up{color:#1a7f37;font-weight:600}\
    .down{color:#cf222e;font-weight:600}.firing{color:#cf222e;font-weight:600}.pending{color:#9a6700;\
    font-weight:600}code{font-size:90%}nav a{margin-right:1em}";

async fn page(State(state): State<StatusState>) -> Response {
    let now = SystemTime::now();
    let targets: Vec<TargetStatus> = state
        .store
        .snapshots()
        .iter()
        .map(|s| target_status(s))
        .collect();
    let alerts = active_alerts(&state.alerts);
    let (polled, configured) = state.store.progress();
    let up = targets.iter().filter(|target| target.up).count();

    let mut html = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dbwatch</title>\
         <meta http-equiv=\"refresh\" content=\"15\"><style>{STYLE}</style></head><body>\
         <h1>dbwatch</h1><nav><a href=\"/metrics\">/metrics</a><a href=\"/api/v1/targets\">/api/v1/targets</a>\
         <a href=\"/api/v1/alerts\">/api/v1/alerts</a><a href=\"/-/ready\">/-/ready</a></nav>\
         <h2 id=\"targets\">Targets: {up} of {count} up, {polled} of {configured} polled</h2>\
         <table><thead><tr><th>Target</th><th>Database</th><th>State</th><th>Last poll</th><th>Duration</th>\
         <th>Last success</th><th>Failing collectors</th></tr></thead><tbody>",
        count = targets.len(),
    );
    for target in &targets {
        let (class, word) = match (target.up, target.error_kind) {
            (true, _) => ("up", "up".to_owned()),
            (false, Some(kind)) => ("down", format!("down ({kind})")),
            (false, None) => ("down", "down".to_owned()),
        };
        let labels: Vec<String> = target
            .labels
            .iter()
            .map(|(name, value)| format!("{}={}", html::escape(name), html::escape(value)))
            .collect();
        let _ = write!(
            html,
            "<tr data-target=\"{name}\"><td><b>{name}</b>{labels}</td><td>{db}</td><td class=\"{class}\">{word}</td>\
             <td title=\"{poll}\">{poll_ago}</td><td>{duration}</td><td>{success}</td><td>{failing}</td></tr>",
            name = html::escape(&target.target),
            labels = if labels.is_empty() {
                String::new()
            } else {
                format!("<br><code>{}</code>", labels.join(", "))
            },
            db = target.db,
            poll = rfc3339(target.last_poll),
            poll_ago = ago(target.last_poll, now),
            duration = target
                .poll_duration
                .map_or_else(|| "–".to_owned(), |seconds| format!("{:.0} ms", seconds * 1000.0)),
            success = target
                .last_success
                .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
                .map_or_else(|| "never".to_owned(), |since| ago(UNIX_EPOCH + since, now)),
            failing = html::escape(&target.failing.join(", ")),
        );
    }
    let firing = alerts
        .iter()
        .filter(|alert| alert.state == AlertState::Firing)
        .count();
    let _ = write!(
        html,
        "</tbody></table><h2 id=\"alerts\">Alerts: {firing} firing, {pending} pending</h2>",
        pending = alerts.len() - firing,
    );
    if alerts.is_empty() {
        html.push_str("<p>No alert is pending or firing.</p>");
    } else {
        html.push_str(
            "<table><thead><tr><th>Alert</th><th>State</th><th>Labels</th><th>Active since</th><th>Summary</th>\
             </tr></thead><tbody>",
        );
        for alert in &alerts {
            // The name has its own column.
            let labels: Vec<String> = alert
                .labels
                .iter()
                .filter(|(name, _)| name.as_str() != "alertname")
                .map(|(name, value)| format!("{}={}", html::escape(name), html::escape(value)))
                .collect();
            let state = alert.state.as_str();
            let _ = write!(
                html,
                "<tr data-alert=\"{name}\"><td><b>{name}</b></td><td class=\"{state}\">{state}</td>\
                 <td><code>{labels}</code></td><td title=\"{since}\">{ago}</td><td>{summary}</td></tr>",
                name = html::escape(&alert.alertname),
                labels = labels.join(", "),
                since = rfc3339(alert.active_at),
                ago = ago(alert.active_at, now),
                summary = html::escape(alert.annotations.get("summary").map_or("", String::as_str)),
            );
        }
        html.push_str("</tbody></table>");
    }
    components_section(&mut html, &state.components, now);
    html.push_str("</body></html>");
    Html(html).into_response()
}

/// The supervised components (rules engine, notifier): up or down, since when, restarts and why the last one
/// ended, so that a component that keeps dying is seen here and not only in the log.
fn components_section(html: &mut String, components: &Components, now: SystemTime) {
    let statuses = components.statuses();
    if statuses.is_empty() {
        return;
    }
    let down = statuses.iter().filter(|status| !status.up).count();
    let _ = write!(
        html,
        "<h2 id=\"components\">Components: {up} of {count} running</h2><table><thead><tr><th>Component</th>\
         <th>State</th><th>Since</th><th>Restarts</th><th>Last failure</th></tr></thead><tbody>",
        up = statuses.len() - down,
        count = statuses.len(),
    );
    for status in &statuses {
        let (class, word) = if status.up {
            ("up", "running")
        } else {
            ("down", "down")
        };
        let _ = write!(
            html,
            "<tr data-component=\"{name}\"><td><b>{name}</b></td><td class=\"{class}\">{word}</td>\
             <td title=\"{since}\">{ago}</td><td>{restarts}</td><td>{failure}</td></tr>",
            name = html::escape(status.name),
            since = rfc3339(status.since),
            ago = ago(status.since, now),
            restarts = status.restarts,
            failure = html::escape(status.last_failure.as_deref().unwrap_or("–")),
        );
    }
    html.push_str("</tbody></table>");
}
