//! Faults that make dbwatch's alerts fire: `dbwatch-workload fault NAME start|clear`.
//!
//! Each start and clear is idempotent and leaves the fault in place when it returns (or cleared). Faults that
//! need a running client (held connections, slow queries, CloudWatch data points) start a detached holder,
//! this same binary as `fault NAME hold`, in its own process group, with its pid file and log under the state
//! directory; `clear` from any process stops it. The others change the server (replay paused, replica threads
//! stopped, a node stopped), so the server is the state; `replication-broken` on PostgreSQL also keeps the
//! replica's original `primary_conninfo` there, to put it back.
//!
//! - `replica-lag`: PostgreSQL `pg_wal_replay_pause()` on the replica; MariaDB `STOP SLAVE SQL_THREAD` (MySQL 8:
//!   `STOP REPLICA SQL_THREAD`, each flavour's statements chosen from `@@version`) on the
//!   replica (the IO thread keeps fetching and the relay log grows, but with the SQL thread stopped
//!   Seconds_Behind_Master is NULL: replication reads broken, not lagging). With `--delay`, MariaDB instead
//!   replays every event that much later (`CHANGE MASTER TO MASTER_DELAY`, MySQL 8 `SOURCE_DELAY`): both threads run and
//!   Seconds_Behind_Master climbs to the delay while writes flow, the shape of a replica that falls behind.
//! - `replication-broken`: MariaDB `STOP SLAVE`, MySQL 8 `STOP REPLICA`; PostgreSQL: the replica's `primary_conninfo` pointed at port 1
//!   (nothing listens), with a reload: the WAL receiver stops and keeps failing to connect, the replica stays up
//!   and answers read-only queries, as with a network partition.
//! - `connections`: idle connections held on the primary until `--fraction` of the usable maximum is in use
//!   (PostgreSQL: max_connections less the reserved slots, counting client backends; MariaDB: max_connections
//!   against Threads_connected). The account is a superuser, so it may use the reserved slots beyond.
//! - `slow-queries`: `--sessions` connections looping `pg_sleep`/`SLEEP` of `--sleep` each, so the statements'
//!   average latency rises far above 100 ms even with the workload's fast statements beside them.
//! - `dynamodb-throttling`: ThrottledRequests (GetItem, PutItem), ReadThrottleEvents and WriteThrottleEvents of
//!   `--table`, published with PutMetricData into the AWS/DynamoDB namespace as DynamoDB would: one Sum per
//!   minute. The start back-fills the last five minutes, since readers look a few minutes back (dbwatch reads
//!   the period ending two minutes ago); after a clear, the data already published stays in those minutes.
//! - `cassandra-node-down`: the fleet's node tool stops node `--cassandra-node` (2); clear starts it again and
//!   waits until both nodes see each other up.

mod cassandra;
mod connections;
mod holder;
mod replication;
mod slow_queries;
mod throttling;

use cassandra::*;
use connections::*;
use holder::*;
use replication::*;
use slow_queries::*;
use throttling::*;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

#[derive(Args, Debug, Clone)]
pub struct FaultArgs {
    #[arg(value_enum)]
    pub fault: Fault,

    #[arg(value_enum)]
    pub action: Action,

    /// Which database kind a replica-lag, replication-broken, connections or slow-queries fault targets.
    #[arg(long, value_enum, default_value_t = Target::All)]
    pub engine: Target,

    /// connections: the share of the usable connection maximum to fill.
    #[arg(long, value_name = "RATIO", default_value_t = 0.95)]
    pub fraction: f64,

    /// slow-queries: concurrent sleeping sessions per engine.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub sessions: u32,

    /// slow-queries: length of one sleep.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub sleep: Duration,

    /// dynamodb-throttling: the table whose throttling is published.
    #[arg(long, value_name = "NAME", default_value = "UserSessions")]
    pub table: String,

    /// dynamodb-throttling: throttled requests per second per operation.
    #[arg(long, value_name = "N", default_value_t = 5.0)]
    pub throttle_rate: f64,

    /// replica-lag on MariaDB or MySQL: hold every event back this long (MASTER_DELAY / SOURCE_DELAY, whole seconds) instead of
    /// stopping the SQL thread.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,

    /// cassandra-node-down: the node to stop.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cassandra_node: u32,

