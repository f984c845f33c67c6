//! The HTTP surface, the only module that knows HTTP: `/metrics`, `/-/healthy`, `/-/ready`, and the status
//! page with its APIs (`web::status`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::exposition;
use crate::reload::{FailureKind, ReloadHandle, Trigger};
use crate::store::SnapshotStore;
use crate::supervise::Components;
use crate::web::status::{self, StatusState};
use dbwatch_rules::AlertsHandle;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
pub struct HttpState {
    pub store: Arc<SnapshotStore>,
    pub registry: Registry,
    /// `ALERTS` and `ALERTS_FOR_STATE`, rendered by the rules engine after each evaluation.
    pub alerts: AlertsHandle,
    /// The supervised components (rules engine, notifier): readiness requires every one of them up.
    pub components: Components,
}

pub fn router(state: HttpState) -> Router {
    // The status page (`/`) and its JSON APIs live in web::status.
    let status = status::router(StatusState {
        store: Arc::clone(&state.store),
        alerts: state.alerts.clone(),
        components: state.components.clone(),
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(state)
        .merge(status)
}

/// `POST /-/reload`, Prometheus's reload endpoint. Merged beside the other routes so that the web layer's
/// authorization applies: it is a write.
pub fn reload_router(handle: ReloadHandle) -> Router {
    Router::new()
        .route("/-/reload", post(reload))
        .with_state(handle)
}

/// Answers once the reload is applied (200) or refused: 400 for a file with problems, 409 for a change a
/// running daemon cannot make, 503 while shutting down; the body says what happened.
async fn reload(State(handle): State<ReloadHandle>) -> Response {
    let outcome = handle.reload(Trigger::Http).await;
    let status = match &outcome.result {
        Ok(_) => StatusCode::OK,
        Err(failure) => match failure.kind {
            FailureKind::Invalid => StatusCode::BAD_REQUEST,
            FailureKind::Refused => StatusCode::CONFLICT,
            FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        },
    };
    (status, format!("{outcome}\n")).into_response()
}

/// Renders the latest snapshots and the daemon's own registry; touches no database.
pub fn render_metrics(
    store: &SnapshotStore,
    registry: &Registry,
    alerts: &AlertsHandle,
) -> Result<String, prometheus::Error> {
    let snapshots = store.snapshots();
    let mut out = String::with_capacity(64 * 1024);
    exposition::render(
        snapshots
            .iter()
            .map(|snapshot| snapshot.families.as_slice()),
        &mut out,
    );
    alerts.render(&mut out);
    let mut own = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut own)?;
    out.push_str(&String::from_utf8_lossy(&own));
    Ok(out)
}

async fn metrics(State(state): State<HttpState>) -> Response {
    match render_metrics(&state.store, &state.registry, &state.alerts) {
        Ok(body) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "cannot encode the daemon's own metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn healthy() -> &'static str {
    "OK\n"
}

/// Ready once every configured target has published a snapshot, up or down, and while every supervised
/// component runs: a dead notifier must never look healthy.
async fn ready(State(state): State<HttpState>) -> Response {
    let down = state.components.down();
    if !down.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: component {} down\n", down.join(", ")),
        )
            .into_response();
    }
    let (polled, expected) = state.store.progress();
    if polled >= expected {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {polled} of {expected} targets polled\n"),
        )
            .into_response()
    }
}
