//! Silences with Alertmanager's API v2 shapes (`api/v2/openapi.yaml`): create or update, list, get and expire
//! at `/api/v2/silences` and `/api/v2/silence/{id}`, so `amtool silence add|query|expire` work against dbwatch.
//! They are persisted in the state folder (`silences.json`, written atomically) and mute matching firing alerts
//! the way inhibition does: a muted alert is neither notified nor resolved, and one that first fired under a
//! silence is notified at the first flush after the silence ends.
//!
//! Bounded so an API client cannot exhaust memory, disk or the notifier's time (every firing alert is checked
//! against every silence each tick): at most [`MAX_SILENCES`] silences that have not expired,
//! [`MAX_MATCHERS`] matchers per silence, [`MAX_MATCHER_BYTES`] per matcher name or value,
//! [`MAX_COMMENT_BYTES`] of comment and [`MAX_CREATED_BY_BYTES`] of author (400 beyond), and the web server's
//! 64 KiB request body (413). A change is saved before it is applied and acknowledged: a failed save answers 500
//! and changes nothing, so a retry cannot leave a second silence behind and an expiry cannot come back after
//! a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::SystemTime;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::matcher::{MatchOp, Matcher};
use super::store::{self, StoreError};
use dbwatch_events::{Body as EventBody, EventSink, SilenceAction};
use dbwatch_rules::alerting::unix_millis;

pub const SILENCES_FILE: &str = "silences.json";
/// Expired silences are kept this long (Alertmanager's default `--data.retention`).
const RETENTION_MS: i64 = 120 * 3600 * 1000;
/// Silences that have not expired (active or pending). Alertmanager has a similar, opt-in, limit.
pub const MAX_SILENCES: usize = 1000;
pub const MAX_MATCHERS: usize = 32;
/// Bytes per matcher name and per matcher value.
pub const MAX_MATCHER_BYTES: usize = 1024;
pub const MAX_COMMENT_BYTES: usize = 4096;
pub const MAX_CREATED_BY_BYTES: usize = 256;

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

/// As Alertmanager prints a matcher: `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`.
impl std::fmt::Display for ApiMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (true, false) => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
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
    /// Read by the notifier for every firing alert; written only to swap in a list already saved, so no
    /// reader ever waits for an fsync.
    inner: RwLock<List>,
    /// Held by a change from reading the current list to swapping in the saved new one, so changes apply one
    /// at a time and none is lost.
    writer: Mutex<()>,
    /// Where changes are recorded once saved; set once by the daemon ([`Silences::recording_to`]).
    events: OnceLock<EventSink>,
    /// Up to when silences that ran out on their own have been recorded (Unix milliseconds).
    expiries_noted: std::sync::atomic::AtomicI64,
}

#[derive(Debug, Clone, Default)]
struct List {
    compiled: Vec<(Silence, Vec<Matcher>)>,
    /// Saved silences whose matchers no longer compile (a regex this version refuses, L13): kept in the file
    /// and listed, so an operator sees and can replace or expire them, but they mute nothing.
    broken: Vec<(Silence, String)>,
}

impl List {
    fn silences(&self) -> impl Iterator<Item = &Silence> {
        self.compiled
            .iter()
            .map(|(silence, _)| silence)
            .chain(self.broken.iter().map(|(silence, _)| silence))
    }

