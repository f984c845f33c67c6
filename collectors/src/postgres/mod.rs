//! PostgreSQL collector: one persistent connection per target, one file per system view.
//!
//! Per poll, in order: `pg_stat_activity` (also the liveness probe), `pg_stat_database`, `pg_stat_statements`
//! (totals, and the top statements when asked), replication from whichever side the server is on,
//! `pg_stat_archiver` and the checkpointer. The server version and whether pg_stat_statements is installed are
//! read once per connection. Every statement runs under the session's `statement_timeout` and `lock_timeout`,
//! sent as startup options so they cost no round trip. Works with a role that has only `pg_monitor`.

pub mod connection;
pub mod pg_database;
pub mod pg_locks;
pub mod pg_stat_activity;
pub mod pg_stat_archiver;
pub mod pg_stat_checkpointer;
pub mod pg_stat_database;
pub mod pg_stat_replication;
pub mod pg_stat_statements;
pub mod pg_stat_wal_receiver;

use std::time::Duration;

use crate::error::CollectError;
use crate::metric::{MetricDesc, MetricKind};
use crate::view::ViewRunner;
use crate::{Collected, Collector};

pub use connection::{PgConnectionOptions, PgTls, PgTlsMode};
use connection::{PgSession, SessionSettings};

pub static SERVER_VERSION: MetricDesc = MetricDesc {
    name: "pg_server_version_num",
    help: "The server's version as server_version_num, e.g. 150008",
    kind: MetricKind::Gauge,
    labels: &[],
};

/// Every metric family this collector can emit.
pub fn descriptors() -> Vec<&'static MetricDesc> {
    [
        &[&SERVER_VERSION][..],
        pg_stat_activity::DESCRIPTORS,
        pg_locks::DESCRIPTORS,
        pg_database::DESCRIPTORS,
        pg_stat_database::DESCRIPTORS,
        pg_stat_statements::DESCRIPTORS,
        pg_stat_replication::DESCRIPTORS,
        pg_stat_wal_receiver::DESCRIPTORS,
        pg_stat_archiver::DESCRIPTORS,
        pg_stat_checkpointer::DESCRIPTORS,
    ]
    .concat()
}

/// Which views a target reads. Everything the seed asks for is on by default; top statements are opt-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresViews {
    pub database: bool,
    pub statements: bool,
    /// How many statements to export individually; 0 turns the per-statement view off.
    pub top_statements: usize,
    pub replication: bool,
    pub archiver: bool,
    pub checkpointer: bool,
    /// Transaction-ID and multixact wraparound ages per database (`pg_database`).
    pub wraparound: bool,
    /// Sessions blocked on locks and their blocking roots (`pg_locks`, `pg_blocking_pids`).
    pub locks: bool,
}

