//! Each fault against the real fleet: `start` changes what it should on the server, `clear` puts it back.
//! The tests share servers with other suites, so every fault is cleared by a guard, on failure paths too, and
//! they run one at a time. Fails, never skips, without the fleet.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use common::{env, mysql, pg, run, unique, workload};
use sqlx::mysql::MySqlConnection;
use sqlx::Row;

/// One fault at a time: two of them touch the same replica.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Clears the fault when dropped, whatever happened in the test.
struct Applied {
    fault: &'static str,
    args: Vec<String>,
    state: PathBuf,
    cleared: bool,
}

fn fault(name: &str, action: &str, args: &[String], state: &Path) -> String {
    let output = run(workload()
        .args(["fault", name, action])
        .args(args)
        .arg("--state-dir")
        .arg(state));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Applied {
    fn start(fault_name: &'static str, args: &[&str], state: &Path) -> (Applied, String) {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let applied = Applied {
            fault: fault_name,
            args: args.clone(),
            state: state.to_owned(),
            cleared: false,
        };
        let said = fault(fault_name, "start", &args, state);
        // Idempotent: a second start changes nothing and succeeds.
        fault(fault_name, "start", &args, state);
        (applied, said)
    }

    fn clear(&mut self) {
        fault(self.fault, "clear", &self.args, &self.state);
        // Idempotent too.
        fault(self.fault, "clear", &self.args, &self.state);
        self.cleared = true;
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        if !self.cleared {
            let _ = workload()
                .args(["fault", self.fault, "clear"])
                .args(&self.args)
                .arg("--state-dir")
                .arg(&self.state)
                .status();
        }
    }
}