    fn remove(&mut self, id: &str) {
        self.compiled.retain(|(silence, _)| silence.id != id);
        self.broken.retain(|(silence, _)| silence.id != id);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("{0}")]
    Invalid(String),
    #[error("silence {0} not found")]
    NotFound(String),
    /// The request itself was refused before it reached the silences (malformed JSON, too large a body).
    #[error("{1}")]
    Rejected(StatusCode, String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Silences {
    /// The silences saved in `dir`. A saved silence whose matchers no longer compile is kept (in the file and
    /// the list) and reported at error level; it mutes nothing. A `silences.json` that is not valid JSON of the
    /// expected shape is moved aside (`silences.json.corrupt-*`, logged and counted by [`crate::storage`]) and
    /// dbwatch starts with no silences: an alert that pages when it should have been muted is recoverable, a
    /// daemon that does not start pages nobody.
    pub fn load(dir: &Path) -> Result<Silences, StoreError> {
        let saved: Vec<Silence> = store::read_json(dir, SILENCES_FILE)?.unwrap_or_default();
        let mut list = List::default();
        for silence in saved {
            match silence
                .matchers
                .iter()
                .map(ApiMatcher::compile)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(matchers) => list.compiled.push((silence, matchers)),
                Err(error) => {
                    tracing::error!(
                        id = %silence.id,
                        error = %error,
                        "a saved silence's matchers no longer compile: it is kept and listed but mutes \
                         nothing; replace or expire it"
                    );
                    list.broken.push((silence, error));
                }
            }
        }
        Ok(Silences {
            dir: dir.to_owned(),
            inner: RwLock::new(list),
            writer: Mutex::new(()),
            events: OnceLock::new(),
            expiries_noted: std::sync::atomic::AtomicI64::new(unix_millis(SystemTime::now())),
        })
    }

    /// Records every saved change (created, updated, expired) in the event history; the first call wins.
    pub fn recording_to(&self, events: EventSink) {
        let _ = self.events.set(events);
    }

    /// Records the silences whose end time passed since the last call (the notifier calls this every tick).
    /// One expired through the API is not recorded again: its end is its last update.
    pub fn record_expiries(&self, now: i64) {
        let since = self
            .expiries_noted
            .swap(now, std::sync::atomic::Ordering::Relaxed);
        if self.events.get().is_none() || since >= now {
            return;
        }
        for silence in self.list() {
            if since < silence.ends_at
                && silence.ends_at <= now
                && silence.updated_at < silence.ends_at
            {
                self.record(SilenceAction::Expired, &silence, None);
            }
        }
    }

    fn record(&self, action: SilenceAction, silence: &Silence, by: Option<String>) {
        let Some(events) = self.events.get() else {
            return;
        };
        events.record(EventBody::Silence {
            action,
            id: silence.id.clone(),
            by,
            matchers: silence.matchers.iter().map(ApiMatcher::to_string).collect(),
            comment: Some(silence.comment.clone()),
            ends_at: Some(silence.ends_at),
        });
    }

    /// The id of an active silence that matches `labels`.
    pub fn silenced_by(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        now: i64,
    ) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .compiled
            .iter()
            .find(|(silence, matchers)| {
                silence.state(now) == "active" && super::matcher::all_match(matchers, labels)
            })
            .map(|(silence, _)| silence.id.clone())
    }

