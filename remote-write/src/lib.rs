//! Prometheus's remote-write protocol 1.0: samples pushed to Mimir, Cortex, Thanos Receive, VictoriaMetrics or
//! a Prometheus with `--web.enable-remote-write-receiver`.
//!
//! - `config.rs` reads `remote_write:` in Prometheus's schema (the HTTP client settings inline, through
//!   `dbwatch-httpclient`) and refuses by name what dbwatch does not do (relabeling, SigV4, Azure AD);
//! - `encode.rs` encodes one `TimeSeries` entry of a `WriteRequest` per sample, labels sorted, external labels
//!   added; a request body is the concatenation of its entries, snappy-compressed;
//! - `queue.rs` is a bounded queue per endpoint: pushing never waits, a full queue drops its oldest entries and
//!   counts them;
//! - `sender.rs` is one task per endpoint: batches by size and deadline, retries 5xx, 429 and connection errors
//!   with exponential backoff (honouring `Retry-After`), drops what a 4xx refuses, counted;
//! - `metrics.rs` the `dbwatch_remote_write_*` metrics.
//!
//! [`RemoteWriters`] is what producers hold: the daemon pushes every snapshot and the rules engine's results.

mod config;
mod encode;
mod metrics;
mod queue;
mod sender;

pub use config::{read, QueueConfig, RemoteWrite};
pub use dbwatch_httpclient::ClientError;
pub use encode::{Entry, SeriesEncoder};
pub use metrics::RemoteWriteMetrics;
pub use sender::RemoteWriters;
