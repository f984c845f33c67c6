//! The status UI the on-call human opens first: server-rendered HTML and inline SVG, no script, no build
//! step, one page per question — the fleet at a glance (`/`), one target (`/targets/{name}`), the alerts
//! (`/alerts`), the silences (`/silences`) and what happened (`/events`, from the event history).
//!
//! Every value that comes from a database, a rule, a receiver or a user is escaped where it is written
//! (`esc`); a URL becomes a link only when it is http or https. State changes (silence an alert, expire a
//! silence) are POST forms: the web server's authorization decides who may write (see `web::serve`), and
//! each form carries a token bound to the writer (`csrf.rs`) and is refused from another origin, so a page
//! elsewhere cannot make a logged-in browser write.

pub mod alerts;
mod csrf;
pub mod events;
mod layout;
pub mod overview;
pub mod silences;
pub mod sparkline;
pub mod target;
pub mod thresholds;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::store::SnapshotStore;
use crate::supervise::Components;
use dbwatch_events::EventLog;
use dbwatch_notify::silence::Silences;
use dbwatch_rules::AlertsHandle;

pub use csrf::Csrf;
pub use thresholds::Thresholds;

/// The series the engine keeps an hour of for the sparklines: the fleet signals, the hit ratios of the
/// engines that have one, and the poll duration.
pub const TREND_NAMES: &[&str] = &[
    "db_up",
    "db_query_latency_avg_seconds",
    "db_connections_utilization_ratio",
    "db_replication_lag_seconds",
    "db_replication_healthy",
    "pg_database_buffer_hit_ratio",
    "mysql_innodb_buffer_pool_hit_ratio",
    "dbwatch_poll_duration_seconds",
];
/// How far back the sparklines go.
pub const TREND_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Who may use the write forms, as the web server decides it (its middleware enforces it; this only decides
/// whether to show the buttons).
#[derive(Debug, Clone, Default)]
pub struct Writers {
    /// `basic_auth_users` are configured: only `users` may write.
    pub basic_auth: bool,
    pub users: BTreeSet<String>,
    /// No users, and `--web.enable-unauthenticated-writes`: anyone may.
    pub anonymous: bool,
}

impl Writers {
    /// As the web server will authorize writes with `web`.
    pub fn of(web: &crate::web::WebConfig) -> Writers {
        Writers {
            basic_auth: web.basic_auth_enabled(),
            users: web.write_users().map(str::to_owned).collect(),
            anonymous: !web.basic_auth_enabled() && web.unauthenticated_writes_enabled(),
        }
    }

    pub fn may_write(&self, user: Option<&str>) -> bool {
        if self.basic_auth {
            user.is_some_and(|user| self.users.contains(user))
        } else {
            self.anonymous
        }
    }
}

/// What the UI reads.
#[derive(Clone)]
pub struct UiState {
    pub store: Arc<SnapshotStore>,
    pub alerts: AlertsHandle,
    pub components: Components,
    /// `None` without a routing file: no silences here.
    pub silences: Option<Arc<Silences>>,
    pub events: EventLog,
    pub thresholds: Arc<Thresholds>,
    pub writers: Writers,
    pub csrf: Csrf,
}

impl UiState {
    /// A UI over `store` and `alerts` with no silences, no thresholds and no writers, reading the event
    /// history in `storage`: for tests and tools that serve the pages without the whole daemon.
    pub fn new(
        store: Arc<SnapshotStore>,
        alerts: AlertsHandle,
        components: Components,
        storage: &std::path::Path,
    ) -> UiState {
        UiState {
            store,
            alerts,
            components,
            silences: None,
            events: EventLog::new(storage),
            thresholds: Arc::default(),
            writers: Writers::default(),
            csrf: Csrf::default(),
        }
    }
}

/// The UI's routes, to merge into the daemon's router.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/targets/{name}", get(target::page))
        .route("/alerts", get(alerts::page))
        .route("/ui/silence", post(alerts::silence))
        .route("/silences", get(silences::page))
        .route("/ui/silences/{id}/expire", post(silences::expire))
        .route("/events", get(events::page))
        .with_state(state)
}