impl Default for PostgresViews {
    fn default() -> Self {
        PostgresViews {
            database: true,
            statements: true,
            top_statements: 0,
            replication: true,
            archiver: true,
            checkpointer: true,
            wraparound: true,
            locks: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub connection: PgConnectionOptions,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub views: PostgresViews,
}

/// Facts learnt once per connection.
#[derive(Debug, Clone, Copy)]
struct ServerInfo {
    version_num: u32,
    statements_installed: bool,
}

pub struct PostgresCollector {
    session: PgSession,
    views: PostgresViews,
    server: Option<ServerInfo>,
    statements: pg_stat_statements::StatementsState,
    top_statements: pg_stat_statements::TopStatements,
    view_log: crate::view_log::ViewLog,
}

impl PostgresCollector {
    /// Builds the collector; it does not connect until the first poll.
    pub fn new(options: PostgresOptions) -> Self {
        let settings = SessionSettings::Postgres {
            statement_timeout: options.statement_timeout,
            lock_timeout: options.lock_timeout,
        };
        PostgresCollector {
            view_log: crate::view_log::ViewLog::new(&options.connection.target),
            session: PgSession::new(options.connection, settings),
            top_statements: pg_stat_statements::TopStatements::new(options.views.top_statements),
            views: options.views,
            server: None,
            statements: Default::default(),
        }
    }

    /// One pass over the target's views.
    async fn read_views(&mut self) -> Result<Collected, CollectError> {
        let target = self.session.target().to_owned();
        let (connection, fresh) = self.session.connection().await?;
        let mut collected = Collected::default();
        let mut run = ViewRunner::new(&mut collected.views, &mut self.view_log);

        if fresh || self.server.is_none() {
            self.statements.forget();
            let version_num = connection.server_version_num().unwrap_or(0);
            let statements_installed = run
                .view("server_info", pg_stat_statements::available(connection))
                .await?
                .unwrap_or_default();
            self.server = Some(ServerInfo {
                version_num,
                statements_installed,
            });
        }
        let Some(server) = self.server else {
            return Err(CollectError::Decode {
                view: "server_info",
                source: "server facts missing after detection".into(),
            });
        };
        let samples = &mut collected.samples;
        samples.push(SERVER_VERSION.sample(f64::from(server.version_num)));

        // The liveness probe: if it fails, the target is not readable at all.
        let activity = run
            .required(pg_stat_activity::VIEW, pg_stat_activity::fetch(connection))
            .await?;
        activity.samples(samples);

        if self.views.locks {
            if let Some(blocking) = run
                .view(pg_locks::VIEW, pg_locks::fetch(connection))
                .await?
            {
                blocking.samples(samples);
            }
        }

        if self.views.wraparound {
            if let Some(wraparound) = run
                .view(pg_database::VIEW, pg_database::fetch(connection))
                .await?
            {
                wraparound.samples(samples);
            }
        }

        if self.views.database {
            if let Some(databases) = run
                .view(pg_stat_database::VIEW, pg_stat_database::fetch(connection))
                .await?
            {
                for database in &databases {
                    database.samples(samples);
                }
            }
        }

        if self.views.statements {
            samples.push(
                pg_stat_statements::AVAILABLE
                    .sample(crate::metric::bool_value(server.statements_installed)),
            );
            if server.statements_installed {
                if let Some(totals) = run
                    .view(
                        pg_stat_statements::VIEW,
                        pg_stat_statements::fetch(connection),
                    )
                    .await?
                {
                    self.statements.samples(&totals, samples);
                }
                if self.views.top_statements > 0 {
                    let window = self.top_statements.window();
                    if let Some(ranked) = run
                        .view(
                            pg_stat_statements::TOP_VIEW,
                            pg_stat_statements::fetch_top(connection, window),
                        )
                        .await?
                    {
                        let chosen = self.top_statements.select(&ranked);
                        pg_stat_statements::top_samples(&chosen, samples);
                    }
                }
            }
        }

        if self.views.replication {
            if activity.in_recovery {
                if let Some(status) = run
                    .view(
                        pg_stat_wal_receiver::VIEW,
                        pg_stat_wal_receiver::fetch(connection),
                    )
                    .await?
                {
                    status.samples(&target, samples);
                }
            } else if let Some(standbys) = run
                .view(
                    pg_stat_replication::VIEW,
                    pg_stat_replication::fetch(connection),
                )
                .await?
            {
                for standby in &standbys {
                    standby.samples(samples);
                }
            }
        }

        if self.views.archiver {
            if let Some(archiver) = run
                .view(pg_stat_archiver::VIEW, pg_stat_archiver::fetch(connection))
                .await?
            {
                archiver.samples(samples);
            }
        }

        if self.views.checkpointer {
            if let Some(checkpoints) = run
                .view(
                    pg_stat_checkpointer::VIEW,
                    pg_stat_checkpointer::fetch(connection, server.version_num),
                )
                .await?
            {
                samples.extend(checkpoints);
            }
        }

        Ok(collected)
    }
}

#[async_trait::async_trait]
impl Collector for PostgresCollector {
    fn db(&self) -> &'static str {
        "postgres"
    }

    async fn poll(&mut self) -> Result<Collected, CollectError> {
        self.read_views().await
    }

    fn abandon_connection(&mut self) {
        self.session.drop_connection();
        self.server = None;
    }

    async fn close(&mut self) {
        self.session.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_unique() {
        let mut names: Vec<&str> = descriptors().iter().map(|desc| desc.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