    /// Where holders' pid files and logs and saved settings live. Default: $DBWATCH_FLEET_DIR/faults, else
    /// .fleet/faults in the nearest directory above the current one that has a .fleet, else ./.fleet/faults.
    #[arg(long, value_name = "DIR", env = "DBWATCH_FAULT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// The PostgreSQL primary, as a superuser.
    #[arg(
        long,
        value_name = "URL",
        env = "DBWATCH_PG_ADMIN_URL",
        hide_env_values = true
    )]
    pub pg_primary_url: Option<String>,

    /// The PostgreSQL replica, as a superuser.
    #[arg(
        long,
        value_name = "URL",
        env = "DBWATCH_PG_REPLICA_ADMIN_URL",
        hide_env_values = true
    )]
    pub pg_replica_url: Option<String>,

    /// The MariaDB (or MySQL 8: DBWATCH_MYSQL8_ADMIN_URL) primary, as an administrator.
    #[arg(
        long,
        value_name = "URL",
        env = "DBWATCH_MYSQL_ADMIN_URL",
        hide_env_values = true
    )]
    pub mysql_primary_url: Option<String>,

    /// The MariaDB (or MySQL 8: DBWATCH_MYSQL8_REPLICA_ADMIN_URL) replica, as an administrator.
    #[arg(
        long,
        value_name = "URL",
        env = "DBWATCH_MYSQL_REPLICA_ADMIN_URL",
        hide_env_values = true
    )]
    pub mysql_replica_url: Option<String>,

    /// The DynamoDB/CloudWatch endpoint (moto locally); AWS itself when unset.
    #[arg(long, value_name = "URL", env = "DBWATCH_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// The fleet's Cassandra node tool (`node start|stop|status N`).
    #[arg(long, value_name = "PATH", env = "DBWATCH_CASSANDRA_NODE_CTL")]
    pub cassandra_node_ctl: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ReplicaLag,
    ReplicationBroken,
    Connections,
    SlowQueries,
    DynamodbThrottling,
    CassandraNodeDown,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::ReplicaLag => "replica-lag",
            Fault::ReplicationBroken => "replication-broken",
            Fault::Connections => "connections",
            Fault::SlowQueries => "slow-queries",
            Fault::DynamodbThrottling => "dynamodb-throttling",
            Fault::CassandraNodeDown => "cassandra-node-down",
        }
    }

    /// The application_name of the holder's PostgreSQL sessions, so they can be told apart and ended.
    fn application_name(self) -> String {
        format!("dbwatch-fault-{}", self.name())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Clear,
    /// The detached holder itself (started by `start`).
    #[value(hide = true)]
    Hold,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Postgres,
    Mysql,
    All,
}

impl Target {
    fn postgres(self) -> bool {
        matches!(self, Target::Postgres | Target::All)
    }

    fn mysql(self) -> bool {
        matches!(self, Target::Mysql | Target::All)
    }
}

