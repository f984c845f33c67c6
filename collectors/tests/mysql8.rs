//! The MySQL collector against a real MySQL 8.0 server: the local fleet's MySQL Community Server 8.0.31 primary
//! and its GTID replica, started by `deploy/local/fleet up mysql` (ports 13316/13317, beside MariaDB's pair,
//! which collectors/tests/mysql.rs covers). These tests fail, never skip, when the fleet is missing.
//!
//! Every test reads the server's `@@version` first and names it in its output and in its failure messages
//! (`cargo test --test mysql8 -- --nocapture` shows it). They share one primary and one replica, and some
//! stop or delay replication on purpose, so they take a process-wide lock and run one at a time; each that
//! changes replication restores it even when its assertions fail (the body runs in a task; the restore runs
//! after it, whatever happened).

#![cfg(feature = "mysql")]

use std::future::Future;
use std::time::Duration;

use dbwatch_collectors::mysql::{
    HeartbeatOptions, MysqlCollector, MysqlConnectionOptions, MysqlOptions, MysqlTls, MysqlTlsMode,
    MysqlViews,
};
use dbwatch_collectors::secret::{PasswordSource, Secret};
use dbwatch_collectors::{Collected, Collector, ErrorKind};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Row};
use tokio::time::Instant;

#[path = "support/mysql_fleet.rs"]
mod mysql_fleet;
use mysql_fleet::{fleet_url, innodb_contention_shows, run, value};

/// The fleet component these tests run on, named in the message when its variables are missing.
const COMPONENT: &str = "mysql";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PRIMARY: &str = "DBWATCH_MYSQL8_PRIMARY_URL";
const REPLICA: &str = "DBWATCH_MYSQL8_REPLICA_URL";
const HEARTBEAT: &str = "DBWATCH_MYSQL8_HEARTBEAT_URL";
const ADMIN: &str = "DBWATCH_MYSQL8_ADMIN_URL";
const REPLICA_ADMIN: &str = "DBWATCH_MYSQL8_REPLICA_ADMIN_URL";

const PRIMARY_TARGET: &str = "mysql8-primary";
const REPLICA_TARGET: &str = "mysql8-replica";

fn options_with_tls(variable: &str, target: &str, mode: MysqlTlsMode) -> MysqlOptions {
    let url = fleet_url(variable, COMPONENT);
    MysqlOptions {
        connection: MysqlConnectionOptions {
            target: target.into(),
            host: url.host,
            port: url.port,
            socket: None,
            user: url.user,
            password: Some(PasswordSource::Inline(Secret::new(url.password))),
            tls: MysqlTls {
                mode,
                ..MysqlTls::default()
            },
            connect_timeout: Duration::from_secs(3),
        },
        statement_timeout: Duration::from_secs(2),
        views: MysqlViews::default(),
        heartbeat: None,
    }
}

/// Without TLS: caching_sha2_password then needs the server's RSA key exchange, MySQL 8's hardest path.
fn options(variable: &str, target: &str) -> MysqlOptions {
    options_with_tls(variable, target, MysqlTlsMode::Disabled)
}

fn collector(variable: &str, target: &str) -> MysqlCollector {
    MysqlCollector::new(options(variable, target))
}

async fn admin(variable: &str) -> MySqlConnection {
    let url = fleet_url(variable, COMPONENT);
    MySqlConnection::connect(&url.raw)
        .await
        .unwrap_or_else(|error| {
            panic!("cannot connect to {variable}: {error}; run `deploy/local/fleet up mysql`")
        })
}

/// The server's version string and comment, printed so that the test output names the server it ran on.
/// Fails unless the server is MySQL 8.0 (not MariaDB, not another MySQL series).
async fn server(connection: &mut MySqlConnection) -> String {
    let row = sqlx::raw_sql("SELECT @@version AS v, @@version_comment AS c")
        .fetch_one(&mut *connection)
        .await
        .expect("read @@version");
    let version: String = row.try_get("v").expect("@@version as text");
    let comment: String = row.try_get("c").expect("@@version_comment as text");
    let named = format!("MySQL {version} ({comment})");
    eprintln!("[mysql8] server: {named}");
    assert!(
        version.starts_with("8.0.") && !version.to_ascii_lowercase().contains("mariadb"),
        "the MySQL 8.0 fleet answered as {named}"
    );
    named
}

async fn poll(collector: &mut dyn Collector) -> Collected {
    collector.collect().await.unwrap_or_else(|error| {
        panic!("poll failed: {error}; is the fleet up (`deploy/local/fleet up mysql`)?")
    })
}