async fn slave_status(replica: &mut MySqlConnection) -> (String, String) {
    let row = sqlx::query("SHOW SLAVE STATUS")
        .fetch_one(replica)
        .await
        .expect("SHOW SLAVE STATUS");
    let column = |name: &str| -> String {
        let bytes: Vec<u8> = row.try_get(name).expect(name);
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (column("Slave_IO_Running"), column("Slave_SQL_Running"))
}

/// Evaluates `probe` (an expression that may await) until it equals `want`, for 20 s at most; the last value.
macro_rules! until {
    ($want:expr, $probe:expr) => {{
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let value = $probe;
            if value == $want || tokio::time::Instant::now() > deadline {
                break value;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }};
}

async fn threads_connected(connection: &mut MySqlConnection) -> f64 {
    let value: String = sqlx::query_scalar(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED'",
    )
    .fetch_one(connection)
    .await
    .expect("Threads_connected");
    value.parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_lag_pauses_replay_and_the_sql_thread() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut pg_replica = pg("DBWATCH_PG_REPLICA_ADMIN_URL").await;
    let mut my_replica = mysql("DBWATCH_MYSQL_REPLICA_ADMIN_URL").await;

    let (mut applied, _) = Applied::start("replica-lag", &[], state.path());
    let paused: bool = sqlx::query_scalar("SELECT pg_is_wal_replay_paused()")
        .fetch_one(&mut pg_replica)
        .await
        .expect("replay state");
    assert!(paused);
    assert_eq!(
        slave_status(&mut my_replica).await,
        ("Yes".into(), "No".into())
    );

    applied.clear();
    let paused: bool = sqlx::query_scalar("SELECT pg_is_wal_replay_paused()")
        .fetch_one(&mut pg_replica)
        .await
        .expect("replay state");
    assert!(!paused);
    assert_eq!(slave_status(&mut my_replica).await.1, "Yes");
}

async fn sql_delay(replica: &mut MySqlConnection) -> String {
    let row = sqlx::query("SHOW SLAVE STATUS")
        .fetch_one(replica)
        .await
        .expect("SHOW SLAVE STATUS");
    // MariaDB returns SHOW columns as text, or as integers for some: read either.
    row.try_get::<Vec<u8>, _>("SQL_Delay")
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .or_else(|_| {
            row.try_get::<u32, _>("SQL_Delay")
                .map(|delay| delay.to_string())
        })
        .expect("SQL_Delay")
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_lag_with_a_delay_keeps_mariadb_replicating_behind_by_it() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut my_replica = mysql("DBWATCH_MYSQL_REPLICA_ADMIN_URL").await;

    let (mut applied, said) = Applied::start(
        "replica-lag",
        &["--engine", "mysql", "--delay", "30s"],
        state.path(),
    );
    assert!(said.contains("MASTER_DELAY = 30"), "{said}");
    assert_eq!(sql_delay(&mut my_replica).await, "30");
    assert_eq!(
        until!(
            ("Yes".to_owned(), "Yes".to_owned()),
            slave_status(&mut my_replica).await
        ),
        ("Yes".into(), "Yes".into())
    );

    applied.clear();
    assert_eq!(sql_delay(&mut my_replica).await, "0");
    assert_eq!(
        until!(
            ("Yes".to_owned(), "Yes".to_owned()),
            slave_status(&mut my_replica).await
        ),
        ("Yes".into(), "Yes".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn clearing_slow_queries_kills_a_tagged_mariadb_sleep_left_behind() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut my_primary = mysql("DBWATCH_MYSQL_ADMIN_URL").await;
    // A sleep carrying the fault's tag on a connection no holder owns, as a holder killed mid-sleep leaves it:
    // only the clear's KILL QUERY (which reads PROCESSLIST.ID) can end it early.
    let mut stray = mysql("DBWATCH_MYSQL_ADMIN_URL").await;
    let sleeping = tokio::spawn(async move {
        sqlx::query_scalar::<_, i64>("SELECT SLEEP(60) /* dbwatch-fault-slow-queries */")
            .fetch_one(&mut stray)
            .await
    });
    let stray_sleeps = "SELECT count(*) FROM information_schema.PROCESSLIST
                        WHERE INFO LIKE '%dbwatch-fault-slow-queries%' AND ID <> CONNECTION_ID()";
    let count = until!(
        1i64,
        sqlx::query_scalar::<_, i64>(stray_sleeps)
            .fetch_one(&mut my_primary)
            .await
            .expect("count")
    );
    assert_eq!(count, 1);

    fault(
        "slow-queries",
        "clear",
        &["--engine".into(), "mysql".into()],
        state.path(),
    );
    // KILL QUERY ends the 60 s sleep at once: MariaDB answers "Query execution was interrupted" (1317), MySQL
    // returns 1 from SLEEP().
    let answer = tokio::time::timeout(Duration::from_secs(20), sleeping)
        .await
        .expect("the stray sleep ends within 20 s")
        .expect("the sleeping task");
    match answer {
        Ok(value) => assert_eq!(value, 1),
        Err(error) => assert!(error.to_string().contains("interrupted"), "{error}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_broken_stops_the_replicas_and_clear_restores_streaming() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut pg_replica = pg("DBWATCH_PG_REPLICA_ADMIN_URL").await;
    let mut my_replica = mysql("DBWATCH_MYSQL_REPLICA_ADMIN_URL").await;
    let conninfo_before: String = sqlx::query_scalar("SELECT current_setting('primary_conninfo')")
        .fetch_one(&mut pg_replica)
        .await
        .expect("primary_conninfo");

    let (mut applied, _) = Applied::start("replication-broken", &[], state.path());
    let conninfo: String = sqlx::query_scalar("SELECT current_setting('primary_conninfo')")
        .fetch_one(&mut pg_replica)
        .await
        .expect("primary_conninfo");
    assert!(conninfo.ends_with("port=1"), "{conninfo}");
    let streaming: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
    )
    .fetch_one(&mut pg_replica)
    .await
    .expect("wal receiver");
    assert!(!streaming);
    assert_eq!(
        slave_status(&mut my_replica).await,
        ("No".into(), "No".into())
    );

    applied.clear();
    let conninfo: String = sqlx::query_scalar("SELECT current_setting('primary_conninfo')")
        .fetch_one(&mut pg_replica)
        .await
        .expect("primary_conninfo");
    assert_eq!(conninfo, conninfo_before);
    let streaming: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
    )
    .fetch_one(&mut pg_replica)
    .await
    .expect("wal receiver");
    assert!(streaming);
    let status = until!(
        ("Yes".to_owned(), "Yes".to_owned()),
        slave_status(&mut my_replica).await
    );
    assert_eq!(status, ("Yes".into(), "Yes".into()));
}

/// `holding N connections` for `engine` in the start's output.
fn held(said: &str, engine: &str) -> i64 {
    let line = said
        .split(';')
        .find(|part| part.contains(&format!("{engine}: holding")))
        .unwrap_or_else(|| panic!("no {engine} in {said}"));
    line.split_whitespace()
        .skip_while(|word| *word != "holding")
        .nth(1)
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_held_up_to_the_fraction_and_released() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut primary = pg("DBWATCH_PG_ADMIN_URL").await;
    let mut my_primary = mysql("DBWATCH_MYSQL_ADMIN_URL").await;
    let ours = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbwatch-fault-connections'";

    let (mut applied, said) = Applied::start("connections", &["--fraction", "0.6"], state.path());
    let pg_held = held(&said, "postgres");
    assert!(pg_held >= 1, "{said}");
    let count: i64 = sqlx::query_scalar(ours)
        .fetch_one(&mut primary)
        .await
        .expect("count");
    assert_eq!(count, pg_held);
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8,
                current_setting('max_connections')::float8 - current_setting('superuser_reserved_connections')::float8",
    )
    .fetch_one(&mut primary)
    .await
    .expect("usage");
    let (in_use, usable): (f64, f64) = (row.get(0), row.get(1));
    assert!(in_use / usable >= 0.6, "{in_use} of {usable}");

    let mysql_held = held(&said, "mysql");
    let during = threads_connected(&mut my_primary).await;
    assert!(during >= 0.6 * 60.0, "{during} threads connected");

    applied.clear();
    let count: i64 = sqlx::query_scalar(ours)
        .fetch_one(&mut primary)
        .await
        .expect("count");
    assert_eq!(count, 0);
    // The held MariaDB connections close with their process; others' may come and go meanwhile.
    let after = until!(
        true,
        threads_connected(&mut my_primary).await <= during - mysql_held as f64 + 3.0
    );
    assert!(after, "MariaDB still has the {mysql_held} held connections");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_queries_sleep_in_every_session_until_cleared() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut primary = pg("DBWATCH_PG_ADMIN_URL").await;
    let mut my_primary = mysql("DBWATCH_MYSQL_ADMIN_URL").await;
    let pg_sleeping = "SELECT count(*) FROM pg_stat_activity
                        WHERE application_name = 'dbwatch-fault-slow-queries' AND query LIKE '%pg_sleep%'";
    let my_sleeping = "SELECT count(*) FROM information_schema.PROCESSLIST
                        WHERE INFO LIKE '%dbwatch-fault-slow-queries%' AND ID <> CONNECTION_ID()";

    let (mut applied, _) = Applied::start(
        "slow-queries",
        &["--sessions", "3", "--sleep", "1s"],
        state.path(),
    );
    let count = until!(
        3i64,
        sqlx::query_scalar::<_, i64>(pg_sleeping)
            .fetch_one(&mut primary)
            .await
            .expect("count")
    );
    assert_eq!(count, 3);
    let count = until!(
        3i64,
        sqlx::query_scalar::<_, i64>(my_sleeping)
            .fetch_one(&mut my_primary)
            .await
            .expect("count")
    );
    assert_eq!(count, 3);

    applied.clear();
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbwatch-fault-slow-queries'",
    )
    .fetch_one(&mut primary)
    .await
    .expect("count");
    assert_eq!(count, 0);
    let count = until!(
        0i64,
        sqlx::query_scalar::<_, i64>(my_sleeping)
            .fetch_one(&mut my_primary)
            .await
            .expect("count")
    );
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_throttling_is_published_to_cloudwatch_until_cleared() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let table = unique("dbwatch-it-throttle");

    let (mut applied, _) = Applied::start(
        "dynamodb-throttling",
        &["--table", &table, "--throttle-rate", "2"],
        state.path(),
    );
    let pid: u32 = std::fs::read_to_string(state.path().join("dynamodb-throttling.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(env("DBWATCH_AWS_ENDPOINT_URL"))
        .load()
        .await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let query = |id: &str, metric: &str, dimensions: Vec<Dimension>| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("AWS/DynamoDB")
                            .metric_name(metric)
                            .set_dimensions(Some(dimensions))
                            .build(),
                    )
                    .period(60)
                    .stat("Sum")
                    .build(),
            )
            .build()
    };
    let table_dimension = Dimension::builder().name("TableName").value(&table).build();
    let answer = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(now - now % 60 - 600))
        .end_time(DateTime::from_secs(now - now % 60 + 60))
        .metric_data_queries(query(
            "throttled",
            "ThrottledRequests",
            vec![
                table_dimension.clone(),
                Dimension::builder()
                    .name("Operation")
                    .value("PutItem")
                    .build(),
            ],
        ))
        .metric_data_queries(query("reads", "ReadThrottleEvents", vec![table_dimension]))
        .send()
        .await
        .expect("GetMetricData from moto");
    for result in answer.metric_data_results() {
        let values = result.values();
        // The current minute and the five before it, 2/s each: 120 per minute.
        assert!(values.len() >= 6, "{:?}: {values:?}", result.id());
        assert!(
            values.iter().all(|value| *value == 120.0),
            "{:?}: {values:?}",
            result.id()
        );
    }
    assert_eq!(answer.metric_data_results().len(), 2);

    applied.clear();
    assert!(!state.path().join("dynamodb-throttling.pid").exists());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "holder {pid} still runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cassandra_node_down_stops_node_2_and_clear_brings_it_back() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let tool = env("DBWATCH_CASSANDRA_NODE_CTL");
    let node_up = || {
        std::process::Command::new(&tool)
            .args(["status", "2"])
            .status()
            .expect("the node tool runs")
            .success()
    };
    assert!(node_up(), "node 2 is down before the test");

    let (mut applied, _) = Applied::start("cassandra-node-down", &[], state.path());
    assert!(!node_up());
    applied.clear();
    assert!(node_up());
}

#[test]
fn held_counts_are_read_back() {
    let said = "connections: started (holder pid 1, log x): postgres: holding 12 connections (3 in use of 57 before); mysql: holding 30 connections (5 in use of 60 before)";
    assert_eq!(held(said, "postgres"), 12);
    assert_eq!(held(said, "mysql"), 30);
}
