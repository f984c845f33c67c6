//! MySQL and MariaDB collector: one persistent connection per target, one file per statement or system view.
//!
//! Once per connection: `SELECT @@version, @@version_comment` (flavour and version), one `SET SESSION`
//! with the server-side statement timeout of that flavour (MariaDB `max_statement_time`, MySQL
//! `max_execution_time`), bounded lock waits, UTC, and a `long_query_time` that keeps dbwatch out of the slow
//! query count, then `SHOW GLOBAL VARIABLES LIKE 'performance_schema'` (fixed until a restart). Per poll, in order, each statement chosen from what the server is, never tried and retried:
//!
//! 1. `SHOW GLOBAL STATUS WHERE ...` (throughput, slow queries, threads, buffer pool; the liveness probe)
//! 2. `SELECT @@GLOBAL.max_connections, ...` (max_connections, read_only, log_bin, binlog_format, server_id)
//! 3. `SHOW ALL SLAVES STATUS` (MariaDB) / `SHOW REPLICA STATUS` (MySQL 8.0.22+) / `SHOW SLAVE STATUS`
//! 4. `SHOW BINARY LOGS`, when log_bin is on
//! 5. the performance_schema statement totals, when performance_schema is on
//! 6. the heartbeat write or read, when configured
//! 7. the top digests, when `top_digests` > 0
//!
//! so at most 6 statements with digests off, 5 without a heartbeat. Works with a role that has PROCESS,
//! REPLICATION CLIENT (MariaDB: BINLOG MONITOR and SLAVE MONITOR) and SELECT on performance_schema.

pub mod binary_logs;
pub mod connection;
pub mod events_statements_summary_by_digest;
pub mod events_statements_summary_global_by_event_name;
pub mod global_status;
pub mod global_variables;
pub mod heartbeat;
pub mod information_schema_innodb;
pub mod query;
pub mod replica_status;
pub mod row;
pub mod server_version;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{CollectError, ErrorKind};
use crate::fleet;
use crate::metric::{bool_value, MetricDesc, MetricKind};
use crate::view::ViewRunner;
use crate::{Collected, Collector};

pub use connection::{MysqlConnectionOptions, MysqlTls, MysqlTlsMode};
pub use heartbeat::{HeartbeatOptions, HeartbeatTable, InvalidHeartbeatTable};

use connection::MysqlSession;

pub static CAPABILITY: MetricDesc = MetricDesc {
    name: "mysql_capability_available",
    help: "1 when the server offers the capability (performance_schema, statement_timeout), detected per connection",
    kind: MetricKind::Gauge,
    labels: &["capability"],
};

/// Every metric family this collector can emit.
pub fn descriptors() -> Vec<&'static MetricDesc> {
    [
        &[&CAPABILITY][..],
        server_version::DESCRIPTORS,
        global_status::DESCRIPTORS,
        global_variables::DESCRIPTORS,
        information_schema_innodb::DESCRIPTORS,
        replica_status::DESCRIPTORS,
        binary_logs::DESCRIPTORS,
        events_statements_summary_global_by_event_name::DESCRIPTORS,
        events_statements_summary_by_digest::DESCRIPTORS,
        heartbeat::DESCRIPTORS,
    ]
    .concat()
}

/// Which statements a target runs. Everything is on by default except the opt-in top digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlViews {
    /// The replica status statement on every target (a primary answers with no rows).
    pub replication: bool,
    /// `SHOW BINARY LOGS` when log_bin is on; it briefly takes the binary log's lock.
    pub binary_logs: bool,
    /// The performance_schema statement totals behind `db_query_latency_avg_seconds`.
    pub statement_latency: bool,
    /// Subtract the statements of dbwatch's own user from those totals; off by default, see
    /// [`events_statements_summary_global_by_event_name`].
    pub exclude_own_statements: bool,
    /// How many statement digests to export individually; 0 turns the digest view off.
    pub top_digests: usize,
    /// InnoDB's transactions, history list and deadlocks from information_schema (needs PROCESS).
    pub innodb: bool,
}

