//! `/`: the fleet at a glance. One row per target: up or down, and each fleet signal's latest value (the worst
//! of its series: the slowest, the fullest, the most behind) with a sparkline of the last hour from the rules
//! engine's history and the shipped alert's threshold dashed across it; the active alerts on top, the
//! supervised components below.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::layout::{self, esc, when, Nav};
use super::sparkline::{Spark, MAX_SERIES};
use super::thresholds::Thresholds;
use super::UiState;
use crate::store::Snapshot;
use crate::supervise::ComponentStatus;
use dbwatch_rules::{AlertState, AlertsView, Trends};

/// Which way is worse for a signal, to pick the value shown when a target has several series of it.
#[derive(Debug, Clone, Copy)]
enum Worst {
    Highest,
    Lowest,
}

struct Signal {
    title: &'static str,
    /// The metric names that carry it (the buffer hit ratio has one per engine).
    names: &'static [&'static str],
    worst: Worst,
    /// A fixed scale (ratios).
    range: Option<(f64, f64)>,
}

const SIGNALS: &[Signal] = &[
    Signal {
        title: "Query latency",
        names: &["db_query_latency_avg_seconds"],
        worst: Worst::Highest,
        range: None,
    },
    Signal {
        title: "Connections used",
        names: &["db_connections_utilization_ratio"],
        worst: Worst::Highest,
        range: Some((0.0, 1.0)),
    },
    Signal {
        title: "Replication lag",
        names: &["db_replication_lag_seconds"],
        worst: Worst::Highest,
        range: None,
    },
    Signal {
        title: "Buffer hit ratio",
        names: &[
            "pg_database_buffer_hit_ratio",
            "mysql_innodb_buffer_pool_hit_ratio",
        ],
        worst: Worst::Lowest,
        range: Some((0.0, 1.0)),
    },
];

pub async fn page(State(state): State<UiState>) -> Response {
    let snapshots = state.store.snapshots();
    let view = state.alerts.view();
    let html = render(
        &snapshots,
        &view,
        &state.thresholds,
        &state.components.statuses(),
        state.store.progress(),
        SystemTime::now(),
    );
    layout::respond(StatusCode::OK, html)
}

/// The whole page; pure, for the benchmark and the tests.
pub fn render(
    snapshots: &[Arc<Snapshot>],
    view: &AlertsView,
    thresholds: &Thresholds,
    components: &[ComponentStatus],
    (polled, configured): (usize, usize),
    now: SystemTime,
) -> String {
    let mut html = String::with_capacity(4096 + snapshots.len() * 4096);
    layout::open(&mut html, "Fleet", Nav::Fleet, Some(30));
    let up = snapshots.iter().filter(|snapshot| snapshot.up).count();
    let firing = count(view, AlertState::Firing, None);
    let pending = count(view, AlertState::Pending, None);
    let _ = write!(
        html,
        "<h1>Fleet</h1><div class=\"summary\"><div><b class=\"{up_class}\">{up}</b> of {total} targets up</div>\
         <div><a href=\"/alerts\"><b class=\"firing\">{firing}</b> firing, <b class=\"pending\">{pending}</b> \
         pending</a></div><div class=\"muted\">{polled} of {configured} targets polled</div></div>",
        up_class = if up == snapshots.len() { "up" } else { "down" },
        total = snapshots.len(),
    );
    let mut active: Vec<&dbwatch_rules::AlertSummary> = view
        .alerts
        .iter()
        .filter(|alert| alert.state != AlertState::Inactive)
        .collect();
    if !active.is_empty() {
        active.sort_by(|a, b| {
            let rank =
                |alert: &dbwatch_rules::AlertSummary| u8::from(alert.state != AlertState::Firing);
            (rank(a), a.active_at, &a.alertname).cmp(&(rank(b), b.active_at, &b.alertname))
        });
        html.push_str(
            "<h2 id=\"alerts\">Active alerts</h2><div class=\"scroll\"><table><thead><tr><th>Alert</th>\
             <th>State</th><th>Since</th><th>Target</th><th>Summary</th></tr></thead><tbody>",
        );
        for alert in &active {
            let state = alert.state.as_str();
            let target = alert.labels.get("target").map(String::as_str).unwrap_or("");
            let _ = write!(
                html,
                "<tr data-alert=\"{name}\"><td><a href=\"/alerts\"><b>{name}</b></a></td><td><span class=\"badge \
                 {state}\">{state}</span></td><td>{since}</td><td>{target}</td><td>{summary}</td></tr>",
                name = esc(&alert.alertname),
                since = when(alert.fired_at.unwrap_or(alert.active_at), now),
                target = esc(target),
                summary = esc(alert.annotations.get("summary").map_or("", String::as_str)),
            );
        }
        html.push_str("</tbody></table></div>");
    }
    html.push_str(
        "<h2 id=\"targets\">Targets</h2><div class=\"scroll\"><table><thead><tr><th>Target</th><th>Up</th>",
    );
    for signal in SIGNALS {
        let _ = write!(html, "<th>{}</th>", signal.title);
    }
    html.push_str("<th>Replication</th><th>Alerts</th></tr></thead><tbody>");
    let window_to = view.trends.at;
    let window_from = window_to.saturating_sub(view.trends.window_ms);
    for snapshot in snapshots {
        row(
            &mut html,
            snapshot,
            view,
            thresholds,
            (window_from, window_to),
        );
    }
    html.push_str("</tbody></table></div>");
    let _ = write!(
        html,
        "<p class=\"legend\">Sparklines: the last hour from the rules engine's history{}; the dashed red line \
         is the threshold of the alert on that signal. The value is the latest poll's, the worst of the \
         target's series.</p>",
        if view.trends.by_target.is_empty() {
            " (none yet: the history fills from the first evaluation)"
        } else {
            ""
        }
    );
    components_section(&mut html, components, now);
    html.push_str(
        "<p class=\"legend\">JSON: <a href=\"/api/v1/targets\">/api/v1/targets</a> \
         <a href=\"/api/v1/alerts\">/api/v1/alerts</a> <a href=\"/api/v1/events\">/api/v1/events</a> \
         <a href=\"/-/ready\">/-/ready</a></p>",
    );
    layout::close(&mut html);
    html
}

