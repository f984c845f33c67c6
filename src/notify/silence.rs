//! Silences with Alertmanager's API v2 shapes (`api/v2/openapi.yaml`): create or update, list, get and expire
//! at `/api/v2/silences` and `/api/v2/silence/{id}`, so `amtool silence add|query|expire` work against dbwatch.
//! They are persisted in the state folder (`silences.json`, written atomically) and mute matching firing alerts
//! the way inhibition does: a muted alert is neither notified nor resolved, and one that first fired under a
//! silence is notified at the first flush after the silence ends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::matcher::{MatchOp, Matcher};
use super::store::{self, StoreError};
use crate::rules::alerting::unix_millis;

pub const SILENCES_FILE: &str = "silences.json";
/// Expired silences are kept this long (Alertmanager's default `--data.retention`).
const RETENTION_MS: i64 = 120 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl ApiMatcher {
    fn compile(&self) -> Result<Matcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(&self.name, op, &self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<ApiMatcher>,
    /// Unix milliseconds.
    pub starts_at: i64,
    pub ends_at: i64,
    pub updated_at: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn state(&self, now: i64) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }
}

/// The silences and their compiled matchers, shared by the notifier and the API.
#[derive(Debug)]
pub struct Silences {
    dir: PathBuf,
    inner: RwLock<Vec<(Silence, Vec<Matcher>)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("silence {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Silences {
    /// The silences saved in `dir`; a saved silence whose matchers no longer compile is dropped with a warning.
    /// A `silences.json` that is not valid JSON of the expected shape is moved aside (`silences.json.corrupt-*`,
    /// logged and counted by [`crate::storage`]) and dbwatch starts with no silences: an alert that pages when
    /// it should have been muted is recoverable, a daemon that does not start pages nobody.
    pub fn load(dir: &Path) -> Result<Silences, StoreError> {
        let saved: Vec<Silence> = store::read_json(dir, SILENCES_FILE)?.unwrap_or_default();
        let mut compiled = Vec::with_capacity(saved.len());
        for silence in saved {
            match silence
                .matchers
                .iter()
                .map(ApiMatcher::compile)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(matchers) => compiled.push((silence, matchers)),
                Err(error) => {
                    tracing::warn!(id = %silence.id, error = %error, "saved silence dropped")
                }
            }
        }
        Ok(Silences {
            dir: dir.to_owned(),
            inner: RwLock::new(compiled),
        })
    }