fn must(collected: &Collected, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(collected, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:#?}", collected.samples))
}

fn view_error(collected: &Collected, view: &str) -> Option<Option<ErrorKind>> {
    collected
        .views
        .iter()
        .find(|outcome| outcome.view == view)
        .map(|outcome| outcome.error)
}

/// Polls until `check` holds or the deadline passes; returns the last poll.
async fn poll_until(
    collector: &mut dyn Collector,
    deadline: Duration,
    what: &str,
    mut check: impl FnMut(&Collected) -> bool,
) -> Collected {
    let end = Instant::now() + deadline;
    loop {
        let collected = poll(collector).await;
        if check(&collected) {
            return collected;
        }
        if Instant::now() >= end {
            panic!(
                "{what} did not happen within {deadline:?}; last samples: {:#?}",
                collected.samples
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const REPLICA_LABEL: [(&str, &str); 1] = [("replica", REPLICA_TARGET)];
const CHANNEL: [(&str, &str); 1] = [("channel", "")];

fn fleet_lag(collected: &Collected) -> Option<f64> {
    value(collected, "db_replication_lag_seconds", &REPLICA_LABEL)
}

fn healthy_replica(collected: &Collected) -> bool {
    value(collected, "db_replication_healthy", &REPLICA_LABEL) == Some(1.0)
        && fleet_lag(collected) == Some(0.0)
}

/// Runs `body`, then puts replication back as the fleet set it up (default channel only, no delay, both
/// threads running) and waits for it to be healthy, whether the body passed or panicked, so that a failing
/// test does not leave the shared replica broken.
async fn restoring_replication(body: impl Future<Output = ()> + Send + 'static) {
    let outcome = tokio::spawn(body).await;
    let mut replica_admin = admin(REPLICA_ADMIN).await;
    let channels = sqlx::raw_sql(
        "SELECT CHANNEL_NAME AS c FROM performance_schema.replication_connection_configuration",
    )
    .fetch_all(&mut replica_admin)
    .await
    .expect("list the replica's channels");
    for row in channels {
        let channel: String = row.try_get("c").expect("channel name");
        if !channel.is_empty() {
            run(
                &mut replica_admin,
                &format!("STOP REPLICA FOR CHANNEL '{channel}'"),
            )
            .await;
            run(
                &mut replica_admin,
                &format!("RESET REPLICA ALL FOR CHANNEL '{channel}'"),
            )
            .await;
        }
    }
    run(&mut replica_admin, "STOP REPLICA FOR CHANNEL ''").await;
    run(
        &mut replica_admin,
        "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 0 FOR CHANNEL ''",
    )
    .await;
    run(&mut replica_admin, "START REPLICA FOR CHANNEL ''").await;
    let mut replica = collector(REPLICA, REPLICA_TARGET);
    poll_until(
        &mut replica,
        Duration::from_secs(30),
        "replication to recover",
        healthy_replica,
    )
    .await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn test_table(primary_admin: &mut MySqlConnection) {
    run(primary_admin, "CREATE DATABASE IF NOT EXISTS dbwatch_test").await;
    run(
        primary_admin,
        "CREATE TABLE IF NOT EXISTS dbwatch_test.t (id INT NOT NULL PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB",
    )
    .await;
}

/// Statements the server counted for the monitoring user, read from an admin session (not counted).
async fn statements_by_monitoring_user(server_admin: &mut MySqlConnection) -> f64 {
    let row = sqlx::raw_sql(
        "SELECT CAST(COALESCE(SUM(COUNT_STAR), 0) AS DOUBLE) AS n \
         FROM performance_schema.events_statements_summary_by_user_by_event_name WHERE USER = 'dbwatch'",
    )
    .fetch_one(&mut *server_admin)
    .await
    .expect("count the monitoring user's statements");
    row.try_get::<f64, _>("n").expect("a count")
}

#[tokio::test]
async fn every_view_answers_for_the_least_privileged_role_on_both_servers() {
    let _serial = SERIAL.lock().await;
    let mut primary_admin = admin(ADMIN).await;
    let named = server(&mut primary_admin).await;
    let mut primary = collector(PRIMARY, PRIMARY_TARGET);
    let collected = poll(&mut primary).await;
    for view in &collected.views {
        assert_eq!(
            view.error, None,
            "{named}: primary view {} failed",
            view.view
        );
    }
    let views: Vec<&str> = collected.views.iter().map(|view| view.view).collect();
    assert_eq!(
        views,
        [
            "global_status",
            "global_variables",
            "information_schema_innodb",
            "replica_status",
            "binary_logs",
            "events_statements_summary_global_by_event_name"
        ],
        "{named}"
    );
    let version_num = must(&collected, "mysql_server_version_num", &[]);
    assert!(
        (80_000.0..80_100.0).contains(&version_num),
        "{named}: version_num {version_num}"
    );
    assert_eq!(
        must(&collected, "mysql_server_info", &[("flavour", "mysql")]),
        1.0,
        "{named}"
    );
    assert_eq!(
        value(&collected, "mysql_server_info", &[("flavour", "mariadb")]),
        None
    );
    for capability in ["performance_schema", "statement_timeout"] {
        assert_eq!(
            must(
                &collected,
                "mysql_capability_available",
                &[("capability", capability)]
            ),
            1.0,
            "{named}: {capability}"
        );
    }
    // A primary without replication: the gauge says so, and there is no replica series at all.
    assert_eq!(must(&collected, "mysql_replica_configured", &[]), 0.0);
    for absent in [
        "db_replication_lag_seconds",
        "db_replication_healthy",
        "mysql_replica_io_running",
    ] {
        assert_eq!(
            value(&collected, absent, &[]),
            None,
            "{absent} on a primary"
        );
    }
    assert_eq!(must(&collected, "mysql_read_only", &[]), 0.0);
    assert_eq!(must(&collected, "mysql_binlog_enabled", &[]), 1.0);
    assert_eq!(
        must(&collected, "mysql_binlog_format", &[("format", "ROW")]),
        1.0
    );
    assert_eq!(
        must(
            &collected,
            "mysql_binlog_format",
            &[("format", "STATEMENT")]
        ),
        0.0
    );
    assert_eq!(must(&collected, "db_connections_max", &[]), 60.0);
    let pages = ["data", "free", "misc"]
        .iter()
        .map(|state| {
            must(
                &collected,
                "mysql_innodb_buffer_pool_pages",
                &[("state", state)],
            )
        })
        .sum::<f64>();
    let size_pages = must(&collected, "mysql_innodb_buffer_pool_size_pages", &[]);
    assert_eq!(pages, size_pages, "{named}: data + free + misc pages");
    // 64 MiB of 16 KiB pages.
    assert!(
        (0.9 * 4096.0..=4096.0).contains(&size_pages),
        "{named}: {size_pages} pages"
    );
    assert!(must(&collected, "mysql_innodb_buffer_pool_data_bytes", &[]) > 0.0);
    let cumulative = must(
        &collected,
        "mysql_innodb_buffer_pool_cumulative_hit_ratio",
        &[],
    );
    assert!(
        (0.0..=1.0).contains(&cumulative),
        "cumulative hit ratio {cumulative}"
    );

    let mut replica = collector(REPLICA, REPLICA_TARGET);
    let collected = poll_until(
        &mut replica,
        Duration::from_secs(10),
        "a healthy replica",
        healthy_replica,
    )
    .await;
    for view in &collected.views {
        assert_eq!(
            view.error, None,
            "{named}: replica view {} failed",
            view.view
        );
    }
    assert_eq!(must(&collected, "mysql_replica_configured", &[]), 1.0);
    assert_eq!(must(&collected, "mysql_read_only", &[]), 1.0);
    assert_eq!(must(&collected, "mysql_replica_io_running", &CHANNEL), 1.0);
    assert_eq!(must(&collected, "mysql_replica_sql_running", &CHANNEL), 1.0);
    assert_eq!(must(&collected, "mysql_replica_lag_seconds", &CHANNEL), 0.0);
    assert_eq!(
        must(&collected, "mysql_replica_sql_delay_seconds", &CHANNEL),
        0.0
    );
    for thread in ["io", "sql"] {
        assert_eq!(
            must(
                &collected,
                "mysql_replica_last_errno",
                &[("channel", ""), ("thread", thread), ("error_class", "none")]
            ),
            0.0
        );
    }
    assert!(
        must(
            &collected,
            "mysql_replica_exec_source_log_position_bytes",
            &CHANNEL
        ) > 0.0
    );
    assert!(
        must(
            &collected,
            "mysql_replica_read_source_log_position_bytes",
            &CHANNEL
        ) > 0.0
    );
    assert!(must(&collected, "mysql_replica_relay_log_space_bytes", &CHANNEL) > 0.0);
    // The replica binlogs what it applies (log_replica_updates): its own binary logs are read too.
    assert!(must(&collected, "mysql_binlog_files", &[]) >= 1.0);
}

#[tokio::test]
async fn caching_sha2_password_authenticates_with_and_without_tls() {
    let _serial = SERIAL.lock().await;
    let mut primary_admin = admin(ADMIN).await;
    let named = server(&mut primary_admin).await;
    for mode in [
        MysqlTlsMode::Disabled,
        MysqlTlsMode::Preferred,
        MysqlTlsMode::Required,
    ] {
        // An empty authentication cache (as after a server restart): the full caching_sha2_password exchange,
        // which without TLS sends the password encrypted with the server's RSA key.
        run(&mut primary_admin, "FLUSH NO_WRITE_TO_BINLOG PRIVILEGES").await;
        let mut monitored = MysqlCollector::new(options_with_tls(PRIMARY, PRIMARY_TARGET, mode));
        let collected = poll(&mut monitored).await;
        assert_eq!(
            must(&collected, "mysql_server_info", &[("flavour", "mysql")]),
            1.0,
            "{named}, TLS {mode:?}"
        );
        monitored.close().await;
    }
    // A second connection after the first: the server's cache of the password hash (the fast path) too.
    let mut again = collector(PRIMARY, PRIMARY_TARGET);
    poll(&mut again).await;
}

/// Measures what one poll costs each server, in statements (counted by the server itself for the monitoring
/// user) and in wall time. Run with `--nocapture` to see the figures.
#[tokio::test]
async fn a_poll_costs_at_most_seven_statements() {
    let _serial = SERIAL.lock().await;
    for (variable, admin_variable, target) in [
        (PRIMARY, ADMIN, PRIMARY_TARGET),
        (REPLICA, REPLICA_ADMIN, REPLICA_TARGET),
    ] {
        let mut server_admin = admin(admin_variable).await;
        let named = server(&mut server_admin).await;
        let mut monitored = collector(variable, target);
        // The first poll also opens the connection (version and session settings): measure the next ones.
        let first_started = Instant::now();
        poll(&mut monitored).await;
        let first = first_started.elapsed();
        const POLLS: u32 = 10;
        let before = statements_by_monitoring_user(&mut server_admin).await;
        let started = Instant::now();
        let mut views = Vec::new();
        for _ in 0..POLLS {
            views = poll(&mut monitored).await.views;
        }
        let wall = started.elapsed() / POLLS;
        let after = statements_by_monitoring_user(&mut server_admin).await;
        let per_poll = (after - before) / f64::from(POLLS);
        eprintln!(
            "{target} ({named}): {per_poll} statements per poll counted by the server ({} views), \
             {wall:?} per poll, {first:?} for the first poll (connect included)",
            views.len()
        );
        for view in &views {
            eprintln!("  {}: {:?}", view.view, view.duration);
        }
        assert!(
            per_poll <= 7.0,
            "{per_poll} statements per poll (is another `dbwatch` client polling this server?)"
        );
        assert!(
            per_poll >= views.len() as f64 - 0.2,
            "{per_poll} statements for {} views",
            views.len()
        );
        assert!(wall < Duration::from_millis(500), "a poll took {wall:?}");
    }
}

#[tokio::test]
async fn a_burst_of_statements_moves_the_throughput_counters() {
    let _serial = SERIAL.lock().await;
    let mut primary_admin = admin(ADMIN).await;
    let named = server(&mut primary_admin).await;
    test_table(&mut primary_admin).await;
    run(
        &mut primary_admin,
        "DELETE FROM dbwatch_test.t WHERE id BETWEEN 1000 AND 1999",
    )
    .await;
    let mut primary = collector(PRIMARY, PRIMARY_TARGET);
    let before = poll(&mut primary).await;
    let started = Instant::now();
    const N: usize = 200;
    for index in 0..N {
        run(&mut primary_admin, "SELECT 1").await;
        run(
            &mut primary_admin,
            &format!(
                "INSERT INTO dbwatch_test.t (id, v) VALUES ({}, {index})",
                1000 + index
            ),
        )
        .await;
    }
    let after = poll(&mut primary).await;
    let interval_bound = started.elapsed().as_secs_f64() + 1.0;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        must(&after, name, labels) - must(&before, name, labels)
    };
    let n = N as f64;
    let questions = moved("mysql_questions_total", &[]);
    assert!(questions >= 2.0 * n, "{named}: questions moved {questions}");
    assert!(moved("mysql_queries_total", &[]) >= 2.0 * n);
    assert!(moved("mysql_commands_total", &[("command", "select")]) >= n);
    assert!(moved("mysql_commands_total", &[("command", "insert")]) >= n);
    let select_rate = must(
        &after,
        "mysql_commands_per_second",
        &[("command", "select")],
    );
    assert!(
        select_rate >= n / interval_bound,
        "{named}: select rate {select_rate}/s for {N} selects in < {interval_bound}s"
    );
    let questions_rate = must(&after, "mysql_questions_per_second", &[]);
    assert!(
        questions_rate >= 2.0 * n / interval_bound,
        "{named}: questions rate {questions_rate}/s"
    );
    // Every insert went into the binary log.
    assert!(moved("mysql_binlog_size_bytes", &[]) >= n * 50.0);
    run(
        &mut primary_admin,
        "DELETE FROM dbwatch_test.t WHERE id BETWEEN 1000 AND 1999",
    )
    .await;
}

#[tokio::test]
async fn sleep_statements_raise_the_latency_average_and_the_slow_query_count() {
    let _serial = SERIAL.lock().await;
    // Connected before the first poll, so that its connection setup falls outside the measured interval.
    let mut primary_admin = admin(ADMIN).await;
    let named = server(&mut primary_admin).await;
    let mut primary = collector(PRIMARY, PRIMARY_TARGET);
    poll(&mut primary).await;
    // An interval of fast statements only: the baseline average.
    for _ in 0..20 {
        run(&mut primary_admin, "SELECT 1").await;
    }
    let quiet = poll(&mut primary).await;
    let baseline = must(&quiet, "db_query_latency_avg_seconds", &[]);
    const SLEEPS: u32 = 3;
    for _ in 0..SLEEPS {
        run(&mut primary_admin, "SELECT SLEEP(0.3)").await;
    }
    let after = poll(&mut primary).await;
    let moved = |name: &str| must(&after, name, &[]) - must(&quiet, name, &[]);
    assert!(
        moved("mysql_slow_queries_total") >= f64::from(SLEEPS),
        "{named}: long_query_time is 0.2 s on the fleet; slow queries moved {}",
        moved("mysql_slow_queries_total")
    );
    let seconds = moved("mysql_perf_schema_statement_seconds_total");
    assert!(
        seconds >= 0.29 * f64::from(SLEEPS),
        "{named}: statement time moved {seconds}"
    );
    let statements = moved("mysql_perf_schema_statements_total");
    let latency = must(&after, "db_query_latency_avg_seconds", &[]);
    eprintln!(
        "[mysql8] {named}: latency average {baseline:.6}s over fast statements, \
         {latency:.6}s over {statements} statements with {SLEEPS} × SLEEP(0.3)"
    );
    assert!(
        baseline < 0.01,
        "{named}: baseline latency {baseline} over 20 × SELECT 1"
    );
    assert!(
        latency >= 0.29 * f64::from(SLEEPS) / statements,
        "{named}: latency {latency} over {statements} statements"
    );
    assert!(
        latency > 0.05 && latency > 10.0 * baseline,
        "{named}: latency {latency} after the sleeps, {baseline} before"
    );
}

/// Statements counted over two idle intervals (between the first and the third of three polls).
async fn statements_over_two_polls(collector: &mut MysqlCollector) -> f64 {
    let first = poll(collector).await;
    poll(collector).await;
    let third = poll(collector).await;
    must(&third, "mysql_perf_schema_statements_total", &[])
        - must(&first, "mysql_perf_schema_statements_total", &[])
}

#[tokio::test]
async fn exclude_own_statements_leaves_dbwatch_out_of_the_latency() {
    let _serial = SERIAL.lock().await;
    let named = server(&mut admin(ADMIN).await).await;
    let mut counted = collector(PRIMARY, PRIMARY_TARGET);
    let with_own = statements_over_two_polls(&mut counted).await;
    assert!(
        with_own >= 10.0,
        "{named}: {with_own} statements counted over two intervals"
    );
    let mut options = options(PRIMARY, PRIMARY_TARGET);
    options.views.exclude_own_statements = true;
    let mut excluding = MysqlCollector::new(options);
    let without_own = statements_over_two_polls(&mut excluding).await;
    assert!(
        without_own < 5.0,
        "{named}: {without_own} statements counted over two idle intervals"
    );
}

#[tokio::test]
async fn extra_idle_connections_move_utilization_by_n_over_max() {
    let _serial = SERIAL.lock().await;
    let named = server(&mut admin(ADMIN).await).await;
    let mut primary = collector(PRIMARY, PRIMARY_TARGET);
    let before = poll(&mut primary).await;
    let active_before = must(&before, "db_connections_active", &[]);
    let max = must(&before, "db_connections_max", &[]);
    let utilization_before = must(&before, "db_connections_utilization_ratio", &[]);
    assert_eq!(active_before, must(&before, "mysql_threads_connected", &[]));

    const EXTRA: usize = 6;
    let mut held = Vec::new();
    for _ in 0..EXTRA {
        held.push(admin(ADMIN).await);
    }
    let after = poll_until(
        &mut primary,
        Duration::from_secs(10),
        "the extra connections to show",
        |collected| {
            value(collected, "db_connections_active", &[]) == Some(active_before + EXTRA as f64)
        },
    )
    .await;
    let moved = must(&after, "db_connections_utilization_ratio", &[]) - utilization_before;
    eprintln!("[mysql8] {named}: {EXTRA} connections moved utilization by {moved:.4} (max {max})");
    assert!(
        (moved - EXTRA as f64 / max).abs() < 1e-9,
        "{named}: utilization moved by {moved}, expected {}",
        EXTRA as f64 / max
    );
    assert!(must(&after, "mysql_max_used_connections", &[]) >= active_before + EXTRA as f64);
    drop(held);
}

#[tokio::test]
async fn a_stopped_replica_sql_thread_reads_broken_not_lag_zero() {
    let _serial = SERIAL.lock().await;
    let named = server(&mut admin(REPLICA_ADMIN).await).await;
    restoring_replication(async move {
        let mut replica_admin = admin(REPLICA_ADMIN).await;
        let mut replica = collector(REPLICA, REPLICA_TARGET);
        poll_until(
            &mut replica,
            Duration::from_secs(10),
            "a healthy replica first",
            healthy_replica,
        )
        .await;
        run(&mut replica_admin, "STOP REPLICA SQL_THREAD").await;
        let stopped = poll(&mut replica).await;
        assert_eq!(
            must(&stopped, "mysql_replica_io_running", &CHANNEL),
            1.0,
            "{named}: the IO thread still runs"
        );
        assert_eq!(must(&stopped, "mysql_replica_sql_running", &CHANNEL), 0.0);
        // MySQL 8 reports Seconds_Behind_Source NULL: unknown and unhealthy, never 0.
        let channel_lag = must(&stopped, "mysql_replica_lag_seconds", &CHANNEL);
        assert!(channel_lag.is_nan(), "{named}: channel lag {channel_lag}");
        let lag = must(&stopped, "db_replication_lag_seconds", &REPLICA_LABEL);
        assert!(lag.is_nan(), "{named}: fleet lag {lag}, not unknown");
        assert_eq!(
            must(&stopped, "db_replication_healthy", &REPLICA_LABEL),
            0.0
        );

        run(&mut replica_admin, "STOP REPLICA").await;
        let all_stopped = poll(&mut replica).await;
        assert_eq!(
            must(&all_stopped, "mysql_replica_io_running", &CHANNEL),
            0.0
        );
        assert!(must(&all_stopped, "db_replication_lag_seconds", &REPLICA_LABEL).is_nan());
        assert_eq!(
            must(&all_stopped, "db_replication_healthy", &REPLICA_LABEL),
            0.0
        );
        assert_eq!(must(&all_stopped, "mysql_replica_configured", &[]), 1.0);

        run(&mut replica_admin, "START REPLICA").await;
        poll_until(
            &mut replica,
            Duration::from_secs(30),
            "replication to restart",
            healthy_replica,
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn source_delay_lag_grows_then_falls_to_zero() {
    let _serial = SERIAL.lock().await;
    let named = server(&mut admin(REPLICA_ADMIN).await).await;
    restoring_replication(async move {
        const DELAY: u32 = 6;
        let mut primary_admin = admin(ADMIN).await;
        test_table(&mut primary_admin).await;
        let mut replica_admin = admin(REPLICA_ADMIN).await;
        let mut replica = collector(REPLICA, REPLICA_TARGET);
        poll_until(
            &mut replica,
            Duration::from_secs(10),
            "a healthy replica first",
            healthy_replica,
        )
        .await;
        run(&mut replica_admin, "STOP REPLICA").await;
        run(
            &mut replica_admin,
            &format!("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {DELAY}"),
        )
        .await;
        run(&mut replica_admin, "START REPLICA").await;
        let delayed = poll_until(
            &mut replica,
            Duration::from_secs(10),
            "the delayed replica's threads to run",
            |collected| value(collected, "db_replication_healthy", &REPLICA_LABEL) == Some(1.0),
        )
        .await;
        assert_eq!(
            must(&delayed, "mysql_replica_sql_delay_seconds", &CHANNEL),
            f64::from(DELAY),
            "{named}"
        );

        // One write on the primary: the replica holds it back DELAY seconds, its lag climbing meanwhile.
        run(
            &mut primary_admin,
            "REPLACE INTO dbwatch_test.t (id, v) VALUES (8, UNIX_TIMESTAMP())",
        )
        .await;
        let written = Instant::now();
        let mut highest = 0.0_f64;
        let mut samples = Vec::new();
        let lagging = poll_until(
            &mut replica,
            Duration::from_secs(u64::from(DELAY) + 5),
            "lag to reach DELAY - 2 s",
            |collected| {
                let lag = fleet_lag(collected).unwrap_or(f64::NAN);
                samples.push(lag);
                highest = highest.max(lag);
                lag >= f64::from(DELAY) - 2.0
            },
        )
        .await;
        assert_eq!(
            must(&lagging, "db_replication_healthy", &REPLICA_LABEL),
            1.0,
            "{named}: a delayed replica is lagging, not broken"
        );
        let rising: Vec<f64> = samples.iter().copied().filter(|lag| lag.is_finite()).collect();
        assert!(
            rising.windows(2).all(|pair| pair[1] >= pair[0]),
            "{named}: lag went down while the event was held: {rising:?}"
        );
        // Then the event is applied and the lag falls back to 0.
        let caught_up = poll_until(
            &mut replica,
            Duration::from_secs(u64::from(DELAY) + 10),
            "lag to fall to 0",
            healthy_replica,
        )
        .await;
        let took = written.elapsed();
        eprintln!(
            "[mysql8] {named}: SOURCE_DELAY={DELAY}: lag rose to {highest} s, back to 0 after {took:?}"
        );
        assert!(
            took >= Duration::from_secs(u64::from(DELAY) - 1),
            "{named}: caught up after {took:?}, before the delay"
        );
        assert_eq!(
            must(&caught_up, "mysql_replica_sql_delay_seconds", &CHANNEL),
            f64::from(DELAY)
        );
    })
    .await;
}

#[tokio::test]
async fn each_channel_is_reported_and_a_broken_one_makes_the_replica_unhealthy() {
    let _serial = SERIAL.lock().await;
    let named = server(&mut admin(REPLICA_ADMIN).await).await;
    restoring_replication(async move {
        let mut replica_admin = admin(REPLICA_ADMIN).await;
        // A second source that is never reachable: its receiver thread keeps connecting.
        run(
            &mut replica_admin,
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = 1, SOURCE_USER = 'repl', \
             SOURCE_PASSWORD = 'repl', SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, \
             GET_SOURCE_PUBLIC_KEY = 1 FOR CHANNEL 'unreachable'",
        )
        .await;
        run(&mut replica_admin, "START REPLICA FOR CHANNEL 'unreachable'").await;
        let unreachable = [("channel", "unreachable")];
        let mut replica = collector(REPLICA, REPLICA_TARGET);
        let collected = poll_until(
            &mut replica,
            Duration::from_secs(15),
            "the unreachable channel's connect error",
            |collected| {
                value(
                    collected,
                    "mysql_replica_last_errno",
                    &[
                        ("channel", "unreachable"),
                        ("thread", "io"),
                        ("error_class", "connect"),
                    ],
                )
                .is_some_and(|errno| errno >= 2000.0)
            },
        )
        .await;
        assert_eq!(view_error(&collected, "replica_status"), Some(None));
        // The default channel is fine and says so under its own label...
        assert_eq!(must(&collected, "mysql_replica_io_running", &CHANNEL), 1.0, "{named}");
        assert_eq!(must(&collected, "mysql_replica_sql_running", &CHANNEL), 1.0);
        assert_eq!(must(&collected, "mysql_replica_lag_seconds", &CHANNEL), 0.0);
        // ... the other one is connecting (not Yes), with no lag ...
        assert_eq!(must(&collected, "mysql_replica_io_running", &unreachable), 0.0);
        assert_eq!(must(&collected, "mysql_replica_sql_running", &unreachable), 1.0);
        assert!(must(&collected, "mysql_replica_lag_seconds", &unreachable).is_nan());
        // ... and the replica as one fleet member is as bad as its worst channel.
        assert!(must(&collected, "db_replication_lag_seconds", &REPLICA_LABEL).is_nan());
        assert_eq!(
            must(&collected, "db_replication_healthy", &REPLICA_LABEL),
            0.0
        );
        let channels = collected
            .samples
            .iter()
            .filter(|sample| sample.name() == "mysql_replica_io_running")
            .count();
        assert_eq!(channels, 2, "{named}: one series per channel");
    })
    .await;
}

#[tokio::test]
async fn the_heartbeat_account_writes_and_the_monitor_reads_lag_through_a_stopped_sql_thread() {
    let _serial = SERIAL.lock().await;
    let named = server(&mut admin(ADMIN).await).await;
    restoring_replication(async move {
        let mut primary_admin = admin(ADMIN).await;
        test_table(&mut primary_admin).await;
        let heartbeat = |write: bool| {
            Some(HeartbeatOptions {
                table: "dbwatch.heartbeat".into(),
                write,
            })
        };
        // The fleet's own accounts: the separate writer on the primary, the monitor on the replica.
        let mut writer = MysqlCollector::new(MysqlOptions {
            heartbeat: heartbeat(true),
            ..options(HEARTBEAT, PRIMARY_TARGET)
        });
        let mut reader = MysqlCollector::new(MysqlOptions {
            heartbeat: heartbeat(false),
            ..options(REPLICA, REPLICA_TARGET)
        });

        let written = poll(&mut writer).await;
        for view in &written.views {
            assert_eq!(view.error, None, "{named}: writer view {} failed", view.view);
        }
        assert_eq!(written.views.len(), 7, "{:?}", written.views);
        let caught_up = poll_until(&mut reader, Duration::from_secs(10), "a fresh heartbeat", |collected| {
            healthy_replica(collected)
                && value(collected, "mysql_heartbeat_lag_seconds", &CHANNEL).is_some_and(|lag| lag < 2.0)
        })
        .await;
        assert_eq!(view_error(&caught_up, "heartbeat_read"), Some(None));
        assert_eq!(caught_up.views.len(), 7, "{:?}", caught_up.views);

        let mut replica_admin = admin(REPLICA_ADMIN).await;
        run(&mut replica_admin, "STOP REPLICA SQL_THREAD").await;
        let end = Instant::now() + Duration::from_secs(15);
        let mut index = 0;
        loop {
            let written = poll(&mut writer).await;
            assert_eq!(view_error(&written, "heartbeat_write"), Some(None));
            run(&mut primary_admin, &format!("REPLACE INTO dbwatch_test.t (id, v) VALUES (7, {index})")).await;
            index += 1;
            let stopped = poll(&mut reader).await;
            assert_eq!(must(&stopped, "mysql_replica_sql_running", &CHANNEL), 0.0);
            assert!(must(&stopped, "db_replication_lag_seconds", &REPLICA_LABEL).is_nan());
            assert_eq!(must(&stopped, "db_replication_healthy", &REPLICA_LABEL), 0.0);
            // Seconds_Behind_Source says nothing; the heartbeat still tells how old the data is.
            let heartbeat_lag = must(&stopped, "mysql_heartbeat_lag_seconds", &CHANNEL);
            if heartbeat_lag >= 2.0 {
                eprintln!("[mysql8] {named}: heartbeat lag {heartbeat_lag:.3} s with the SQL thread stopped");
                break;
            }
            assert!(Instant::now() < end, "{named}: heartbeat lag stayed at {heartbeat_lag}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        run(&mut replica_admin, "START REPLICA SQL_THREAD").await;
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            poll(&mut writer).await;
            let recovered = poll(&mut reader).await;
            let fresh = value(&recovered, "mysql_heartbeat_lag_seconds", &CHANNEL).is_some_and(|lag| lag < 1.5);
            if healthy_replica(&recovered) && fresh {
                break;
            }
            assert!(Instant::now() < end, "replication did not recover: {:#?}", recovered.samples);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // The monitor may read the heartbeat but never write it.
        let mut not_a_writer = MysqlCollector::new(MysqlOptions {
            heartbeat: heartbeat(true),
            ..options(PRIMARY, PRIMARY_TARGET)
        });
        let denied = poll(&mut not_a_writer).await;
        assert_eq!(view_error(&denied, "heartbeat_write"), Some(Some(ErrorKind::Auth)));
    })
    .await;
}

#[tokio::test]
async fn top_digests_are_bounded_and_labelled_by_sha256_hash_only() {
    let _serial = SERIAL.lock().await;
    let mut primary_admin = admin(ADMIN).await;
    let named = server(&mut primary_admin).await;
    test_table(&mut primary_admin).await;
    for statement in [
        "SELECT COUNT(*) FROM dbwatch_test.t",
        "SELECT MAX(v) FROM dbwatch_test.t",
        "SELECT v FROM dbwatch_test.t WHERE id = 7",
        "SELECT SLEEP(0.05)",
        "SELECT 1 + 1",
    ] {
        run(&mut primary_admin, statement).await;
    }
    const LIMIT: usize = 3;
    let mut primary = MysqlCollector::new(MysqlOptions {
        views: MysqlViews {
            top_digests: LIMIT,
            ..MysqlViews::default()
        },
        ..options(PRIMARY, PRIMARY_TARGET)
    });
    for _ in 0..2 {
        let collected = poll(&mut primary).await;
        assert_eq!(
            view_error(&collected, "events_statements_summary_by_digest"),
            Some(None),
            "{named}"
        );
        assert_eq!(collected.views.len(), 7);
        let digests: Vec<_> = collected
            .samples
            .iter()
            .filter(|sample| sample.name() == "mysql_digest_seconds_total")
            .collect();
        assert_eq!(digests.len(), LIMIT, "{digests:#?}");
        for sample in digests {
            let labels: Vec<&str> = sample.labels.iter().map(|(name, _)| name).collect();
            assert_eq!(labels, ["schema", "digest"]);
            let digest = sample.label("digest").expect("digest label");
            // MySQL 8.0 digests are SHA-256 (64 hex digits); 5.7 and MariaDB's are MD5 (32).
            assert!(
                digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
                "{named}: digest label {digest:?} is not a SHA-256 hash"
            );
            assert!(sample.value >= 0.0);
        }
    }
}

#[tokio::test]
async fn a_blocked_select_is_cut_by_max_execution_time_and_the_poll_goes_on() {
    let _serial = SERIAL.lock().await;
    let mut primary_admin = admin(ADMIN).await;
    let named = server(&mut primary_admin).await;
    let mut writer = MysqlCollector::new(MysqlOptions {
        statement_timeout: Duration::from_secs(1),
        heartbeat: Some(HeartbeatOptions {
            table: "dbwatch.heartbeat".into(),
            write: true,
        }),
        ..options(HEARTBEAT, PRIMARY_TARGET)
    });
    poll(&mut writer).await;
    // The lock holder blocks the heartbeat write (a REPLACE: MySQL's max_execution_time covers SELECT only,
    // the session's lock_wait_timeout of 1 s cuts it).
    let mut holder = admin(ADMIN).await;
    run(&mut holder, "LOCK TABLES dbwatch.heartbeat WRITE").await;
    let started = Instant::now();
    let blocked = poll(&mut writer).await;
    let took = started.elapsed();
    run(&mut holder, "UNLOCK TABLES").await;
    assert_eq!(
        view_error(&blocked, "heartbeat_write"),
        Some(Some(ErrorKind::Timeout)),
        "{named}"
    );
    assert_eq!(
        view_error(&blocked, "events_statements_summary_global_by_event_name"),
        Some(None)
    );
    assert!(
        took < Duration::from_millis(2500),
        "{named}: the blocked poll took {took:?}"
    );
    let unblocked = poll(&mut writer).await;
    assert_eq!(view_error(&unblocked, "heartbeat_write"), Some(None));
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    let _serial = SERIAL.lock().await;
    let named = server(&mut admin(ADMIN).await).await;
    for mode in [MysqlTlsMode::Disabled, MysqlTlsMode::Required] {
        let mut options = options_with_tls(PRIMARY, PRIMARY_TARGET, mode);
        options.connection.password = Some(PasswordSource::Inline(Secret::new("wrong".into())));
        let mut collector = MysqlCollector::new(options);
        let error = collector.collect().await.expect_err("wrong password");
        assert_eq!(
            error.kind(),
            ErrorKind::Auth,
            "{named}, TLS {mode:?}: {error}"
        );
    }
}

#[tokio::test]
async fn innodb_reports_transactions_row_lock_waits_and_deadlocks() {
    let _serial = SERIAL.lock().await;
    let mut monitored = collector(PRIMARY, PRIMARY_TARGET);
    innodb_contention_shows(|| admin(ADMIN), async || poll(&mut monitored).await).await;
}