fn count(view: &AlertsView, state: AlertState, target: Option<&str>) -> usize {
    view.alerts
        .iter()
        .filter(|alert| alert.state == state)
        .filter(|alert| {
            target
                .is_none_or(|target| alert.labels.get("target").map(String::as_str) == Some(target))
        })
        .count()
}

/// The worst latest value of `names` in the snapshot.
fn latest(snapshot: &Snapshot, names: &[&str], worst: Worst) -> Option<f64> {
    let values = snapshot
        .samples
        .iter()
        .filter(|sample| names.contains(&sample.name()))
        .map(|sample| sample.value);
    let mut known = values.clone().filter(|value| !value.is_nan()).peekable();
    if known.peek().is_none() {
        // Series that are all NaN read "unknown"; no series reads "–".
        return values.clone().next();
    }
    Some(match worst {
        Worst::Highest => known.fold(f64::NEG_INFINITY, f64::max),
        Worst::Lowest => known.fold(f64::INFINITY, f64::min),
    })
}

fn row(
    html: &mut String,
    snapshot: &Snapshot,
    view: &AlertsView,
    thresholds: &Thresholds,
    window: (i64, i64),
) {
    let name = esc(&snapshot.target);
    let (class, word) = match (snapshot.up, snapshot.error_kind) {
        (true, _) => ("up", "up".to_owned()),
        (false, Some(kind)) => ("down", format!("down: {kind}")),
        (false, None) => ("down", "down".to_owned()),
    };
    let labels: Vec<String> = snapshot
        .labels
        .iter()
        .map(|(name, value)| format!("{}={}", esc(name), esc(value)))
        .collect();
    let _ = write!(
        html,
        "<tr data-target=\"{name}\"><td><a href=\"/targets/{href}\"><b>{name}</b></a><br>\
         <span class=\"muted\">{db}</span>{labels}</td><td><span class=\"badge {class}\">{word}</span><br>",
        href = esc(&percent_encode(&snapshot.target)),
        db = snapshot.db,
        labels = if labels.is_empty() {
            String::new()
        } else {
            format!(" <code>{}</code>", labels.join(", "))
        },
    );
    spark_cell(
        html,
        &view.trends,
        &snapshot.target,
        &["db_up"],
        None,
        Some((0.0, 1.0)),
        window,
        "db_up, last hour",
    );
    html.push_str("</td>");
    for signal in SIGNALS {
        let current = latest(snapshot, signal.names, signal.worst);
        let threshold = signal.names.iter().find_map(|name| thresholds.get(name));
        let _ = write!(
            html,
            "<td><div class=\"spark\"><span>{}</span>",
            current.map_or_else(
                || "–".to_owned(),
                |value| layout::value(signal.names[0], value)
            )
        );
        let title = match threshold {
            Some(threshold) => format!(
                "{}, last hour; {} fires at {} {}",
                signal.title,
                esc(&threshold.alertname),
                esc(threshold.op),
                layout::value(signal.names[0], threshold.value)
            ),
            None => format!("{}, last hour", signal.title),
        };
        spark_cell(
            html,
            &view.trends,
            &snapshot.target,
            signal.names,
            threshold.map(|threshold| threshold.value),
            signal.range,
            window,
            &title,
        );
        html.push_str("</div></td>");
    }
    let health: Vec<f64> = snapshot
        .samples
        .iter()
        .filter(|sample| sample.name() == "db_replication_healthy")
        .map(|sample| sample.value)
        .collect();
    let replication = if health.is_empty() {
        "<span class=\"muted\">–</span>".to_owned()
    } else {
        let unhealthy = health.iter().filter(|value| **value != 1.0).count();
        if unhealthy == 0 {
            format!("<span class=\"up\">healthy</span> ({})", health.len())
        } else {
            format!(
                "<span class=\"down\">{unhealthy} unhealthy</span> of {}",
                health.len()
            )
        }
    };
    let firing = count(view, AlertState::Firing, Some(&snapshot.target));
    let pending = count(view, AlertState::Pending, Some(&snapshot.target));
    let alerts = match (firing, pending) {
        (0, 0) => "<span class=\"muted\">none</span>".to_owned(),
        (firing, pending) => format!(
            "<a href=\"/alerts?target={}\"><span class=\"firing\">{firing}</span> / \
             <span class=\"pending\">{pending}</span></a>",
            esc(&percent_encode(&snapshot.target))
        ),
    };
    let _ = write!(html, "<td>{replication}</td><td>{alerts}</td></tr>");
}