    /// The id of an active silence that matches `labels`.
    pub fn silenced_by(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        now: i64,
    ) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .iter()
            .find(|(silence, matchers)| {
                silence.state(now) == "active" && super::matcher::all_match(matchers, labels)
            })
            .map(|(silence, _)| silence.id.clone())
    }

    pub fn list(&self) -> Vec<Silence> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.iter().map(|(silence, _)| silence.clone()).collect()
    }

    /// Creates a silence, or replaces the one with `id`; returns its id.
    pub fn upsert(&self, posted: PostableSilence, now: i64) -> Result<String, SilenceError> {
        let invalid = |message: String| SilenceError::Invalid(message);
        if posted.matchers.is_empty() {
            return Err(invalid("a silence needs at least one matcher".into()));
        }
        let mut matchers = Vec::with_capacity(posted.matchers.len());
        for matcher in &posted.matchers {
            if matcher.name.is_empty() {
                return Err(invalid("a matcher needs a label name".into()));
            }
            matchers.push(matcher.compile().map_err(invalid)?);
        }
        if matchers
            .iter()
            .all(|matcher| matcher.matches(&Default::default()))
        {
            return Err(invalid(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        let starts_at = parse_time(&posted.starts_at, "startsAt")?;
        let ends_at = parse_time(&posted.ends_at, "endsAt")?;
        if ends_at <= starts_at {
            return Err(invalid("endsAt must be after startsAt".into()));
        }
        if ends_at <= now {
            return Err(invalid("endsAt is in the past".into()));
        }
        if posted.created_by.trim().is_empty() {
            return Err(invalid("createdBy must not be empty".into()));
        }
        if posted.comment.trim().is_empty() {
            return Err(invalid("comment must not be empty".into()));
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let id = match posted.id.filter(|id| !id.is_empty()) {
            Some(id) => {
                if !inner.iter().any(|(silence, _)| silence.id == id) {
                    return Err(SilenceError::NotFound(id));
                }
                id
            }
            None => new_id(),
        };
        let silence = Silence {
            id: id.clone(),
            matchers: posted.matchers,
            // A start in the past means now, as in Alertmanager.
            starts_at: starts_at.max(now),
            ends_at,
            updated_at: now,
            created_by: posted.created_by,
            comment: posted.comment,
        };
        inner.retain(|(existing, _)| existing.id != id);
        inner.push((silence, matchers));
        self.save(&mut inner, now)?;
        Ok(id)
    }

    /// Ends the silence now (a pending one never starts).
    pub fn expire(&self, id: &str, now: i64) -> Result<(), SilenceError> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let Some((silence, _)) = inner.iter_mut().find(|(silence, _)| silence.id == id) else {
            return Err(SilenceError::NotFound(id.to_owned()));
        };
        if silence.state(now) == "expired" {
            return Ok(());
        }
        silence.starts_at = silence.starts_at.min(now);
        silence.ends_at = now;
        silence.updated_at = now;
        self.save(&mut inner, now)?;
        Ok(())
    }

    fn save(&self, inner: &mut Vec<(Silence, Vec<Matcher>)>, now: i64) -> Result<(), StoreError> {
        inner.retain(|(silence, _)| silence.ends_at + RETENTION_MS > now);
        let silences: Vec<&Silence> = inner.iter().map(|(silence, _)| silence).collect();
        store::write_atomically(&self.dir, SILENCES_FILE, &silences)
    }
}

fn new_id() -> String {
    let bits: u128 = rand::random();
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn parse_time(text: &str, field: &str) -> Result<i64, SilenceError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|error| {
            SilenceError::Invalid(format!("{field} {text:?} is not an RFC 3339 time: {error}"))
        })
}

fn format_time(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<ApiMatcher>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GettableSilence {
    id: String,
    status: SilenceStatus,
    updated_at: String,
    matchers: Vec<ApiMatcher>,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
}

#[derive(Debug, Serialize)]
struct SilenceStatus {
    state: &'static str,
}

fn gettable(silence: Silence, now: i64) -> GettableSilence {
    GettableSilence {
        status: SilenceStatus {
            state: silence.state(now),
        },
        updated_at: format_time(silence.updated_at),
        starts_at: format_time(silence.starts_at),
        ends_at: format_time(silence.ends_at),
        id: silence.id,
        matchers: silence.matchers,
        created_by: silence.created_by,
        comment: silence.comment,
    }
}

impl IntoResponse for SilenceError {
    fn into_response(self) -> Response {
        let status = match &self {
            SilenceError::Invalid(_) => StatusCode::BAD_REQUEST,
            SilenceError::NotFound(_) => StatusCode::NOT_FOUND,
            SilenceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // Alertmanager answers errors with a JSON string.
        (status, Json(self.to_string())).into_response()
    }
}

fn now() -> i64 {
    unix_millis(SystemTime::now())
}

/// `/api/v2/silences` and `/api/v2/silence/{id}`.
pub fn router(silences: Arc<Silences>) -> Router {
    Router::new()
        .route("/api/v2/silences", get(list).post(post))
        .route("/api/v2/silence/{id}", delete(expire).get(get_one))
        .with_state(silences)
}

async fn list(State(silences): State<Arc<Silences>>) -> Json<Vec<GettableSilence>> {
    let now = now();
    let mut listed: Vec<GettableSilence> = silences
        .list()
        .into_iter()
        .map(|silence| gettable(silence, now))
        .collect();
    // Alertmanager's order: active, then pending, then expired.
    listed.sort_by_key(|silence| match silence.status.state {
        "active" => 0,
        "pending" => 1,
        _ => 2,
    });
    Json(listed)
}

async fn get_one(
    State(silences): State<Arc<Silences>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<GettableSilence>, SilenceError> {
    let now = now();
    silences
        .list()
        .into_iter()
        .find(|silence| silence.id == id)
        .map(|silence| Json(gettable(silence, now)))
        .ok_or(SilenceError::NotFound(id))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

async fn post(
    State(silences): State<Arc<Silences>>,
    Json(posted): Json<PostableSilence>,
) -> Result<Json<Created>, SilenceError> {
    let id = tokio::task::spawn_blocking(move || silences.upsert(posted, now()))
        .await
        .map_err(|error| {
            SilenceError::Invalid(format!("the silence could not be stored: {error}"))
        })??;
    tracing::info!(id = %id, "silence stored");
    Ok(Json(Created { silence_id: id }))
}

async fn expire(
    State(silences): State<Arc<Silences>>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, SilenceError> {
    let expired_id = id.clone();
    tokio::task::spawn_blocking(move || silences.expire(&expired_id, now()))
        .await
        .map_err(|error| {
            SilenceError::Invalid(format!("the silence could not be expired: {error}"))
        })??;
    tracing::info!(id = %id, "silence expired");
    Ok(StatusCode::OK)
}
