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

// ---------------------------------------------------------------------------------------------------------------
// connections

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

/// Connections to open so that `fraction` of `usable` are in use, `in_use` being open already.
pub fn connections_to_open(fraction: f64, usable: f64, in_use: f64) -> u32 {
    let wanted = (fraction * usable).ceil();
    (wanted - in_use).clamp(0.0, 1000.0) as u32
}

/// The holder of `connections`: opens the connections, says `ready`, holds them until SIGTERM.
async fn hold_connections(args: &FaultArgs) -> anyhow::Result<()> {
    let application_name = Fault::Connections.application_name();
    let mut pg = Vec::new();
    let mut mysql = Vec::new();
    let mut report = Vec::new();
    if args.engine.postgres() {
        let url = url(
            &args.pg_primary_url,
            "--pg-primary-url",
            "DBWATCH_PG_ADMIN_URL",
        )?;
        let mut first = pg_connect(url, &application_name).await?;
        let row = sqlx::raw_sql(
            "SELECT current_setting('max_connections')::float8
                  - current_setting('superuser_reserved_connections')::float8
                  - COALESCE(current_setting('reserved_connections', true), '0')::float8,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8",
        )
        .fetch_one(&mut first)
        .await
        .context("reading PostgreSQL's connection limit")?;
        let (usable, in_use): (f64, f64) = (row.try_get(0)?, row.try_get(1)?);
        // `first` is already one of the in_use connections.
        let more = connections_to_open(args.fraction, usable, in_use);
        pg.push(first);
        for _ in 0..more {
            pg.push(pg_connect(url, &application_name).await?);
        }
        report.push(format!(
            "postgres: holding {} connections ({} in use of {usable} before)",
            pg.len(),
            in_use - 1.0
        ));
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_primary_url,
            "--mysql-primary-url",
            "DBWATCH_MYSQL_ADMIN_URL",
        )?;
        let mut first = mysql_connect(url).await?;
        // MySQL 8 has no information_schema.GLOBAL_STATUS any more (performance_schema's replaces it);
        // MariaDB keeps it, and has the other only with performance_schema on.
        let statement = match MysqlFlavour::of(&mut first).await? {
            MysqlFlavour::MariaDb => {
                "SELECT CAST(@@global.max_connections AS DOUBLE),
                        CAST((SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
                               WHERE VARIABLE_NAME = 'THREADS_CONNECTED') AS DOUBLE)"
            }
            MysqlFlavour::Mysql => {
                "SELECT CAST(@@global.max_connections AS DOUBLE),
                        CAST((SELECT VARIABLE_VALUE FROM performance_schema.global_status
                               WHERE VARIABLE_NAME = 'Threads_connected') AS DOUBLE)"
            }
        };
        let row = sqlx::raw_sql(statement)
            .fetch_one(&mut first)
            .await
            .context("reading the MySQL server's connection limit")?;
        let (usable, in_use): (f64, f64) = (row.try_get(0)?, row.try_get(1)?);
        let more = connections_to_open(args.fraction, usable, in_use);
        mysql.push(first);
        for _ in 0..more {
            mysql.push(mysql_connect(url).await?);
        }
        report.push(format!(
            "mysql: holding {} connections ({} in use of {usable} before)",
            mysql.len(),
            in_use - 1.0
        ));
    }
    ready(&report.join("; "));
    shutdown_signal().await;
    for connection in pg {
        let _ = connection.close().await;
    }
    for connection in mysql {
        let _ = connection.close().await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// slow queries

/// Marks the MariaDB sleeps in the process list, so a clear can end the ones still running.
const MYSQL_SLEEP_TAG: &str = "dbwatch-fault-slow-queries";

async fn hold_slow_queries(args: &FaultArgs) -> anyhow::Result<()> {
    let application_name = Fault::SlowQueries.application_name();
    let sleep = args.sleep.as_secs_f64();
    let mut sessions = tokio::task::JoinSet::new();
    if args.engine.postgres() {
        let url = url(
            &args.pg_primary_url,
            "--pg-primary-url",
            "DBWATCH_PG_ADMIN_URL",
        )?;
        for _ in 0..args.sessions {
            let mut connection = pg_connect(url, &application_name).await?;
            sessions.spawn(async move {
                loop {
                    if let Err(error) = sqlx::query("SELECT pg_sleep($1)")
                        .bind(sleep)
                        .execute(&mut connection)
                        .await
                    {
                        tracing::warn!("postgres: pg_sleep failed: {error}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_primary_url,
            "--mysql-primary-url",
            "DBWATCH_MYSQL_ADMIN_URL",
        )?;
        for _ in 0..args.sessions {
            let mut connection = mysql_connect(url).await?;
            sessions.spawn(async move {
                loop {
                    // The comment is MYSQL_SLEEP_TAG.
                    let statement = sqlx::query("SELECT /* dbwatch-fault-slow-queries */ SLEEP(?)");
                    if let Err(error) = statement.bind(sleep).execute(&mut connection).await {
                        tracing::warn!("mysql: SLEEP failed: {error}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
    }
    ready(&format!(
        "{} sessions sleeping {} per statement",
        sessions.len(),
        humantime::format_duration(args.sleep)
    ));
    shutdown_signal().await;
    sessions.abort_all();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// DynamoDB throttling

/// The data points one minute of throttling publishes, as (metric, operation dimension or none).
pub const THROTTLE_METRICS: [(&str, Option<&str>); 4] = [
    ("ThrottledRequests", Some("GetItem")),
    ("ThrottledRequests", Some("PutItem")),
    ("ReadThrottleEvents", None),
    ("WriteThrottleEvents", None),
];

/// Minutes back-filled at start.
const BACKFILL_MINUTES: i64 = 5;

async fn publish_minute(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    table: &str,
    minute_start: i64,
    per_minute: f64,
) -> anyhow::Result<()> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let mut request = cloudwatch.put_metric_data().namespace("AWS/DynamoDB");
    for (metric, operation) in THROTTLE_METRICS {
        let mut dimensions = vec![Dimension::builder().name("TableName").value(table).build()];
        if let Some(operation) = operation {
            dimensions.push(
                Dimension::builder()
                    .name("Operation")
                    .value(operation)
                    .build(),
            );
        }
        request = request.metric_data(
            MetricDatum::builder()
                .metric_name(metric)
                .set_dimensions(Some(dimensions))
                .timestamp(DateTime::from_secs(minute_start + 30))
                .value(per_minute)
                .unit(StandardUnit::Count)
                .build(),
        );
    }
    request
        .send()
        .await
        .map_err(|error| {
            anyhow::anyhow!("{}", aws_sdk_cloudwatch::error::DisplayErrorContext(error))
        })
        .context("PutMetricData")?;
    Ok(())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

async fn hold_throttling(args: &FaultArgs) -> anyhow::Result<()> {
    let config = crate::dynamodb::sdk_config(args.aws_endpoint_url.as_deref(), TIMEOUT).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let per_minute = args.throttle_rate * 60.0;
    let current = now_secs() - now_secs().rem_euclid(60);
    for minutes_back in (0..=BACKFILL_MINUTES).rev() {
        publish_minute(
            &cloudwatch,
            &args.table,
            current - minutes_back * 60,
            per_minute,
        )
        .await?;
    }
    ready(&format!(
        "publishing {}/s throttled requests of {} every minute",
        args.throttle_rate, args.table
    ));
    let mut published = current;
    loop {
        let next = published + 60;
        let wait = Duration::from_secs((next - now_secs()).max(0) as u64 + 1);
        tokio::select! {
            _ = shutdown_signal() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        match publish_minute(&cloudwatch, &args.table, next, per_minute).await {
            Ok(()) => published = next,
            Err(error) => tracing::warn!("dynamodb-throttling: {error:#}; retrying"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// holders: start, clear, state

fn state_dir(args: &FaultArgs) -> PathBuf {
    if let Some(dir) = &args.state_dir {
        return dir.clone();
    }
    if let Some(fleet) = std::env::var_os("DBWATCH_FLEET_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(fleet).join("faults");
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|dir| dir.join(".fleet").is_dir())
        .unwrap_or(&cwd)
        .join(".fleet")
        .join("faults")
}

fn pid_file(dir: &Path, fault: Fault) -> PathBuf {
    dir.join(format!("{}.pid", fault.name()))
}

/// The holder's pid when the pid file names a live holder of this fault (not a recycled pid).
fn live_holder(dir: &Path, fault: Fault) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file(dir, fault))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    let is_holder = words.iter().any(|word| *word == b"hold")
        && words.iter().any(|word| *word == fault.name().as_bytes());
    is_holder.then_some(pid)
}

/// Tells the `start` that spawned this holder that the fault is in place.
fn ready(report: &str) {
    tracing::info!("{report}");
    println!("ready {report}");
}

async fn start_holder(args: &FaultArgs) -> anyhow::Result<()> {
    let fault = args.fault;
    let dir = state_dir(args);
    if let Some(pid) = live_holder(&dir, fault) {
        say(&format!(
            "{}: already started (holder pid {pid})",
            fault.name()
        ));
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join(format!("{}.log", fault.name()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut command = Command::new(exe);
    command
        .args(["fault", fault.name(), "hold"])
        .args(["--engine", &format!("{:?}", args.engine).to_lowercase()])
        .args(["--fraction", &args.fraction.to_string()])
        .args(["--sessions", &args.sessions.to_string()])
        .args([
            "--sleep",
            &humantime::format_duration(args.sleep).to_string(),
        ])
        .args(["--table", &args.table])
        .args(["--throttle-rate", &args.throttle_rate.to_string()])
        .arg("--state-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .env("NO_COLOR", "1");
    // URLs travel in the environment, never on a command line every user can read in ps.
    for (value, env) in [
        (&args.pg_primary_url, "DBWATCH_PG_ADMIN_URL"),
        (&args.mysql_primary_url, "DBWATCH_MYSQL_ADMIN_URL"),
        (&args.aws_endpoint_url, "DBWATCH_AWS_ENDPOINT_URL"),
    ] {
        if let Some(value) = value {
            command.env(env, value);
        }
    }
    // Its own process group: a Ctrl-C in the terminal that ran `start` does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("starting the holder")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("the holder's output")?;
    // The holder says `ready ...` once the fault is in place; a blocking read, so on a thread of its own.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let outcome = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = sender.send(outcome);
    });
    let answer =
        tokio::task::spawn_blocking(move || receiver.recv_timeout(Duration::from_secs(120)))
            .await
            .context("waiting for the holder")?;
    match answer {
        Ok(Ok(line)) if line.starts_with("ready") => {
            std::fs::write(pid_file(&dir, fault), format!("{pid}\n"))
                .with_context(|| format!("writing the pid file in {}", dir.display()))?;
            say(&format!(
                "{}: started (holder pid {pid}, log {}): {}",
                fault.name(),
                log_path.display(),
                line.trim_start_matches("ready").trim()
            ));
            Ok(())
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let mut tail = String::new();
            if let Ok(mut file) = std::fs::File::open(&log_path) {
                let _ = file.read_to_string(&mut tail);
            }
            let tail: Vec<&str> = tail
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let why = match other {
                Err(_) => "not ready within 120s".to_owned(),
                _ => "exited before it was ready".to_owned(),
            };
            anyhow::bail!(
                "{}: the holder {why} (log {}):\n{}",
                fault.name(),
                log_path.display(),
                tail.join("\n")
            )
        }
    }
}

async fn clear_holder(args: &FaultArgs) -> anyhow::Result<()> {
    let fault = args.fault;
    let dir = state_dir(args);
    if let Some(pid) = live_holder(&dir, fault) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        say(&format!("{}: holder pid {pid} stopped", fault.name()));
    } else {
        say(&format!("{}: no holder running", fault.name()));
    }
    let _ = std::fs::remove_file(pid_file(&dir, fault));
    // A sleep in progress outlives its client's exit on the server: end those now, so that clear means clear.
    if fault == Fault::SlowQueries || fault == Fault::Connections {
        if args.engine.postgres() {
            let url = url(
                &args.pg_primary_url,
                "--pg-primary-url",
                "DBWATCH_PG_ADMIN_URL",
            )?;
            let mut connection = pg_connect(url, "dbwatch-workload").await?;
            sqlx::query(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(fault.application_name())
            .execute(&mut connection)
            .await
            .context("ending the fault's PostgreSQL sessions")?;
            wait_until_zero_pg(&mut connection, &fault.application_name()).await?;
        }
        if args.engine.mysql() && fault == Fault::SlowQueries {
            let url = url(
                &args.mysql_primary_url,
                "--mysql-primary-url",
                "DBWATCH_MYSQL_ADMIN_URL",
            )?;
            let mut connection = mysql_connect(url).await?;
            let rows = sqlx::query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND ID <> CONNECTION_ID()")
                .bind(format!("%{MYSQL_SLEEP_TAG}%"))
                .fetch_all(&mut connection)
                .await
                .context("finding the fault's MySQL sleeps")?;
            for row in rows {
                // MariaDB types PROCESSLIST.ID as a signed BIGINT, MySQL 8 as BIGINT UNSIGNED.
                let id: u64 = match row.try_get::<i64, _>(0) {
                    Ok(id) => u64::try_from(id).context("a negative process id")?,
                    Err(_) => row.try_get(0)?,
                };
                // Gone in between is fine.
                // An integer from the server: nothing to escape.
                let kill = sqlx::AssertSqlSafe(format!("KILL QUERY {id}"));
                let _ = sqlx::raw_sql(kill).execute(&mut connection).await;
            }
        }
    }
    say(&format!("{}: cleared", fault.name()));
    Ok(())
}

async fn wait_until_zero_pg(
    connection: &mut PgConnection,
    application_name: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(application_name)
                .fetch_one(&mut *connection)
                .await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{left} sessions named {application_name} still open after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// replication

async fn replica_lag(args: &FaultArgs, start: bool) -> anyhow::Result<()> {
    if args.engine.postgres() {
        let url = url(
            &args.pg_replica_url,
            "--pg-replica-url",
            "DBWATCH_PG_REPLICA_ADMIN_URL",
        )?;
        let mut replica = pg_connect(url, "dbwatch-workload").await?;
        let (call, statement) = if start {
            ("pg_wal_replay_pause()", "SELECT pg_wal_replay_pause()")
        } else {
            ("pg_wal_replay_resume()", "SELECT pg_wal_replay_resume()")
        };
        sqlx::raw_sql(statement)
            .execute(&mut replica)
            .await
            .with_context(|| format!("postgres replica: {call}"))?;
        say(&format!("replica-lag: postgres replica {call}"));
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_replica_url,
            "--mysql-replica-url",
            "DBWATCH_MYSQL_REPLICA_ADMIN_URL",
        )?;
        let mut replica = mysql_connect(url).await?;
        let statements = match MysqlFlavour::of(&mut replica).await? {
            MysqlFlavour::MariaDb => mariadb_replica_lag(start, args.delay),
            MysqlFlavour::Mysql => mysql_replica_lag(start, args.delay),
        };
        for statement in &statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut replica)
                .await
                .with_context(|| format!("mysql replica: {statement}"))?;
        }
        say(&format!(
            "replica-lag: mysql replica {}",
            statements.join("; ")
        ));
    }
    Ok(())
}

/// The statements that start or clear replica lag on a MariaDB replica. A clear undoes either way of
/// starting it: MariaDB refuses CHANGE MASTER while a replica thread runs, hence the full stop first.
pub fn mariadb_replica_lag(start: bool, delay: Option<Duration>) -> Vec<String> {
    match (start, delay) {
        (true, None) => vec!["STOP SLAVE SQL_THREAD".to_owned()],
        (true, Some(delay)) => vec![
            "STOP SLAVE".to_owned(),
            format!("CHANGE MASTER TO MASTER_DELAY = {}", delay.as_secs().max(1)),
            "START SLAVE".to_owned(),
        ],
        (false, _) => vec![
            "STOP SLAVE".to_owned(),
            "CHANGE MASTER TO MASTER_DELAY = 0".to_owned(),
            "START SLAVE".to_owned(),
        ],
    }
}

/// The same, in MySQL 8's words (8.0.22+; 8.4 removed the SLAVE/MASTER spellings).
pub fn mysql_replica_lag(start: bool, delay: Option<Duration>) -> Vec<String> {
    match (start, delay) {
        (true, None) => vec!["STOP REPLICA SQL_THREAD".to_owned()],
        (true, Some(delay)) => vec![
            "STOP REPLICA".to_owned(),
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {}",
                delay.as_secs().max(1)
            ),
            "START REPLICA".to_owned(),
        ],
        (false, _) => vec![
            "STOP REPLICA".to_owned(),
            "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 0".to_owned(),
            "START REPLICA".to_owned(),
        ],
    }
}

/// Which replication statements a MySQL-protocol server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlFlavour {
    MariaDb,
    /// MySQL 8.0.22 or later (the fleet's 8.0.31).
    Mysql,
}

impl MysqlFlavour {
    pub fn from_version(version: &str) -> Self {
        match version.to_ascii_lowercase().contains("mariadb") {
            true => MysqlFlavour::MariaDb,
            false => MysqlFlavour::Mysql,
        }
    }

    async fn of(connection: &mut MySqlConnection) -> anyhow::Result<Self> {
        let version: String = sqlx::query_scalar("SELECT @@version")
            .fetch_one(&mut *connection)
            .await
            .context("reading the server's @@version")?;
        Ok(MysqlFlavour::from_version(&version))
    }

    /// Both replication threads stopped, or started again.
    pub fn replication_threads(self, start: bool) -> &'static str {
        match (self, start) {
            (MysqlFlavour::MariaDb, true) => "START SLAVE",
            (MysqlFlavour::MariaDb, false) => "STOP SLAVE",
            (MysqlFlavour::Mysql, true) => "START REPLICA",
            (MysqlFlavour::Mysql, false) => "STOP REPLICA",
        }
    }
}

/// `primary_conninfo` with its port replaced by 1, where nothing listens.
pub fn dead_conninfo(conninfo: &str) -> String {
    let mut words: Vec<String> = conninfo
        .split_whitespace()
        .filter(|word| !word.starts_with("port="))
        .map(str::to_owned)
        .collect();
    words.push("port=1".into());
    words.join(" ")
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn replication_broken(args: &FaultArgs, start: bool) -> anyhow::Result<()> {
    if args.engine.postgres() {
        let url = url(
            &args.pg_replica_url,
            "--pg-replica-url",
            "DBWATCH_PG_REPLICA_ADMIN_URL",
        )?;
        let mut replica = pg_connect(url, "dbwatch-workload").await?;
        let dir = state_dir(args);
        let saved = dir.join("replication-broken.primary_conninfo");
        if start {
            if saved.exists() {
                say("replication-broken: postgres replica already pointed at a dead port");
            } else {
                let current: String =
                    sqlx::query_scalar("SELECT current_setting('primary_conninfo')")
                        .fetch_one(&mut replica)
                        .await
                        .context("postgres replica: reading primary_conninfo")?;
                anyhow::ensure!(
                    !current.is_empty(),
                    "the postgres replica has no primary_conninfo: is it a replica?"
                );
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(&saved, &current)
                    .with_context(|| format!("writing {}", saved.display()))?;
                set_conninfo(&mut replica, &dead_conninfo(&current)).await?;
            }
            wait_wal_receiver(&mut replica, false).await?;
            say("replication-broken: postgres replica's primary_conninfo points at port 1, WAL receiver down");
        } else {
            if let Ok(original) = std::fs::read_to_string(&saved) {
                set_conninfo(&mut replica, &original).await?;
                std::fs::remove_file(&saved)
                    .with_context(|| format!("removing {}", saved.display()))?;
            }
            wait_wal_receiver(&mut replica, true).await?;
            say("replication-broken: postgres replica streams again");
        }
    }
    if args.engine.mysql() {
        let url = url(
            &args.mysql_replica_url,
            "--mysql-replica-url",
            "DBWATCH_MYSQL_REPLICA_ADMIN_URL",
        )?;
        let mut replica = mysql_connect(url).await?;
        // Starting the fault stops the threads.
        let statement = MysqlFlavour::of(&mut replica)
            .await?
            .replication_threads(!start);
        sqlx::raw_sql(statement)
            .execute(&mut replica)
            .await
            .with_context(|| format!("mysql replica: {statement}"))?;
        say(&format!("replication-broken: mysql replica {statement}"));
    }
    Ok(())
}

async fn set_conninfo(replica: &mut PgConnection, conninfo: &str) -> anyhow::Result<()> {
    // ALTER SYSTEM takes no parameters: the value is a quoted literal.
    let statement = format!(
        "ALTER SYSTEM SET primary_conninfo = {}",
        quote_literal(conninfo)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut *replica)
        .await
        .context("postgres replica: ALTER SYSTEM SET primary_conninfo")?;
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut *replica)
        .await
        .context("postgres replica: pg_reload_conf()")?;
    Ok(())
}

/// Waits (60 s at most) until the replica's WAL receiver streams, or does not.
async fn wait_wal_receiver(replica: &mut PgConnection, streaming: bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
        )
        .fetch_one(&mut *replica)
        .await?;
        if now == streaming {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the postgres replica's WAL receiver is {} streaming after 60s",
            if now { "still" } else { "not" }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Cassandra

fn cassandra_node(args: &FaultArgs, action: &str) -> anyhow::Result<()> {
    let tool = args.cassandra_node_ctl.as_ref().context(
        "no --cassandra-node-ctl: pass it or set DBWATCH_CASSANDRA_NODE_CTL \
         (eval \"$(deploy/local/fleet env)\" sets it for the local fleet)",
    )?;
    let node = args.cassandra_node.to_string();
    let status = Command::new(tool)
        .args([action, &node])
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {} {action} {node}", tool.display()))?;
    anyhow::ensure!(
        status.success(),
        "{} {action} {node} failed ({status})",
        tool.display()
    );
    say(&format!(
        "cassandra-node-down: node {node} {}",
        if action == "stop" {
            "stopped"
        } else {
            "started, both nodes up"
        }
    ));
    Ok(())
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