#[allow(clippy::too_many_arguments)]
fn spark_cell(
    html: &mut String,
    trends: &Trends,
    target: &str,
    names: &[&str],
    threshold: Option<f64>,
    range: Option<(f64, f64)>,
    (from, to): (i64, i64),
    title: &str,
) {
    let series: Vec<&[(i64, f64)]> = names
        .iter()
        .flat_map(|name| trends.series(target, name))
        .map(|series| series.points.as_slice())
        .take(MAX_SERIES)
        .collect();
    if series.is_empty() {
        return;
    }
    Spark {
        series,
        from,
        to,
        threshold,
        range,
        title,
    }
    .svg(html);
}

/// A target name as one URL path segment.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The supervised components (rules engine, notifier): up or down, since when, restarts and why the last one
/// ended, so that a component that keeps dying is seen here and not only in the log.
fn components_section(html: &mut String, statuses: &[ComponentStatus], now: SystemTime) {
    if statuses.is_empty() {
        return;
    }
    let down = statuses.iter().filter(|status| !status.up).count();
    let _ = write!(
        html,
        "<h2 id=\"components\">Components: {up} of {count} running</h2><div class=\"scroll\"><table><thead><tr>\
         <th>Component</th><th>State</th><th>Since</th><th>Restarts</th><th>Last failure</th></tr></thead><tbody>",
        up = statuses.len() - down,
        count = statuses.len(),
    );
    for status in statuses {
        let (class, word) = if status.up {
            ("up", "running")
        } else {
            ("down", "down")
        };
        let _ = write!(
            html,
            "<tr data-component=\"{name}\"><td><b>{name}</b></td><td class=\"{class}\">{word}</td>\
             <td>{since}</td><td class=\"n\">{restarts}</td><td>{failure}</td></tr>",
            name = esc(status.name),
            since = when(status.since, now),
            restarts = status.restarts,
            failure = esc(status.last_failure.as_deref().unwrap_or("–")),
        );
    }
    html.push_str("</tbody></table></div>");
}
