//! `/silences`: the notifier's silences, active and pending first, with who made them and why; a writer can
//! expire one (`POST /ui/silences/{id}/expire`).

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::csrf;
use super::layout::{self, esc, millis_to_time, when, Nav};
use super::UiState;
use dbwatch_rules::alerting::unix_millis;

pub async fn page(State(state): State<UiState>, headers: HeaderMap) -> Response {
    let now = SystemTime::now();
    let wall = unix_millis(now);
    let mut html = String::with_capacity(8 * 1024);
    layout::open(&mut html, "Silences", Nav::Silences, Some(60));
    let Some(silences) = &state.silences else {
        html.push_str(
            "<h1>Silences</h1><p>dbwatch runs without a routing file (<code>alerting.config_file</code>), so it \
             sends no notifications and has no silences of its own.</p>",
        );
        layout::close(&mut html);
        return layout::respond(StatusCode::OK, html);
    };
    let user = csrf::user(&headers);
    let token = state
        .writers
        .may_write(user.as_deref())
        .then(|| state.csrf.token(user.as_deref()));
    let mut list = silences.list();
    let rank = |state: &str| match state {
        "active" => 0,
        "pending" => 1,
        _ => 2,
    };
    list.sort_by(|a, b| {
        (rank(a.state(wall)), std::cmp::Reverse(a.updated_at))
            .cmp(&(rank(b.state(wall)), std::cmp::Reverse(b.updated_at)))
    });
    let active = list
        .iter()
        .filter(|silence| silence.state(wall) == "active")
        .count();
    let _ = write!(
        html,
        "<h1>Silences: {active} active, {} in all</h1>",
        list.len()
    );
    html.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>State</th><th>Matchers</th><th>Starts</th><th>Ends</th>\
         <th>Created by</th><th>Comment</th>",
    );
    if token.is_some() {
        html.push_str("<th></th>");
    }
    html.push_str("</tr></thead><tbody>");
    for silence in &list {
        let state = silence.state(wall);
        let matchers: Vec<String> = silence
            .matchers
            .iter()
            .map(|matcher| esc(&matcher.to_string()))
            .collect();
        let class = if state == "active" { "up" } else { state };
        let _ = write!(
            html,
            "<tr data-silence=\"{id}\"><td><span class=\"{class}\">{state}</span></td><td><code>{matchers}</code></td>\
             <td>{starts}</td><td>{ends}</td><td>{by}</td><td>{comment}</td>",
            id = esc(&silence.id),
            matchers = matchers.join("<br>"),
            starts = when(millis_to_time(silence.starts_at), now),
            ends = if silence.ends_at > wall {
                format!("in {}", humantime::format_duration(std::time::Duration::from_secs(
                    u64::try_from((silence.ends_at - wall) / 1000).unwrap_or(0)
                )))
            } else {
                when(millis_to_time(silence.ends_at), now)
            },
            by = esc(&silence.created_by),
            comment = esc(&silence.comment),
        );
        if let Some(token) = &token {
            html.push_str("<td>");
            if state != "expired" {
                let _ = write!(
                    html,
                    "<form class=\"inline\" method=\"post\" action=\"/ui/silences/{id}/expire\">\
                     <input type=\"hidden\" name=\"token\" value=\"{token}\"><button>Expire</button></form>",
                    id = esc(&super::overview::percent_encode(&silence.id)),
                );
            }
            html.push_str("</td>");
        }
        html.push_str("</tr>");
    }
    if list.is_empty() {
        html.push_str("<tr><td colspan=\"6\" class=\"muted\">no silences</td></tr>");
    }
    html.push_str("</tbody></table></div>");
    layout::close(&mut html);
    layout::respond(StatusCode::OK, html)
}

#[derive(Debug, Deserialize)]
pub struct ExpireForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/silences/{id}/expire`, from the alerts and silences pages.
pub async fn expire(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ExpireForm>,
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
            "dbwatch has no silences here.",
        );
    };
    let by = user.unwrap_or_else(|| "status page (no authentication)".to_owned());
    let now = unix_millis(SystemTime::now());
    let expired =
        tokio::task::spawn_blocking(move || silences.expire_by(&id, now, Some(&by))).await;
    match expired {
        Ok(Ok(())) => Redirect::to("/silences").into_response(),
        Ok(Err(error)) => {
            layout::message(StatusCode::BAD_REQUEST, "Not expired", &error.to_string())
        }
        Err(_) => layout::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Not expired",
            "the silence could not be saved",
        ),
    }
}
