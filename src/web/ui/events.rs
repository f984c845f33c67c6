//! `/events`: the event history, newest first, filtered by kind, alert name and target, a page at a time;
//! `/events?kind=notification` is every delivery attempt with its answer, per receiver and integration.

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::extract::{Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::layout::{self, esc, millis_to_time, when, Nav};
use super::overview::percent_encode;
use super::UiState;
use dbwatch_events::{Body, Direction, Event, Kind, Query};

/// Events per page.
const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    pub kind: Option<String>,
    pub alertname: Option<String>,
    pub target: Option<String>,
    pub cursor: Option<u64>,
}

pub async fn page(
    State(state): State<UiState>,
    UrlQuery(params): UrlQuery<EventsQuery>,
) -> Response {
    let nonempty = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let kind = nonempty(&params.kind).and_then(|kind| Kind::parse(&kind));
    let query = Query {
        kinds: kind.into_iter().collect(),
        alertname: nonempty(&params.alertname),
        target: nonempty(&params.target),
        cursor: params.cursor,
        limit: PAGE,
        direction: Direction::Backward,
        ..Query::default()
    };
    let log = state.events.clone();
    let read = {
        let query = query.clone();
        tokio::task::spawn_blocking(move || log.query(&query)).await
    };
    let now = SystemTime::now();
    let mut html = String::with_capacity(32 * 1024);
    let title = if kind == Some(Kind::Notification) {
        "Notifications"
    } else {
        "Events"
    };
    layout::open(&mut html, title, Nav::Events, None);
    let _ = write!(html, "<h1>{title}</h1><form class=\"filters\" method=\"get\" action=\"/events\"><select name=\"kind\" aria-label=\"kind\"><option value=\"\">every kind</option>");
    for option in Kind::ALL {
        let selected = if Some(option) == kind {
            " selected"
        } else {
            ""
        };
        let _ = write!(html, "<option{selected}>{}</option>", option.as_str());
    }
    let _ = write!(
        html,
        "</select><input name=\"alertname\" placeholder=\"alert name\" value=\"{}\" aria-label=\"alert name\">\
         <input name=\"target\" placeholder=\"target\" value=\"{}\" aria-label=\"target\"><button>Filter</button>\
         <a href=\"/events\">clear</a></form>",
        esc(query.alertname.as_deref().unwrap_or("")),
        esc(query.target.as_deref().unwrap_or("")),
    );
    match read {
        Ok(Ok(page)) => {
            event_rows(&mut html, &page.events, now);
            if let Some(next) = page.next {
                let mut link = format!("/events?cursor={next}");
                for (name, value) in [
                    ("kind", kind.map(|kind| kind.as_str().to_owned())),
                    ("alertname", query.alertname.clone()),
                    ("target", query.target.clone()),
                ] {
                    if let Some(value) = value {
                        let _ = write!(link, "&{name}={}", percent_encode(&value));
                    }
                }
                let _ = write!(html, "<p><a href=\"{}\">Older events</a></p>", esc(&link));
            }
        }
        Ok(Err(error)) => {
            let _ = write!(
                html,
                "<p class=\"down\">The event history cannot be read: {}</p>",
                esc(&error.to_string())
            );
        }
        Err(_) => html.push_str("<p class=\"down\">The event history cannot be read.</p>"),
    }
    layout::close(&mut html);
    layout::respond(StatusCode::OK, html)
}

/// The events table.
pub fn event_rows(html: &mut String, events: &[Event], now: SystemTime) {
    html.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>When</th><th>Kind</th><th>What</th><th>Details</th></tr>\
         </thead><tbody>",
    );
    if events.is_empty() {
        html.push_str("<tr><td colspan=\"4\" class=\"muted\">no events</td></tr>");
    }
    for event in events {
        let _ = write!(
            html,
            "<tr data-seq=\"{seq}\" data-kind=\"{kind}\"><td>{at}</td><td>{kind}</td>",
            seq = event.seq,
            kind = event.body.kind().as_str(),
            at = when(millis_to_time(event.at), now),
        );
        describe(html, &event.body);
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table></div>");
}

fn describe(html: &mut String, body: &Body) {
    match body {
        Body::Alert {
            alertname,
            from,
            to,
            labels,
            value,
            annotations,
            ..
        } => {
            let shown = if to == "inactive" {
                "resolved"
            } else {
                to.as_str()
            };
            let labels: Vec<String> = labels
                .iter()
                .filter(|(name, _)| name.as_str() != "alertname")
                .map(|(name, value)| format!("{}=&quot;{}&quot;", esc(name), esc(value)))
                .collect();
            let _ = write!(
                html,
                "<td><b>{}</b> {} → <span class=\"{}\">{}</span></td><td><code>{}</code>{}{}</td>",
                esc(alertname),
                esc(from),
                esc(if to == "inactive" { "delivered" } else { to }),
                esc(shown),
                labels.join(", "),
                value
                    .map(|value| format!("<br>value {}", layout::number(value)))
                    .unwrap_or_default(),
                annotations
                    .get("summary")
                    .map(|summary| format!("<br>{}", esc(summary)))
                    .unwrap_or_default(),
            );
        }
        Body::Notification {
            receiver,
            integration,
            index,
            alertnames,
            attempt,
            outcome,
            answer,
            retry_in_ms,
            ..
        } => {
            let _ = write!(
                html,
                "<td><b>{}</b> {}#{} attempt {attempt}: <span class=\"{class}\">{word}</span></td><td>{}{}{}</td>",
                esc(receiver),
                esc(integration),
                index,
                alertnames.iter().map(|name| esc(name)).collect::<Vec<_>>().join(", "),
                answer
                    .as_deref()
                    .map(|answer| format!("<br>answer: {}", esc(answer)))
                    .unwrap_or_default(),
                retry_in_ms
                    .map(|ms| format!("<br>next attempt in {}", humantime::format_duration(std::time::Duration::from_millis(ms))))
                    .unwrap_or_default(),
                class = outcome.as_str(),
                word = outcome.as_str().replace('_', " "),
            );
        }
        Body::Silence {
            action,
            id,
            by,
            matchers,
            comment,
            ..
        } => {
            let _ = write!(
                html,
                "<td>silence <span class=\"{action}\">{action}</span> by {}</td><td><code>{}</code>{}<br>\
                 <span class=\"muted\">{}</span></td>",
                esc(by.as_deref().unwrap_or("(unknown)")),
                matchers.iter().map(|matcher| esc(matcher)).collect::<Vec<_>>().join(", "),
                comment
                    .as_deref()
                    .map(|comment| format!("<br>{}", esc(comment)))
                    .unwrap_or_default(),
                esc(id),
                action = action.as_str(),
            );
        }
        Body::Reload {
            success,
            trigger,
            error,
        } => {
            let (class, word) = if *success {
                ("up", "reloaded")
            } else {
                ("down", "reload refused")
            };
            let _ = write!(
                html,
                "<td><span class=\"{class}\">{word}</span> ({})</td><td>{}</td>",
                esc(trigger),
                esc(error.as_deref().unwrap_or("")),
            );
        }
        Body::Target {
            target,
            db,
            up,
            error_kind,
        } => {
            let (class, word) = if *up { ("up", "up") } else { ("down", "down") };
            let _ = write!(
                html,
                "<td><a href=\"/targets/{}\"><b>{}</b></a> <span class=\"{class}\">{word}</span></td><td>{}{}</td>",
                esc(&percent_encode(target)),
                esc(target),
                esc(db),
                error_kind
                    .as_deref()
                    .map(|kind| format!(": {}", esc(kind)))
                    .unwrap_or_default(),
            );
        }
    }
}
