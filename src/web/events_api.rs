//! `GET /api/v1/events`: the event history as JSON, in the envelope of Prometheus's API.
//!
//! | Parameter | Meaning |
//! |---|---|
//! | `since`, `until` | RFC 3339 or Unix seconds, inclusive |
//! | `kind` | `alert`, `notification`, `silence`, `reload`, `target`; several separated by commas |
//! | `alertname`, `target` | events about that alert or target |
//! | `limit` | events per page, 1 to 1000 (100 when absent) |
//! | `direction` | `backward` (newest first, the default) or `forward` (oldest first) |
//! | `cursor` | the `next` of the previous page |
//!
//! An answer holds at most `limit` events and reads at most 16 MiB of history; `next` says where to go on.

use std::collections::HashMap;

use axum::extract::{Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use dbwatch_events::{Direction, EventLog, Kind, Query};

pub fn router(log: EventLog) -> Router {
    Router::new()
        .route("/api/v1/events", get(events))
        .with_state(log)
}

fn bad(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errorType": "bad_data", "error": message})),
    )
        .into_response()
}

/// RFC 3339 or (fractional) Unix seconds, as Prometheus's API takes times; Unix milliseconds.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds.abs() < 1e13).then_some((seconds * 1000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.timestamp_millis())
}

/// The query a request's parameters ask for, or what is wrong with them.
pub fn parse_query(params: &HashMap<String, String>) -> Result<Query, String> {
    let mut query = Query::default();
    for (name, value) in params {
        match name.as_str() {
            "since" | "until" => {
                let at = parse_time(value).ok_or_else(|| {
                    format!("{name}: {value:?} is neither RFC 3339 nor Unix seconds")
                })?;
                if name == "since" {
                    query.since = Some(at);
                } else {
                    query.until = Some(at);
                }
            }
            "kind" => {
                for kind in value
                    .split(',')
                    .map(str::trim)
                    .filter(|kind| !kind.is_empty())
                {
                    let parsed = Kind::parse(kind).ok_or_else(|| {
                        format!(
                            "kind: {kind:?} is not one of {}",
                            Kind::ALL.map(Kind::as_str).join(", ")
                        )
                    })?;
                    query.kinds.push(parsed);
                }
            }
            "alertname" => query.alertname = Some(value.clone()),
            "target" => query.target = Some(value.clone()),
            "limit" => {
                query.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=dbwatch_events::query::MAX_LIMIT).contains(limit))
                    .ok_or_else(|| format!("limit: {value:?} is not a number from 1 to 1000"))?;
            }
            "cursor" => {
                query.cursor = Some(
                    value
                        .parse()
                        .map_err(|_| format!("cursor: {value:?} is not a cursor this API gave"))?,
                );
            }
            "direction" => {
                query.direction = match value.as_str() {
                    "backward" => Direction::Backward,
                    "forward" => Direction::Forward,
                    _ => {
                        return Err(format!(
                            "direction: {value:?} is neither backward nor forward"
                        ))
                    }
                };
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(query)
}

async fn events(
    State(log): State<EventLog>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    let query = match parse_query(&params) {
        Ok(query) => query,
        Err(message) => return bad(message),
    };
    // Reads files: on the blocking pool.
    let read = tokio::task::spawn_blocking(move || log.query(&query)).await;
    let page = match read {
        Ok(Ok(page)) => page,
        Ok(Err(error)) => {
            tracing::error!(error = %error, "cannot read the event history");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"status": "error", "errorType": "internal", "error": "the event history cannot be read"})),
            )
                .into_response();
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|event| {
            let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
            if let Some(object) = value.as_object_mut() {
                let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(event.at)
                    .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                object.insert("time".to_owned(), json!(time));
            }
            value
        })
        .collect();
    Json(json!({
        "status": "success",
        "data": {"events": events, "next": page.next.map(|next| next.to_string())},
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn parameters_parse_and_bad_ones_are_named() {
        let query = parse_query(&params(&[
            ("since", "2026-12-03T10:00:00Z"),
            ("until", "1796292000.5"),
            ("kind", "alert,notification"),
            ("limit", "10"),
            ("direction", "forward"),
            ("cursor", "42"),
        ]))
        .expect("valid");
        assert_eq!(query.since, Some(1_796_292_000_000));
        assert_eq!(query.until, Some(1_796_292_000_500));
        assert_eq!(query.kinds, [Kind::Alert, Kind::Notification]);
        assert_eq!((query.limit, query.cursor), (10, Some(42)));
        assert_eq!(query.direction, Direction::Forward);
        for (pairs, wanted) in [
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "5000")], "limit"),
            (vec![("kind", "alerts")], "kind: \"alerts\""),
            (vec![("since", "yesterday")], "since"),
            (vec![("since", "1e300")], "since"),
            (vec![("cursor", "-1")], "cursor"),
            (vec![("colour", "red")], "unknown parameter \"colour\""),
        ] {
            let error = parse_query(&params(&pairs)).expect_err("invalid");
            assert!(error.starts_with(wanted), "{error}");
        }
    }
}