    pub fn list(&self) -> Vec<Silence> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.silences().cloned().collect()
    }

    /// The ids of saved silences whose matchers do not compile (they mute nothing).
    pub fn broken(&self) -> Vec<(String, String)> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .broken
            .iter()
            .map(|(silence, error)| (silence.id.clone(), error.clone()))
            .collect()
    }

    /// A copy of the current list, for a change to build on; only under `writer`.
    fn current(&self) -> List {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Creates a silence, or replaces the one with `id`; returns its id.
    pub fn upsert(&self, posted: PostableSilence, now: i64) -> Result<String, SilenceError> {
        let invalid = |message: String| SilenceError::Invalid(message);
        if posted.matchers.is_empty() {
            return Err(invalid("a silence needs at least one matcher".into()));
        }
        if posted.matchers.len() > MAX_MATCHERS {
            return Err(invalid(format!(
                "a silence has at most {MAX_MATCHERS} matchers, not {}",
                posted.matchers.len()
            )));
        }
        let mut matchers = Vec::with_capacity(posted.matchers.len());
        for matcher in &posted.matchers {
            if matcher.name.is_empty() {
                return Err(invalid("a matcher needs a label name".into()));
            }
            for (what, text) in [("name", &matcher.name), ("value", &matcher.value)] {
                if text.len() > MAX_MATCHER_BYTES {
                    return Err(invalid(format!(
                        "a matcher {what} is at most {MAX_MATCHER_BYTES} bytes, not {}",
                        text.len()
                    )));
                }
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
        if posted.created_by.len() > MAX_CREATED_BY_BYTES {
            return Err(invalid(format!(
                "createdBy is at most {MAX_CREATED_BY_BYTES} bytes, not {}",
                posted.created_by.len()
            )));
        }
        if posted.comment.len() > MAX_COMMENT_BYTES {
            return Err(invalid(format!(
                "comment is at most {MAX_COMMENT_BYTES} bytes, not {}",
                posted.comment.len()
            )));
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = self.current();
        let id = match posted.id.filter(|id| !id.is_empty()) {
            Some(id) => {
                if !next.silences().any(|silence| silence.id == id) {
                    return Err(SilenceError::NotFound(id));
                }
                id
            }
            None => new_id(),
        };
        let live = next
            .silences()
            .filter(|silence| silence.id != id && silence.state(now) != "expired")
            .count();
        if live >= MAX_SILENCES {
            return Err(invalid(format!(
                "there are already {live} silences that have not expired, the most dbwatch keeps \
                 ({MAX_SILENCES}); expire some first"
            )));
        }
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
        let updated = next.silences().any(|existing| existing.id == id);
        next.remove(&id);
        let recorded = silence.clone();
        next.compiled.push((silence, matchers));
        self.commit(next, now)?;
        let action = if updated {
            SilenceAction::Updated
        } else {
            SilenceAction::Created
        };
        self.record(action, &recorded, Some(recorded.created_by.clone()));
        Ok(id)
    }

    /// Ends the silence now (a pending one never starts).
    pub fn expire(&self, id: &str, now: i64) -> Result<(), SilenceError> {
        self.expire_by(id, now, None)
    }

    /// [`Silences::expire`], recording who expired it when known (the status page's authenticated user).
    pub fn expire_by(&self, id: &str, now: i64, by: Option<&str>) -> Result<(), SilenceError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = self.current();
        let Some(silence) = next
            .compiled
            .iter_mut()
            .map(|(silence, _)| silence)
            .chain(next.broken.iter_mut().map(|(silence, _)| silence))
            .find(|silence| silence.id == id)
        else {
            return Err(SilenceError::NotFound(id.to_owned()));
        };
        if silence.state(now) == "expired" {
            return Ok(());
        }
        silence.starts_at = silence.starts_at.min(now);
        silence.ends_at = now;
        silence.updated_at = now;
        let recorded = silence.clone();
        self.commit(next, now)?;
        self.record(SilenceAction::Expired, &recorded, by.map(str::to_owned));
        Ok(())
    }

    /// Saves `next` (less the silences past retention) and only then makes it the current list: a failed
    /// save changes nothing. The caller holds `writer`; the read lock is never held across the fsync.
    fn commit(&self, mut next: List, now: i64) -> Result<(), StoreError> {
        let kept = |silence: &Silence| silence.ends_at.saturating_add(RETENTION_MS) > now;
        next.compiled.retain(|(silence, _)| kept(silence));
        next.broken.retain(|(silence, _)| kept(silence));
        let silences: Vec<&Silence> = next.silences().collect();
        store::write_atomically(&self.dir, SILENCES_FILE, &silences)?;
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
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
            SilenceError::Rejected(status, _) => *status,
            SilenceError::Store(_) | SilenceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "a silence change failed; nothing was changed");
        }
        // Alertmanager answers errors with a JSON string.
        (status, Json(self.to_string())).into_response()
    }
}

fn now() -> i64 {
    unix_millis(SystemTime::now())
}

/// The largest silence request body read: a silence is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `/api/v2/silences` and `/api/v2/silence/{id}`.
pub fn router(silences: Arc<Silences>) -> Router {
    Router::new()
        .route("/api/v2/silences", get(list).post(post))
        .route("/api/v2/silence/{id}", delete(expire).get(get_one))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
    posted: Result<Json<PostableSilence>, JsonRejection>,
) -> Result<Json<Created>, SilenceError> {
    let Json(posted) = posted.map_err(rejected)?;
    let id = tokio::task::spawn_blocking(move || silences.upsert(posted, now()))
        .await
        .map_err(|error| {
            SilenceError::Internal(format!("the silence could not be stored: {error}"))
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
            SilenceError::Internal(format!("the silence could not be expired: {error}"))
        })??;
    tracing::info!(id = %id, "silence expired");
    Ok(StatusCode::OK)
}

