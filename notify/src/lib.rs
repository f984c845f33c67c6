//! Notifications: Alertmanager-style routing, grouping and inhibition of the rules engine's alerts, delivered to
//! Slack, PagerDuty, email, webhooks and Alertmanager's other receivers (Discord, Telegram, Webex, Opsgenie,
//! Pushover, VictorOps, Teams, SNS) through a durable outbox.
//!
//! ```text
//!  AlertsHandle (watch on the view; every publication wakes the notifier) ──► reconcile   (reconcile.rs)
//!        │ firing + resolved alerts, inhibition and silences applied
//!        ▼
//!  route tree (route.rs) ──► groups (route + group_by values) ──► timers: group_wait, group_interval,
//!        │                                                        repeat_interval
//!        │ flush: compare with the notification log (per group × receiver × integration)
//!        ▼
//!  render (integrations/*: built-in, or the routing file's templates falling back to it) ──► store: log entry +
//!        │ outbox entry written together, fsynced
//!        │
//!        ▼
//!  delivery (delivery.rs): per destination one request in flight, FIFO per group, Retry-After, jittered
//!            backoff, dead letter after max_attempts or a permanent refusal; sent by integrations/*
//! ```
//!
//! Why reconcile from the full view rather than from transitions: a restart loses whatever was in flight,
//! while the view always lists every pending, firing and recently resolved instance. Diffing the view against
//! the persisted notification log (like Alertmanager's dedup stage) makes every notification a function of
//! state, not of events, so none can be lost: an alert notified as firing that is no longer in the view at all
//! (dbwatch was down past the engine's 15-minute resolved retention) is resolved from the copy kept in the log.
//! The view is a `watch`, so a new view wakes the loop at once and a new alert goes out without waiting for
//! the next tick.
//!
//! Delivery is at-least-once: an entry is removed only after its destination accepted it. A crash between the
//! acceptance and that removal re-sends it after the restart; PagerDuty folds such a repeat into the same
//! incident through the stable `dedup_key`.
//!
//! Module order (each uses only modules above it): `clock`, `matcher`, `store`, `html`, `template`, `fields`,
//! `render`,
//! `integrations`, `timeinterval`, `config`, `route`, `silence`, `metrics`, `reconcile`, `delivery`, `forward`, `notifier`.

mod clock;
pub mod config;
mod delivery;
pub mod fields;
pub mod forward;
pub mod html;
pub mod integrations;
pub mod matcher;
mod metrics;
mod notifier;
mod reconcile;
pub mod render;
pub mod route;
pub mod silence;
pub mod store;
pub mod template;
pub mod timeinterval;

pub use config::{load_file, load_str, DeliveryOptions, NotifyConfig, NotifyConfigErrors};
pub use delivery::MAX_OUTBOX_ENTRIES;
pub use integrations::{Integration, Kind, Outcome};
pub use metrics::NotifyMetrics;
pub use notifier::{http_client, Notifier, NotifierSeed, NotifyError};
