//! dbwatch's database collectors.
//!
//! A collector owns the connection to one database target and turns what the database says about itself into
//! [`Sample`]s. Collectors know nothing about HTTP, the Prometheus registry, alerting or configuration files:
//! the daemon hands each one plain options, calls [`Collector::collect`] on its own schedule, and publishes what
//! comes back.
//!
//! Layout: the shared vocabulary lives here ([`metric`], [`fleet`], [`error`], [`backoff`]); each engine is a
//! module behind a Cargo feature, with one file per system view or API it reads, the SQL beside it.

pub mod backoff;
pub mod error;
pub mod fleet;
pub use dbwatch_metric as metric;
pub use dbwatch_secret as secret;
pub mod password;
pub mod top;
pub mod view;
pub mod view_log;

#[cfg(feature = "cassandra")]
pub mod cassandra;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod pgbouncer;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use error::{CollectError, ErrorKind};
pub use metric::{Labels, MetricDesc, MetricKind, Sample};

use std::time::Duration;

/// What one poll produced: the samples, plus how each sub-view fared.
///
/// A poll as a whole fails only when the target cannot be reached or answers nothing useful; a single view that
/// fails (a missing extension, a permission) is recorded in `views` and the rest of the samples still count.
#[derive(Debug, Default)]
pub struct Collected {
    pub samples: Vec<Sample>,
    pub views: Vec<ViewOutcome>,
}

/// How one sub-view (one system view or API call) fared during a poll.
#[derive(Debug, Clone)]
pub struct ViewOutcome {
    pub view: &'static str,
    pub duration: Duration,
    /// `None` when the view answered; otherwise the bounded class of the failure.
    pub error: Option<ErrorKind>,
}

/// One database target's collector. The daemon owns each collector in exactly one task, hence `&mut self`.
#[async_trait::async_trait]
pub trait Collector: Send {
    /// The engine name used as the `db` label, e.g. `postgres`.
    fn db(&self) -> &'static str;

    /// One pass over the target's views; [`Collector::collect`] is what the daemon calls.
    async fn poll(&mut self) -> Result<Collected, CollectError>;

    /// Whether a failed poll leaves the connection worth nothing, so that [`Collector::collect`] drops it: by
    /// default a failure of the connection or of the credentials. A failed query on a healthy connection keeps it.
    fn drops_connection(&self, error: &CollectError) -> bool {
        matches!(error.kind(), ErrorKind::Connect | ErrorKind::Auth)
    }

    /// Polls the target once. `Err` means the target as a whole could not be read (`db_up 0`).
    async fn collect(&mut self) -> Result<Collected, CollectError> {
        let result = self.poll().await;
        if let Err(error) = &result {
            if self.drops_connection(error) {
                self.abandon_connection();
            }
        }
        result
    }

    /// Called after a poll was cut by the daemon's client-side timeout. The connection may be mid-query, so the
    /// collector drops it; the next poll reconnects.
    fn abandon_connection(&mut self);

    /// Closes connections cleanly at shutdown.
    async fn close(&mut self);
}

/// Every metric descriptor a build of this crate can emit, for documentation and lint tests.
pub fn all_descriptors() -> Vec<&'static MetricDesc> {
    // With no engine compiled in, only the fleet's.
    #[allow(unused_mut)]
    let mut all: Vec<&'static MetricDesc> = fleet::DESCRIPTORS.to_vec();
    #[cfg(feature = "postgres")]
    {
        all.extend(postgres::descriptors());
        all.extend_from_slice(pgbouncer::DESCRIPTORS);
    }
    #[cfg(feature = "mysql")]
    all.extend(mysql::descriptors());
    #[cfg(feature = "mongodb")]
    all.extend(mongodb::descriptors());
    #[cfg(feature = "cassandra")]
    all.extend(cassandra::descriptors());
    #[cfg(feature = "dynamodb")]
    all.extend(dynamodb::descriptors());
    all
}