/// A request axum's JSON extractor refused, answered as a JSON string like every other error here.
fn rejected(rejection: JsonRejection) -> SilenceError {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!(
            "the request body is larger than {} KiB",
            MAX_BODY_BYTES / 1024
        )
    } else {
        rejection.body_text()
    };
    SilenceError::Rejected(status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn posted(matchers: Vec<ApiMatcher>) -> PostableSilence {
        PostableSilence {
            id: None,
            matchers,
            starts_at: format_time(NOW),
            ends_at: format_time(NOW + 3_600_000),
            created_by: "ops".into(),
            comment: "maintenance".into(),
        }
    }

    fn equal(name: &str, value: &str) -> ApiMatcher {
        ApiMatcher {
            name: name.into(),
            value: value.into(),
            is_regex: false,
            is_equal: true,
        }
    }

    fn invalid(result: Result<String, SilenceError>) -> String {
        match result {
            Err(SilenceError::Invalid(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn creation_expiry_and_running_out_are_recorded_once_each() {
        let dir = tempfile::tempdir().expect("temp dir");
        let silences = Silences::load(dir.path()).expect("load");
        let storage = tempfile::tempdir().expect("temp dir");
        let (sink, writer) = dbwatch_events::channel(
            storage.path(),
            dbwatch_events::Retention::default(),
            dbwatch_events::EventMetrics::unregistered(),
        );
        silences.recording_to(sink);
        let now = unix_millis(SystemTime::now());
        let matcher = ApiMatcher {
            name: "alertname".into(),
            value: "x".into(),
            is_regex: false,
            is_equal: true,
        };
        let mut short = posted(vec![matcher.clone()]);
        short.starts_at = format_time(now);
        short.ends_at = format_time(now + 1_000);
        let runs_out = silences.upsert(short, now).expect("created");
        let mut long = posted(vec![matcher]);
        long.starts_at = format_time(now);
        long.ends_at = format_time(now + 3_600_000);
        let expired = silences.upsert(long, now).expect("created");
        silences
            .expire_by(&expired, now + 10, Some("oncall"))
            .expect("expired");
        silences.record_expiries(now + 2_000);
        silences.record_expiries(now + 3_000);
        let shutdown = tokio_util::sync::CancellationToken::new();
        shutdown.cancel();
        writer.run(shutdown).await;
        let page = dbwatch_events::EventLog::new(storage.path())
            .query(&dbwatch_events::Query {
                direction: dbwatch_events::Direction::Forward,
                ..Default::default()
            })
            .expect("query");
        let seen: Vec<(String, String, Option<String>)> = page
            .events
            .iter()
            .filter_map(|event| match &event.body {
                dbwatch_events::Body::Silence { action, id, by, .. } => {
                    Some((action.as_str().to_owned(), id.clone(), by.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "created".to_owned(),
                    runs_out.clone(),
                    Some("ops".to_owned())
                ),
                (
                    "created".to_owned(),
                    expired.clone(),
                    Some("ops".to_owned())
                ),
                ("expired".to_owned(), expired, Some("oncall".to_owned())),
                ("expired".to_owned(), runs_out, None),
            ]
        );
    }

    #[test]
    fn sizes_and_counts_are_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let silences = Silences::load(dir.path()).expect("load");
        let many = (0..=MAX_MATCHERS)
            .map(|i| equal(&format!("l{i}"), "v"))
            .collect();
        assert_eq!(
            invalid(silences.upsert(posted(many), NOW)),
            "a silence has at most 32 matchers, not 33"
        );
        let long = "x".repeat(MAX_MATCHER_BYTES + 1);
        assert_eq!(
            invalid(silences.upsert(posted(vec![equal("a", &long)]), NOW)),
            "a matcher value is at most 1024 bytes, not 1025"
        );
        assert_eq!(
            invalid(silences.upsert(posted(vec![equal(&long, "v")]), NOW)),
            "a matcher name is at most 1024 bytes, not 1025"
        );
        let mut wordy = posted(vec![equal("a", "b")]);
        wordy.comment = "c".repeat(MAX_COMMENT_BYTES + 1);
        assert_eq!(
            invalid(silences.upsert(wordy, NOW)),
            "comment is at most 4096 bytes, not 4097"
        );
        let mut author = posted(vec![equal("a", "b")]);
        author.created_by = "a".repeat(MAX_CREATED_BY_BYTES + 1);
        assert_eq!(
            invalid(silences.upsert(author, NOW)),
            "createdBy is at most 256 bytes, not 257"
        );
        // Exactly at every limit is accepted.
        let mut full = posted(
            (0..MAX_MATCHERS)
                .map(|i| equal(&format!("l{i}"), &"v".repeat(MAX_MATCHER_BYTES)))
                .collect(),
        );
        full.comment = "c".repeat(MAX_COMMENT_BYTES);
        full.created_by = "a".repeat(MAX_CREATED_BY_BYTES);
        let id = silences.upsert(full, NOW).expect("at the limits");
        // 999 more, saved (one write instead of 999 fsynced ones), then the count limit.
        let mut saved = silences.list();
        for i in 1..MAX_SILENCES {
            let mut silence = saved[0].clone();
            silence.id = format!("saved-{i}");
            silence.matchers = vec![equal("n", &i.to_string())];
            saved.push(silence);
        }
        store::write_atomically(dir.path(), SILENCES_FILE, &saved).expect("write");
        let silences = Silences::load(dir.path()).expect("load");
        // Replacing a silence does not count it twice; an expired one does not count.
        assert_eq!(
            invalid(silences.upsert(posted(vec![equal("n", "x")]), NOW)),
            "there are already 1000 silences that have not expired, the most dbwatch keeps (1000); \
             expire some first"
        );
        let mut replaced = posted(vec![equal("a", "c")]);
        replaced.id = Some(id.clone());
        silences.upsert(replaced, NOW).expect("a replacement");
        silences.expire(&id, NOW + 1).expect("expire");
        silences
            .upsert(posted(vec![equal("n", "x")]), NOW + 2)
            .expect("room after an expiry");
        assert_eq!(silences.list().len(), MAX_SILENCES + 1);
    }

    #[test]
    fn a_failed_save_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        let silences = Silences::load(&state).expect("load");
        let id = silences
            .upsert(posted(vec![equal("alertname", "a")]), NOW)
            .expect("saved");
        // The folder goes away (a lost volume): every save fails.
        std::fs::remove_dir_all(&state).expect("remove");
        let labels = [("alertname".to_owned(), "b".to_owned())]
            .into_iter()
            .collect();
        let failed = silences.upsert(posted(vec![equal("alertname", "b")]), NOW);
        assert!(matches!(failed, Err(SilenceError::Store(_))), "{failed:?}");
        assert_eq!(silences.list().len(), 1, "the failed create is not live");
        assert_eq!(silences.silenced_by(&labels, NOW + 1), None);
        let failed = silences.expire(&id, NOW + 1);
        assert!(matches!(failed, Err(SilenceError::Store(_))), "{failed:?}");
        assert_eq!(
            silences.list()[0].state(NOW + 2),
            "active",
            "the failed expiry is not live"
        );
    }

    #[test]
    fn a_saved_silence_that_no_longer_compiles_is_kept_and_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let broken = Silence {
            id: "broken".into(),
            matchers: vec![ApiMatcher {
                name: "alertname".into(),
                value: "(unclosed".into(),
                is_regex: true,
                is_equal: true,
            }],
            starts_at: NOW,
            ends_at: NOW + 3_600_000,
            updated_at: NOW,
            created_by: "ops".into(),
            comment: "from an older version".into(),
        };
        store::write_atomically(dir.path(), SILENCES_FILE, &vec![&broken]).expect("write");
        let silences = Silences::load(dir.path()).expect("load");
        assert_eq!(silences.list(), vec![broken.clone()]);
        assert_eq!(silences.broken().len(), 1);
        let labels = [("alertname".to_owned(), "(unclosed".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(
            silences.silenced_by(&labels, NOW + 1),
            None,
            "it mutes nothing"
        );
        // Another change keeps it in the file.
        silences
            .upsert(posted(vec![equal("alertname", "x")]), NOW)
            .expect("saved");
        let reloaded = Silences::load(dir.path()).expect("reload");
        assert_eq!(reloaded.list().len(), 2);
        assert_eq!(reloaded.broken()[0].0, "broken");
        // And it can be expired like any other.
        reloaded.expire("broken", NOW + 1).expect("expire");
        assert_eq!(
            reloaded
                .list()
                .iter()
                .find(|s| s.id == "broken")
                .map(|s| s.state(NOW + 2)),
            Some("expired")
        );
    }
}
