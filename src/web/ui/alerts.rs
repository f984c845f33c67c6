//! `/alerts`: every pending and firing alert — since when, its value, its annotations, its runbook — and, for
//! a writer, a form to silence it (or to expire the silence that mutes it). `POST /ui/silence` creates the
//! silence through the notifier's silences, as `amtool` would.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use super::csrf;
use super::layout::{self, esc, when, Nav};
use super::UiState;
use dbwatch_notify::silence::{ApiMatcher, PostableSilence, Silences};
use dbwatch_rules::alerting::unix_millis;
use dbwatch_rules::{AlertState, AlertSummary};

/// The silence lengths the form offers.
const DURATIONS: [&str; 4] = ["1h", "4h", "12h", "24h"];
/// The longest silence the form accepts, whatever is posted.
const MAX_SILENCE: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Default, Deserialize)]
pub struct AlertsQuery {
    pub target: Option<String>,
}

/// What a row needs to offer the write forms.
pub struct Forms<'a> {
    pub token: String,
    pub silences: &'a Silences,
}

pub async fn page(
    State(state): State<UiState>,
    headers: HeaderMap,
    Query(query): Query<AlertsQuery>,
) -> Response {
    let now = SystemTime::now();
    let view = state.alerts.view();
    let user = csrf::user(&headers);
    let mut alerts: Vec<&AlertSummary> =
        view.alerts
            .iter()
            .filter(|alert| alert.state != AlertState::Inactive)
            .filter(|alert| {
                query.target.as_deref().is_none_or(|target| {
                    alert.labels.get("target").map(String::as_str) == Some(target)
                })
            })
            .collect();
    alerts.sort_by(|a, b| {
        let rank = |alert: &AlertSummary| u8::from(alert.state != AlertState::Firing);
        (rank(a), a.active_at, &a.alertname).cmp(&(rank(b), b.active_at, &b.alertname))
    });
    let forms = match &state.silences {
        Some(silences) if state.writers.may_write(user.as_deref()) => Some(Forms {
            token: state.csrf.token(user.as_deref()),
            silences,
        }),
        _ => None,
    };
    let mut html = String::with_capacity(16 * 1024);
    layout::open(&mut html, "Alerts", Nav::Alerts, Some(30));
    let firing = alerts
        .iter()
        .filter(|alert| alert.state == AlertState::Firing)
        .count();
    let _ = write!(
        html,
        "<h1>Alerts: <span class=\"firing\">{firing} firing</span>, <span class=\"pending\">{} pending</span>{}</h1>",
        alerts.len() - firing,
        query
            .target
            .as_deref()
            .map(|target| format!(" on {}", esc(target)))
            .unwrap_or_default()
    );
    if forms.is_none() && state.silences.is_some() {
        html.push_str(
            "<p class=\"muted\">Silencing needs a user listed under <code>write_users</code> in \
             <code>--web.config.file</code>.</p>",
        );
    }
    if alerts.is_empty() {
        html.push_str("<p>No alert is pending or firing.</p>");
    } else {
        alert_rows(&mut html, &alerts, forms.as_ref(), now);
    }
    layout::close(&mut html);
    layout::respond(StatusCode::OK, html)
}

