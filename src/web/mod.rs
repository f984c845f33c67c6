//! The web endpoint: its security, in the format every Prometheus exporter accepts (`--web.config.file`: TLS,
//! client certificates, basic auth with bcrypt hashes, security headers) plus dbwatch's `write_users`, with the
//! server that applies it and bounds what each client can hold, and the status UI (`ui/`) with its JSON APIs (`status.rs`, `events_api.rs`).

mod config;
pub mod events_api;
mod serve;
pub mod status;
pub mod ui;

pub use config::{WebConfig, WebConfigError};
pub use serve::{serve, DRAIN_TIMEOUT, MAX_BODY_BYTES};