/// Connect and statement deadline of every fault operation.
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn main(args: &FaultArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.fraction.is_finite() && args.fraction > 0.0 && args.fraction <= 1.5,
        "--fraction must be above 0 and at most 1.5"
    );
    anyhow::ensure!(
        (1..=500).contains(&args.sessions),
        "--sessions must be 1 to 500"
    );
    anyhow::ensure!(!args.sleep.is_zero(), "--sleep must be longer than 0");
    anyhow::ensure!(
        args.throttle_rate.is_finite() && args.throttle_rate > 0.0,
        "--throttle-rate must be above 0"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(dispatch(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn dispatch(args: &FaultArgs) -> anyhow::Result<()> {
    let fault = args.fault;
    match (fault, args.action) {
        (Fault::Connections | Fault::SlowQueries | Fault::DynamodbThrottling, Action::Start) => {
            start_holder(args).await
        }
        (Fault::Connections | Fault::SlowQueries | Fault::DynamodbThrottling, Action::Clear) => {
            clear_holder(args).await
        }
        (Fault::Connections, Action::Hold) => hold_connections(args).await,
        (Fault::SlowQueries, Action::Hold) => hold_slow_queries(args).await,
        (Fault::DynamodbThrottling, Action::Hold) => hold_throttling(args).await,
        (_, Action::Hold) => anyhow::bail!("{} has no holder", fault.name()),
        (Fault::ReplicaLag, Action::Start) => replica_lag(args, true).await,
        (Fault::ReplicaLag, Action::Clear) => replica_lag(args, false).await,
        (Fault::ReplicationBroken, Action::Start) => replication_broken(args, true).await,
        (Fault::ReplicationBroken, Action::Clear) => replication_broken(args, false).await,
        (Fault::CassandraNodeDown, Action::Start) => cassandra_node(args, "stop"),
        (Fault::CassandraNodeDown, Action::Clear) => cassandra_node(args, "start"),
    }
}

fn say(message: &str) {
    println!("{message}");
}

fn url<'a>(value: &'a Option<String>, flag: &str, env: &str) -> anyhow::Result<&'a str> {
    value.as_deref().filter(|url| !url.is_empty()).with_context(|| {
        format!(
            "no {flag}: pass it or set {env} (eval \"$(deploy/local/fleet env)\" sets it for the local fleet)"
        )
    })
}

async fn pg_connect(url: &str, application_name: &str) -> anyhow::Result<PgConnection> {
    let options = PgConnectOptions::from_str(url)
        .context("not a valid PostgreSQL URL")?
        .application_name(application_name);
    let where_ = format!("{}:{}", options.get_host(), options.get_port());
    tokio::time::timeout(TIMEOUT, options.connect())
        .await
        .with_context(|| {
            format!("connecting to PostgreSQL at {where_}: no answer within {TIMEOUT:?}")
        })?
        .with_context(|| format!("connecting to PostgreSQL at {where_}"))
}

async fn mysql_connect(url: &str) -> anyhow::Result<MySqlConnection> {
    let options = MySqlConnectOptions::from_str(url).context("not a valid MySQL URL")?;
    let where_ = format!("{}:{}", options.get_host(), options.get_port());
    tokio::time::timeout(TIMEOUT, options.connect())
        .await
        .with_context(|| format!("connecting to MySQL at {where_}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("connecting to MySQL at {where_}"))
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fill_up_to_the_fraction() {
        // 57 usable, 10 in use: 95 % is 54.15, so 55 in use, 45 more.
        assert_eq!(connections_to_open(0.95, 57.0, 10.0), 45);
        assert_eq!(connections_to_open(0.5, 60.0, 40.0), 0);
        assert_eq!(connections_to_open(1.0, 60.0, 0.0), 60);
    }

    #[test]
    fn the_dead_conninfo_keeps_everything_but_the_port() {
        let conninfo =
            "user=replicator passfile='/x/.pgpass' host=127.0.0.1 port=15432 sslmode=prefer";
        assert_eq!(
            dead_conninfo(conninfo),
            "user=replicator passfile='/x/.pgpass' host=127.0.0.1 sslmode=prefer port=1"
        );
        assert_eq!(dead_conninfo("host=h"), "host=h port=1");
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(quote_literal("a'b"), "'a''b'");
    }

    #[test]
    fn mysql_8_replica_lag_uses_the_replica_and_source_words() {
        assert_eq!(mysql_replica_lag(true, None), ["STOP REPLICA SQL_THREAD"]);
        assert_eq!(
            mysql_replica_lag(true, Some(Duration::from_secs(30))),
            [
                "STOP REPLICA",
                "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 30",
                "START REPLICA"
            ]
        );
        assert_eq!(
            mysql_replica_lag(false, Some(Duration::from_secs(30))),
            mysql_replica_lag(false, None)
        );
        assert_eq!(
            MysqlFlavour::from_version("10.11.19-MariaDB-0+deb12u1-log"),
            MysqlFlavour::MariaDb
        );
        assert_eq!(MysqlFlavour::from_version("8.0.31"), MysqlFlavour::Mysql);
        assert_eq!(
            MysqlFlavour::Mysql.replication_threads(false),
            "STOP REPLICA"
        );
        assert_eq!(
            MysqlFlavour::MariaDb.replication_threads(false),
            "STOP SLAVE"
        );
    }

    #[test]
    fn mariadb_replica_lag_stops_the_sql_thread_or_delays_and_a_clear_undoes_both() {
        assert_eq!(mariadb_replica_lag(true, None), ["STOP SLAVE SQL_THREAD"]);
        assert_eq!(
            mariadb_replica_lag(true, Some(Duration::from_millis(30_500))),
            [
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_DELAY = 30",
                "START SLAVE"
            ]
        );
        let clear = [
            "STOP SLAVE",
            "CHANGE MASTER TO MASTER_DELAY = 0",
            "START SLAVE",
        ];
        assert_eq!(mariadb_replica_lag(false, None), clear);
        assert_eq!(
            mariadb_replica_lag(false, Some(Duration::from_secs(30))),
            clear
        );
    }

    #[test]
    fn the_state_dir_can_be_named() {
        let args = FaultArgs {
            fault: Fault::Connections,
            action: Action::Start,
            engine: Target::All,
            fraction: 0.95,
            sessions: 1,
            sleep: Duration::from_secs(1),
            table: "T".into(),
            throttle_rate: 1.0,
            delay: None,
            cassandra_node: 2,
            state_dir: Some(PathBuf::from("/tmp/x")),
            pg_primary_url: None,
            pg_replica_url: None,
            mysql_primary_url: None,
            mysql_replica_url: None,
            aws_endpoint_url: None,
            cassandra_node_ctl: None,
        };
        assert_eq!(state_dir(&args), PathBuf::from("/tmp/x"));
        assert_eq!(
            pid_file(&state_dir(&args), Fault::Connections),
            PathBuf::from("/tmp/x/connections.pid")
        );
    }
}