/// The alert table; with `forms`, the silence and expire buttons.
pub fn alert_rows(
    html: &mut String,
    alerts: &[&AlertSummary],
    forms: Option<&Forms<'_>>,
    now: SystemTime,
) {
    html.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Alert</th><th>State</th><th>Since</th><th>Value</th>\
         <th>Labels</th><th>Annotations</th>",
    );
    if forms.is_some() {
        html.push_str("<th>Silence</th>");
    }
    html.push_str("</tr></thead><tbody>");
    let wall = unix_millis(now);
    for alert in alerts {
        let state = alert.state.as_str();
        let labels: Vec<String> = alert
            .labels
            .iter()
            .filter(|(name, _)| name.as_str() != "alertname")
            .map(|(name, value)| format!("{}=&quot;{}&quot;", esc(name), esc(value)))
            .collect();
        let mut annotations = String::new();
        for (name, text) in &alert.annotations {
            let shown = if name.ends_with("_url") {
                layout::link(text, text)
            } else {
                esc(text)
            };
            let _ = write!(
                annotations,
                "<div><span class=\"muted\">{}:</span> {shown}</div>",
                esc(name)
            );
        }
        let _ = write!(
            html,
            "<tr data-alert=\"{name}\"><td><b>{name}</b><br><span class=\"muted\">{group}</span></td>\
             <td><span class=\"badge {state}\">{state}</span></td><td>{since}</td><td class=\"n\">{value}</td>\
             <td><code>{labels}</code></td><td>{annotations}</td>",
            name = esc(&alert.alertname),
            group = esc(&alert.group),
            since = when(alert.fired_at.unwrap_or(alert.active_at), now),
            value = layout::number(alert.value),
            labels = labels.join("<br>"),
        );
        if let Some(forms) = forms {
            html.push_str("<td>");
            let mut all = alert.labels.clone();
            all.insert("alertname".to_owned(), alert.alertname.clone());
            match forms.silences.silenced_by(&all, wall) {
                Some(id) => {
                    let _ = write!(
                        html,
                        "<span class=\"muted\">silenced</span> <form class=\"inline\" method=\"post\" \
                         action=\"/ui/silences/{id}/expire\"><input type=\"hidden\" name=\"token\" \
                         value=\"{token}\"><button>Expire silence</button></form>",
                        id = esc(&id),
                        token = forms.token,
                    );
                }
                None => silence_form(html, &all, &forms.token),
            }
            html.push_str("</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table></div>");
}

fn silence_form(html: &mut String, labels: &BTreeMap<String, String>, token: &str) {
    let matchers = serde_json::to_string(labels).unwrap_or_default();
    let _ = write!(
        html,
        "<form method=\"post\" action=\"/ui/silence\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <input type=\"hidden\" name=\"labels\" value=\"{matchers}\"><select name=\"duration\" \
         aria-label=\"for how long\">",
        matchers = esc(&matchers),
    );
    for duration in DURATIONS {
        let _ = write!(html, "<option>{duration}</option>");
    }
    html.push_str(
        "</select> <input name=\"comment\" required placeholder=\"why\" aria-label=\"comment\"> \
         <button>Silence</button></form>",
    );
}

#[derive(Debug, Deserialize)]
pub struct SilenceForm {
    #[serde(default)]
    token: String,
    /// The alert's labels, as JSON: every one becomes an equality matcher.
    labels: String,
    duration: String,
    comment: String,
}

/// `POST /ui/silence`: a silence on exactly the alert's labels. The web server has already authorized the
/// write; the token and the origin are checked here.
pub async fn silence(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<SilenceForm>,
) -> Response {
    let user = match state.csrf.check(&headers, &form.token) {
        Ok(user) => user,
        Err(refused) => {
            return layout::message(StatusCode::FORBIDDEN, "Refused", refused.message())
        }
    };
    let Some(silences) = state.silences.clone() else {
        return layout::message(
            StatusCode::NOT_FOUND,
            "No silences",
            "dbwatch runs without a routing file, so it has no silences: silence in Alertmanager.",
        );
    };
    let labels: BTreeMap<String, String> = match serde_json::from_str(&form.labels) {
        Ok(labels) => labels,
        Err(error) => {
            return layout::message(
                StatusCode::BAD_REQUEST,
                "Bad form",
                &format!("labels: not a JSON object of strings: {error}"),
            )
        }
    };
    let duration = match humantime::parse_duration(form.duration.trim()) {
        Ok(duration) if duration > Duration::ZERO && duration <= MAX_SILENCE => duration,
        _ => {
            return layout::message(
                StatusCode::BAD_REQUEST,
                "Bad form",
                "duration: a duration up to 7 days, such as 4h",
            )
        }
    };
    let now = SystemTime::now();
    let time =
        |at: SystemTime| DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true);
    let posted = PostableSilence {
        id: None,
        matchers: labels
            .into_iter()
            .map(|(name, value)| ApiMatcher {
                name,
                value,
                is_regex: false,
                is_equal: true,
            })
            .collect(),
        starts_at: time(now),
        ends_at: time(now + duration),
        created_by: user.unwrap_or_else(|| "status page (no authentication)".to_owned()),
        comment: form.comment,
    };
    // Saving fsyncs: on the blocking pool.
    let saved =
        tokio::task::spawn_blocking(move || silences.upsert(posted, unix_millis(now))).await;
    match saved {
        Ok(Ok(_)) => Redirect::to("/alerts").into_response(),
        Ok(Err(error)) => {
            layout::message(StatusCode::BAD_REQUEST, "Not silenced", &error.to_string())
        }
        Err(_) => layout::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Not silenced",
            "the silence could not be saved",
        ),
    }
}
