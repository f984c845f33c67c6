//! `/targets/{name}`: one target — its state and last error kind, the poll duration over the last hour, how
//! many series it has, each collector's health and time, its alerts, and its latest events.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::alerts::alert_rows;
use super::events::event_rows;
use super::layout::{self, esc, when, Nav};
use super::sparkline::Spark;
use super::UiState;
use crate::store::Snapshot;
use dbwatch_events::{Direction, Page, Query};
use dbwatch_rules::{AlertState, AlertsView};

/// Events shown on a target's page; the rest are one link away.
const EVENTS_SHOWN: usize = 20;

pub async fn page(State(state): State<UiState>, Path(name): Path<String>) -> Response {
    let Some(snapshot) = state.store.get(&name) else {
        return layout::message(
            StatusCode::NOT_FOUND,
            "No such target",
            &format!("No target is named {name:?}."),
        );
    };
    let view = state.alerts.view();
    let log = state.events.clone();
    let query = Query {
        target: Some(name.clone()),
        limit: EVENTS_SHOWN,
        direction: Direction::Backward,
        ..Query::default()
    };
    let events = tokio::task::spawn_blocking(move || log.query(&query))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let html = render(&snapshot, &view, &events, SystemTime::now());
    layout::respond(StatusCode::OK, html)
}

pub fn render(snapshot: &Snapshot, view: &AlertsView, events: &Page, now: SystemTime) -> String {
    let mut html = String::with_capacity(16 * 1024);
    layout::open(&mut html, &snapshot.target, Nav::None, Some(30));
    let value = |name: &str| {
        snapshot
            .samples
            .iter()
            .find(|sample| sample.name() == name)
            .map(|sample| sample.value)
    };
    let (class, word) = if snapshot.up {
        ("up", "up")
    } else {
        ("down", "down")
    };
    let _ = write!(
        html,
        "<h1>{name} <span class=\"badge {class}\">{word}</span></h1><dl><dt>Database</dt><dd>{db}</dd>\
         <dt>Last error kind</dt><dd>{error}</dd><dt>Last poll</dt><dd>{poll}</dd><dt>Last success</dt>\
         <dd>{success}</dd><dt>Series</dt><dd>{series}</dd>",
        name = esc(&snapshot.target),
        db = snapshot.db,
        error = snapshot
            .error_kind
            .map_or_else(|| "<span class=\"muted\">none</span>".to_owned(), |kind| format!("<span class=\"down\">{kind}</span>")),
        poll = when(snapshot.taken_at, now),
        success = value("dbwatch_last_success_timestamp_seconds")
            .filter(|seconds| *seconds > 0.0)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .map_or_else(|| "never".to_owned(), |since| when(UNIX_EPOCH + since, now)),
        series = value("dbwatch_target_series").map_or(snapshot.samples.len(), |series| series as usize),
    );
    for (name, label) in &snapshot.labels {
        let _ = write!(html, "<dt>{}</dt><dd>{}</dd>", esc(name), esc(label));
    }
    let _ = write!(
        html,
        "<dt>Poll duration</dt><dd><div class=\"spark\"><span>{}</span>",
        value("dbwatch_poll_duration_seconds").map_or_else(
            || "–".to_owned(),
            |seconds| layout::value("x_seconds", seconds)
        )
    );
    let trends = &view.trends;
    let series: Vec<&[(i64, f64)]> = trends
        .series(&snapshot.target, "dbwatch_poll_duration_seconds")
        .map(|series| series.points.as_slice())
        .collect();
    if !series.is_empty() {
        Spark {
            series,
            from: trends.at.saturating_sub(trends.window_ms),
            to: trends.at,
            threshold: None,
            range: None,
            title: "poll duration, last hour",
        }
        .svg(&mut html);
    }
    html.push_str("</div></dd></dl>");

    html.push_str(
        "<h2>Collectors</h2><div class=\"scroll\"><table><thead><tr><th>Collector</th><th>Health</th>\
         <th>Duration</th></tr></thead><tbody>",
    );
    let mut collectors: Vec<(&str, f64, Option<f64>)> = snapshot
        .samples
        .iter()
        .filter(|sample| sample.name() == "dbwatch_collector_success")
        .filter_map(|sample| {
            let collector = sample.label("collector")?;
            let duration = snapshot
                .samples
                .iter()
                .find(|other| {
                    other.name() == "dbwatch_collector_duration_seconds"
                        && other.label("collector") == Some(collector)
                })
                .map(|other| other.value);
            Some((collector, sample.value, duration))
        })
        .collect();
    // Failing first, then by name.
    collectors.sort_by(|a, b| (a.1 == 1.0, a.0).cmp(&(b.1 == 1.0, b.0)));
    if collectors.is_empty() {
        html.push_str(
            "<tr><td colspan=\"3\" class=\"muted\">no collector has reported yet</td></tr>",
        );
    }
    for (collector, success, duration) in collectors {
        let (class, word) = if success == 1.0 {
            ("up", "ok")
        } else {
            ("down", "failing")
        };
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td class=\"{class}\">{word}</td><td class=\"n\">{}</td></tr>",
            esc(collector),
            duration.map_or_else(|| "–".to_owned(), |seconds| layout::value("x_seconds", seconds)),
        );
    }
    html.push_str("</tbody></table></div>");

    let alerts: Vec<_> = view
        .alerts
        .iter()
        .filter(|alert| alert.state != AlertState::Inactive)
        .filter(|alert| alert.labels.get("target") == Some(&snapshot.target))
        .collect();
    let _ = write!(html, "<h2>Alerts ({})</h2>", alerts.len());
    if alerts.is_empty() {
        html.push_str("<p class=\"muted\">No alert is pending or firing on this target.</p>");
    } else {
        alert_rows(&mut html, &alerts, None, now);
    }
    let _ = write!(
        html,
        "<h2>Latest events</h2><p><a href=\"/events?target={}\">All events of this target</a></p>",
        esc(&super::overview::percent_encode(&snapshot.target))
    );
    event_rows(&mut html, &events.events, now);
    layout::close(&mut html);
    html
}