impl Default for MysqlViews {
    fn default() -> Self {
        MysqlViews {
            replication: true,
            binary_logs: true,
            statement_latency: true,
            exclude_own_statements: false,
            top_digests: 0,
            innodb: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MysqlOptions {
    pub connection: MysqlConnectionOptions,
    /// Server-side bound of each statement (and, plus one second, the client-side one). Keep it below the
    /// target's poll timeout.
    pub statement_timeout: Duration,
    pub views: MysqlViews,
    /// Off by default; see [`heartbeat`].
    pub heartbeat: Option<HeartbeatOptions>,
}

impl Default for MysqlOptions {
    fn default() -> Self {
        MysqlOptions {
            connection: MysqlConnectionOptions::default(),
            statement_timeout: Duration::from_secs(5),
            views: MysqlViews::default(),
            heartbeat: None,
        }
    }
}

/// The validated heartbeat settings.
#[derive(Debug, Clone)]
struct Heartbeat {
    table: HeartbeatTable,
    write: bool,
}

pub struct MysqlCollector {
    session: MysqlSession,
    views: MysqlViews,
    heartbeat: Option<Heartbeat>,
    status: global_status::StatusHistory,
    latency: events_statements_summary_global_by_event_name::LatencyHistory,
    top_digests: events_statements_summary_by_digest::TopDigests,
    digest_query: Arc<str>,
    view_log: crate::view_log::ViewLog,
}

impl MysqlCollector {
    /// Builds the collector; it does not connect until the first poll. An invalid heartbeat table turns the
    /// heartbeat off with a warning; validate it beforehand with [`HeartbeatTable::parse`].
    pub fn new(options: MysqlOptions) -> Self {
        let heartbeat = options.heartbeat.and_then(|heartbeat| {
            match HeartbeatTable::parse(&heartbeat.table) {
                Ok(table) => Some(Heartbeat {
                    table,
                    write: heartbeat.write,
                }),
                Err(error) => {
                    tracing::warn!(target = %options.connection.target, error = %error, "heartbeat off");
                    None
                }
            }
        });
        let top_digests =
            events_statements_summary_by_digest::TopDigests::new(options.views.top_digests);
        MysqlCollector {
            view_log: crate::view_log::ViewLog::new(&options.connection.target),
            digest_query: events_statements_summary_by_digest::query_for(top_digests.window()),
            top_digests,
            session: MysqlSession::new(options.connection, options.statement_timeout),
            views: options.views,
            heartbeat,
            status: Default::default(),
            latency: Default::default(),
        }
    }

    /// One pass over the target's views.
    async fn read_views(&mut self) -> Result<Collected, CollectError> {
        let target = self.session.target().to_owned();
        let timeout = self.session.client_timeout();
        let live = self.session.connection().await?;
        let connection = live.connection;
        let server = live.server;
        if live.fresh {
            // The server may have restarted underneath: start every interval afresh.
            self.latency.forget();
        }
        let mut collected = Collected::default();
        let mut run = ViewRunner::new(&mut collected.views, &mut self.view_log);
        let samples = &mut collected.samples;
        server.version.samples(samples);
        samples.push(
            CAPABILITY.sample_with(["statement_timeout"], bool_value(server.statement_timeout)),
        );

        let status = run
            .required(
                global_status::VIEW,
                global_status::fetch(&mut *connection, timeout),
            )
            .await?;
        let threads_connected = status.threads_connected;
        self.status.samples(status, Instant::now(), samples);

        let variables = run
            .view(
                global_variables::VIEW,
                global_variables::fetch(&mut *connection, timeout),
            )
            .await?;
        let max_connections = variables
            .as_ref()
            .map_or(f64::NAN, |variables| variables.max_connections);
        samples.extend(fleet::connection_samples(
            threads_connected,
            max_connections,
        ));
        if let Some(variables) = &variables {
            variables.samples(samples);
        }

        if self.views.innodb {
            if let Some(innodb) = run
                .view(
                    information_schema_innodb::VIEW,
                    information_schema_innodb::fetch(
                        &mut *connection,
                        server.version.flavour,
                        timeout,
                    ),
                )
                .await?
            {
                innodb.samples(samples);
            }
        }

        let mut channels = None;
        if self.views.replication {
            channels = run
                .view(
                    replica_status::VIEW,
                    replica_status::fetch(
                        &mut *connection,
                        server.version.replica_status_statement(),
                        timeout,
                    ),
                )
                .await?;
            if let Some(channels) = &channels {
                replica_status::samples(&target, channels, samples);
            }
        }

        let log_bin = variables
            .as_ref()
            .is_some_and(|variables| variables.log_bin);
        if self.views.binary_logs && log_bin {
            if let Some(logs) = run
                .view(
                    binary_logs::VIEW,
                    binary_logs::fetch(&mut *connection, timeout),
                )
                .await?
            {
                logs.samples(samples);
            }
        }

        if let Some(available) = server.performance_schema {
            samples.push(CAPABILITY.sample_with(["performance_schema"], bool_value(available)));
        }
        let performance_schema = server.performance_schema.unwrap_or(false);
        if self.views.statement_latency {
            let totals = if performance_schema {
                run.view(
                    events_statements_summary_global_by_event_name::VIEW,
                    events_statements_summary_global_by_event_name::fetch(
                        &mut *connection,
                        self.views.exclude_own_statements,
                        timeout,
                    ),
                )
                .await?
            } else {
                None
            };
            match totals {
                Some(totals) => self.latency.samples(totals, samples),
                None => self.latency.unknown(samples),
            }
        }

        if let Some(heartbeat) = &self.heartbeat {
            let read_only = variables
                .as_ref()
                .is_none_or(|variables| variables.read_only);
            if heartbeat.write && !read_only {
                run.view(
                    heartbeat::WRITE_VIEW,
                    heartbeat::write(&mut *connection, &heartbeat.table, timeout),
                )
                .await?;
            }
            if let Some(channels) = channels.as_ref().filter(|channels| !channels.is_empty()) {
                if let Some(lags) = run
                    .view(
                        heartbeat::READ_VIEW,
                        heartbeat::read(&mut *connection, &heartbeat.table, channels, timeout),
                    )
                    .await?
                {
                    heartbeat::samples(&lags, samples);
                }
            }
        }

        if self.views.top_digests > 0 && performance_schema {
            if let Some(ranked) = run
                .view(
                    events_statements_summary_by_digest::VIEW,
                    events_statements_summary_by_digest::fetch(
                        &mut *connection,
                        Arc::clone(&self.digest_query),
                        timeout,
                    ),
                )
                .await?
            {
                let chosen = self.top_digests.select(&ranked);
                events_statements_summary_by_digest::top_samples(&chosen, samples);
            }
        }

        Ok(collected)
    }
}

#[async_trait::async_trait]
impl Collector for MysqlCollector {
    fn db(&self) -> &'static str {
        "mysql"
    }

    async fn poll(&mut self) -> Result<Collected, CollectError> {
        self.read_views().await
    }

    fn drops_connection(&self, error: &CollectError) -> bool {
        // A cut statement leaves the connection mid-answer; a connection or credential failure leaves
        // nothing worth keeping. A failed query on a healthy connection keeps it.
        matches!(
            error.kind(),
            ErrorKind::Connect | ErrorKind::Auth | ErrorKind::Timeout
        )
    }

    fn abandon_connection(&mut self) {
        self.session.drop_connection();
    }

    async fn close(&mut self) {
        self.session.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_unique_and_follow_the_naming_rules() {
        let descriptors = descriptors();
        let mut names: Vec<&str> = descriptors.iter().map(|desc| desc.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate metric names");
        for desc in descriptors {
            assert!(desc.name.starts_with("mysql_"), "{}", desc.name);
            assert_eq!(
                desc.name.ends_with("_total"),
                desc.kind == MetricKind::Counter,
                "{}: counters and only counters end in _total",
                desc.name
            );
            assert!(
                !desc.help.is_empty() && !desc.help.ends_with('.'),
                "{}",
                desc.name
            );
            for label in desc.labels {
                assert!(
                    !["target", "db", "replica"].contains(label),
                    "{} uses a label the daemon or fleet sets",
                    desc.name
                );
            }
        }
    }

    #[test]
    fn the_collector_does_not_connect_when_built() {
        let collector = MysqlCollector::new(MysqlOptions {
            heartbeat: Some(HeartbeatOptions {
                table: "not a table".into(),
                write: true,
            }),
            ..MysqlOptions::default()
        });
        assert_eq!(collector.db(), "mysql");
        assert!(collector.heartbeat.is_none());
    }
}
