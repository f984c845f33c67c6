//! The web endpoint: its security, in the format every Prometheus exporter accepts (`--web.config.file`: TLS,
//! client certificates, basic auth with bcrypt hashes, security headers) with the server that applies it, and
//! the status page with its JSON APIs.

mod config;
mod serve;
pub mod status;

pub use config::{WebConfig, WebConfigError};
pub use serve::serve;
