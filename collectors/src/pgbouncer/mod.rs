//! PgBouncer collector, through its admin console (`pgbouncer` database, simple query protocol only).
//!
//! Per poll: `SHOW POOLS` (clients active and waiting, server connections, longest wait), `SHOW STATS_TOTALS`
//! (queries and time, for the interval's average latency) and `SHOW CONFIG` for `max_client_conn`, the limit the
//! fleet signals measure client connections against.

pub mod show_config;
pub mod show_pools;
pub mod show_stats_totals;

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::CollectError;
use crate::fleet;
use crate::metric::MetricDesc;
use crate::postgres::connection::{PgConnectionOptions, PgSession, SessionSettings};
use crate::view::ViewRunner;
use crate::{Collected, Collector};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &show_pools::CLIENTS,
    &show_pools::SERVERS,
    &show_pools::MAX_WAIT,
    &show_stats_totals::QUERIES,
    &show_stats_totals::QUERY_SECONDS,
    &show_stats_totals::WAIT_SECONDS,
    &show_config::MAX_CLIENT_CONNECTIONS,
];

pub struct PgBouncerCollector {
    session: PgSession,
    previous_totals: Option<(f64, f64)>,
    view_log: crate::view_log::ViewLog,
}

impl PgBouncerCollector {
    pub fn new(connection: PgConnectionOptions) -> Self {
        PgBouncerCollector {
            view_log: crate::view_log::ViewLog::new(&connection.target),
            session: PgSession::new(connection, SessionSettings::PgBouncerAdmin),
            previous_totals: None,
        }
    }

    /// One pass over the target's views.
    async fn read_views(&mut self) -> Result<Collected, CollectError> {
        let (connection, fresh) = self.session.connection().await?;
        if fresh {
            self.previous_totals = None;
        }
        let mut collected = Collected::default();
        let mut run = ViewRunner::new(&mut collected.views, &mut self.view_log);
        let pools = run
            .required(show_pools::VIEW, show_pools::fetch(connection))
            .await?;
        let config = run
            .required(show_config::VIEW, show_config::fetch(connection))
            .await?;
        let totals = run
            .view(
                show_stats_totals::VIEW,
                show_stats_totals::fetch(connection),
            )
            .await?;

        let samples = &mut collected.samples;
        let mut clients = 0.0;
        for pool in &pools {
            pool.samples(samples);
            clients += pool.clients();
        }
        config.samples(samples);
        samples.extend(fleet::connection_samples(clients, config.max_client_conn));
        let latency = match &totals {
            Some(totals) => {
                let current = show_stats_totals::sum(totals);
                let latency = fleet::average_latency(self.previous_totals, current);
                self.previous_totals = Some(current);
                for database in totals {
                    database.samples(samples);
                }
                latency
            }
            None => f64::NAN,
        };
        samples.push(fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(latency));
        Ok(collected)
    }
}

#[async_trait::async_trait]
impl Collector for PgBouncerCollector {
    fn db(&self) -> &'static str {
        "pgbouncer"
    }

    async fn poll(&mut self) -> Result<Collected, CollectError> {
        self.read_views().await
    }

    fn abandon_connection(&mut self) {
        self.session.drop_connection();
    }

    async fn close(&mut self) {
        self.session.close().await;
    }
}

/// A column of an admin-console row as text. The console answers in text format and its column types have
/// changed across versions, so values are read unchecked as text and parsed here.
fn text(row: &PgRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get_unchecked::<Option<String>, _>(column)
}

/// A numeric column; absent columns (older PgBouncer) read as `None`.
fn number(row: &PgRow, column: &str) -> Result<Option<f64>, sqlx::Error> {
    match row.try_get_unchecked::<Option<String>, _>(column) {
        Ok(Some(value)) => {
            value
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|error| sqlx::Error::ColumnDecode {
                    index: column.to_owned(),
                    source: Box::new(error),
                })
        }
        Ok(None) | Err(sqlx::Error::ColumnNotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}
