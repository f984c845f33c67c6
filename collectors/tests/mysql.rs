//! The MySQL/MariaDB collector against the real local fleet: a MariaDB 10.11 primary and its GTID replica,
//! started by `deploy/local/fleet up mariadb`. These tests fail, never skip, when the fleet is missing.
//!
//! They share one primary and one replica and some of them stop replication on purpose, so they take a
//! process-wide lock and run one at a time; each that changes replication restores it even when its
//! assertions fail (the body runs in a task; the restore runs after it, whatever happened).
//!
//! MySQL 8.0 has its own suite on the fleet's real 8.0.31 pair (collectors/tests/mysql8.rs); 8.4 cannot be had
//! here, so the parser tests on the fixtures transcribed from the vendor manuals (collectors/tests/fixtures/mysql/)
//! live beside the parsers, in the module's unit tests.

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
const COMPONENT: &str = "mariadb";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PRIMARY: &str = "DBWATCH_MYSQL_PRIMARY_URL";
const REPLICA: &str = "DBWATCH_MYSQL_REPLICA_URL";
const ADMIN: &str = "DBWATCH_MYSQL_ADMIN_URL";
const REPLICA_ADMIN: &str = "DBWATCH_MYSQL_REPLICA_ADMIN_URL";

fn options(variable: &str, target: &str) -> MysqlOptions {
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
                mode: MysqlTlsMode::Disabled,
                ..MysqlTls::default()
            },
            connect_timeout: Duration::from_secs(3),
        },
        statement_timeout: Duration::from_secs(2),
        views: MysqlViews::default(),
        heartbeat: None,
    }
}

fn collector(variable: &str, target: &str) -> MysqlCollector {
    MysqlCollector::new(options(variable, target))
}

async fn admin(variable: &str) -> MySqlConnection {
    let url = fleet_url(variable, COMPONENT);
    MySqlConnection::connect(&url.raw)
        .await
        .unwrap_or_else(|error| {
            panic!("cannot connect to {variable}: {error}; run `deploy/local/fleet up mariadb`")
        })
}

async fn poll(collector: &mut dyn Collector) -> Collected {
    collector.collect().await.unwrap_or_else(|error| {
        panic!("poll failed: {error}; is the fleet up (`deploy/local/fleet up mariadb`)?")
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

fn healthy_replica(collected: &Collected) -> bool {
    value(
        collected,
        "db_replication_healthy",
        &[("replica", "mysql-replica")],
    ) == Some(1.0)
        && value(
            collected,
            "db_replication_lag_seconds",
            &[("replica", "mysql-replica")],
        ) == Some(0.0)
}

/// Runs `body` and then restarts replication on the replica and waits for it to be healthy, whether the
/// body passed or panicked, so that a failing test does not leave the shared replica broken.
async fn restoring_replication(body: impl Future<Output = ()> + Send + 'static) {
    let outcome = tokio::spawn(body).await;
    let mut replica_admin = admin(REPLICA_ADMIN).await;
    run(&mut replica_admin, "START SLAVE").await;
    let mut replica = collector(REPLICA, "mysql-replica");
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
async fn statements_by_monitoring_user(primary_admin: &mut MySqlConnection) -> f64 {
    let row = sqlx::raw_sql(
        "SELECT CAST(COALESCE(SUM(COUNT_STAR), 0) AS DOUBLE) AS n \
         FROM performance_schema.events_statements_summary_by_user_by_event_name WHERE USER = 'dbwatch'",
    )
    .fetch_one(&mut *primary_admin)
    .await
    .expect("count the monitoring user's statements");
    row.try_get::<f64, _>("n").expect("a count")
}

#[tokio::test]
async fn every_view_answers_for_the_monitoring_role_on_both_servers() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector(PRIMARY, "mysql-primary");
    let collected = poll(&mut primary).await;
    for view in &collected.views {
        assert_eq!(view.error, None, "primary view {} failed", view.view);
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
        ]
    );
    assert!(must(&collected, "mysql_server_version_num", &[]) >= 100_000.0);
    assert_eq!(
        must(&collected, "mysql_server_info", &[("flavour", "mariadb")]),
        1.0
    );
    for capability in ["performance_schema", "statement_timeout"] {
        assert_eq!(
            must(
                &collected,
                "mysql_capability_available",
                &[("capability", capability)]
            ),
            1.0,
            "{capability}"
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
        must(&collected, "mysql_binlog_format", &[("format", "MIXED")]),
        0.0
    );
    assert!(must(&collected, "mysql_binlog_files", &[]) >= 1.0);
    assert!(must(&collected, "mysql_binlog_size_bytes", &[]) > 0.0);
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
    assert_eq!(
        pages,
        must(&collected, "mysql_innodb_buffer_pool_size_pages", &[])
    );
    // 64 MiB of 16 KiB pages, less the few InnoDB keeps for itself.
    let size_pages = must(&collected, "mysql_innodb_buffer_pool_size_pages", &[]);
    assert!(
        (0.9 * 4096.0..=4096.0).contains(&size_pages),
        "{size_pages} pages"
    );
    let cumulative = must(
        &collected,
        "mysql_innodb_buffer_pool_cumulative_hit_ratio",
        &[],
    );
    assert!(
        (0.0..=1.0).contains(&cumulative),
        "cumulative hit ratio {cumulative}"
    );

    let mut replica = collector(REPLICA, "mysql-replica");
    let collected = poll_until(
        &mut replica,
        Duration::from_secs(10),
        "a healthy replica",
        healthy_replica,
    )
    .await;
    for view in &collected.views {
        assert_eq!(view.error, None, "replica view {} failed", view.view);
    }
    assert_eq!(must(&collected, "mysql_replica_configured", &[]), 1.0);
    assert_eq!(must(&collected, "mysql_read_only", &[]), 1.0);
    let channel = [("channel", "")];
    assert_eq!(must(&collected, "mysql_replica_io_running", &channel), 1.0);
    assert_eq!(must(&collected, "mysql_replica_sql_running", &channel), 1.0);
    assert_eq!(must(&collected, "mysql_replica_lag_seconds", &channel), 0.0);
    assert_eq!(
        must(
            &collected,
            "mysql_replica_last_errno",
            &[("channel", ""), ("thread", "io"), ("error_class", "none")]
        ),
        0.0
    );
    assert!(
        must(
            &collected,
            "mysql_replica_exec_source_log_position_bytes",
            &channel
        ) > 0.0
    );
    assert!(must(&collected, "mysql_replica_relay_log_space_bytes", &channel) > 0.0);
}

/// Measures what one poll costs each server, in statements (counted by the server itself for the monitoring
/// user) and in wall time. Run with `--nocapture` to see the figures.
#[tokio::test]
async fn a_poll_costs_at_most_seven_statements() {
    let _serial = SERIAL.lock().await;
    for (variable, admin_variable, target) in [
        (PRIMARY, ADMIN, "mysql-primary"),
        (REPLICA, REPLICA_ADMIN, "mysql-replica"),
    ] {
        let mut server_admin = admin(admin_variable).await;
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
            "{target}: {per_poll} statements per poll counted by the server ({} views), \
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
        // The server may not have folded the very last statement into the per-user summary yet.
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
    test_table(&mut primary_admin).await;
    run(
        &mut primary_admin,
        "DELETE FROM dbwatch_test.t WHERE id BETWEEN 1000 AND 1999",
    )
    .await;
    let mut primary = collector(PRIMARY, "mysql-primary");
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
    assert!(
        moved("mysql_questions_total", &[]) >= 2.0 * n,
        "questions moved {}",
        moved("mysql_questions_total", &[])
    );
    assert!(moved("mysql_queries_total", &[]) >= 2.0 * n);
    assert!(moved("mysql_commands_total", &[("command", "select")]) >= n);
    assert!(moved("mysql_commands_total", &[("command", "insert")]) >= n);
    // The rate is over the interval between the two answers, which is shorter than the bound measured here.
    let select_rate = must(
        &after,
        "mysql_commands_per_second",
        &[("command", "select")],
    );
    assert!(
        select_rate >= n / interval_bound,
        "select rate {select_rate}/s for {N} selects in < {interval_bound}s"
    );
    let questions_rate = must(&after, "mysql_questions_per_second", &[]);
    assert!(
        questions_rate >= 2.0 * n / interval_bound,
        "questions rate {questions_rate}/s"
    );
    run(
        &mut primary_admin,
        "DELETE FROM dbwatch_test.t WHERE id BETWEEN 1000 AND 1999",
    )
    .await;
}

#[tokio::test]
async fn a_slow_statement_raises_the_latency_and_the_slow_query_count() {
    let _serial = SERIAL.lock().await;
    // Connected before the first poll, so that its connection setup falls outside the measured interval.
    let mut primary_admin = admin(ADMIN).await;
    let mut primary = collector(PRIMARY, "mysql-primary");
    let before = poll(&mut primary).await;
    run(&mut primary_admin, "SELECT SLEEP(0.3)").await;
    let after = poll(&mut primary).await;
    let moved = |name: &str| must(&after, name, &[]) - must(&before, name, &[]);
    assert!(
        moved("mysql_slow_queries_total") >= 1.0,
        "long_query_time is 0.2 s on the fleet"
    );
    assert!(moved("mysql_perf_schema_statement_seconds_total") >= 0.29);
    let statements = moved("mysql_perf_schema_statements_total");
    let latency = must(&after, "db_query_latency_avg_seconds", &[]);
    // Only the sleep and at most a few fast statements completed outside dbwatch's user in the interval.
    assert!(
        latency >= 0.29 / statements,
        "latency {latency} over {statements} statements"
    );
    // One 0.3 s sleep among the interval's statements, dbwatch's own seven included: clearly above the
    // sub-millisecond baseline.
    assert!(
        latency > 0.035,
        "latency {latency} over {statements} statements"
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
async fn dbwatch_own_statements_count_in_the_latency_by_default() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector(PRIMARY, "mysql-primary");
    let statements = statements_over_two_polls(&mut primary).await;
    // The first poll's statement-totals query completes after it read the totals, then the second poll's
    // five statements and the four of the third before its own read: ten of dbwatch's, whatever else ran.
    assert!(
        statements >= 10.0,
        "{statements} statements counted over two intervals"
    );
}

#[tokio::test]
async fn exclude_own_statements_leaves_dbwatch_out_of_the_latency() {
    let _serial = SERIAL.lock().await;
    let mut options = options(PRIMARY, "mysql-primary");
    options.views.exclude_own_statements = true;
    let mut primary = MysqlCollector::new(options);
    let statements = statements_over_two_polls(&mut primary).await;
    // Two polls are ten statements of dbwatch's own; none of them may show.
    assert!(
        statements < 5.0,
        "{statements} statements counted over two idle intervals"
    );
}

#[tokio::test]
async fn extra_idle_connections_move_utilization_by_n_over_max() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector(PRIMARY, "mysql-primary");
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
    assert!(
        (moved - EXTRA as f64 / max).abs() < 1e-9,
        "utilization moved by {moved}, expected {}",
        EXTRA as f64 / max
    );
    assert!(must(&after, "mysql_max_used_connections", &[]) >= active_before + EXTRA as f64);
    drop(held);
}

#[tokio::test]
async fn a_row_lock_on_the_replica_grows_lag_while_threads_run_and_release_clears_it() {
    let _serial = SERIAL.lock().await;
    restoring_replication(async {
        let mut primary_admin = admin(ADMIN).await;
        test_table(&mut primary_admin).await;
        run(
            &mut primary_admin,
            "REPLACE INTO dbwatch_test.t (id, v) VALUES (42, 0)",
        )
        .await;
        let mut replica = collector(REPLICA, "mysql-replica");
        poll_until(
            &mut replica,
            Duration::from_secs(10),
            "the row to replicate",
            healthy_replica,
        )
        .await;

        // Hold the row on the replica: the SQL thread blocks applying the primary's update to it while both
        // replication threads keep running, so Seconds_Behind_Master grows (until innodb_lock_wait_timeout,
        // 50 s on the fleet).
        let mut holder = admin(REPLICA_ADMIN).await;
        run(&mut holder, "BEGIN").await;
        run(
            &mut holder,
            "SELECT v FROM dbwatch_test.t WHERE id = 42 FOR UPDATE",
        )
        .await;
        run(
            &mut primary_admin,
            "UPDATE dbwatch_test.t SET v = v + 1 WHERE id = 42",
        )
        .await;
        let replica_label = [("replica", "mysql-replica")];
        let lagging = poll_until(
            &mut replica,
            Duration::from_secs(15),
            "lag to reach 2 s",
            |collected| {
                value(collected, "db_replication_lag_seconds", &replica_label)
                    .is_some_and(|lag| lag >= 2.0)
            },
        )
        .await;
        assert_eq!(
            must(&lagging, "db_replication_healthy", &replica_label),
            1.0
        );
        assert_eq!(
            must(&lagging, "mysql_replica_sql_running", &[("channel", "")]),
            1.0
        );

        run(&mut holder, "ROLLBACK").await;
        poll_until(
            &mut replica,
            Duration::from_secs(15),
            "lag to clear",
            healthy_replica,
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_stopped_sql_thread_grows_heartbeat_lag_and_is_unhealthy_then_recovers() {
    let _serial = SERIAL.lock().await;
    restoring_replication(async {
        let mut primary_admin = admin(ADMIN).await;
        run(&mut primary_admin, "CREATE DATABASE IF NOT EXISTS dbwatch").await;
        run(
            &mut primary_admin,
            "CREATE TABLE IF NOT EXISTS dbwatch.heartbeat (id INT UNSIGNED NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL)",
        )
        .await;
        test_table(&mut primary_admin).await;
        let heartbeat = |write: bool| {
            Some(HeartbeatOptions {
                table: "dbwatch.heartbeat".into(),
                write,
            })
        };
        // Writing the heartbeat takes a role with write access: the admin account stands in for it here.
        let mut writer = MysqlCollector::new(MysqlOptions {
            heartbeat: heartbeat(true),
            ..options(ADMIN, "mysql-primary")
        });
        let mut reader = MysqlCollector::new(MysqlOptions {
            heartbeat: heartbeat(false),
            ..options(REPLICA_ADMIN, "mysql-replica")
        });
        let channel = [("channel", "")];
        let replica_label = [("replica", "mysql-replica")];

        poll(&mut writer).await;
        let caught_up = poll_until(&mut reader, Duration::from_secs(10), "a fresh heartbeat", |collected| {
            healthy_replica(collected)
                && value(collected, "mysql_heartbeat_lag_seconds", &channel).is_some_and(|lag| lag < 2.0)
        })
        .await;
        assert_eq!(view_error(&caught_up, "heartbeat_read"), Some(None));
        // The heartbeat is the seventh statement of a poll, on either side.
        assert_eq!(caught_up.views.len(), 7, "{:?}", caught_up.views);
        let written = poll(&mut writer).await;
        assert_eq!(written.views.len(), 7, "{:?}", written.views);
        assert_eq!(view_error(&written, "heartbeat_write"), Some(None));

        let mut replica_admin = admin(REPLICA_ADMIN).await;
        run(&mut replica_admin, "STOP SLAVE SQL_THREAD").await;
        let end = Instant::now() + Duration::from_secs(15);
        let mut index = 0;
        loop {
            let written = poll(&mut writer).await;
            assert_eq!(view_error(&written, "heartbeat_write"), Some(None));
            run(&mut primary_admin, &format!("REPLACE INTO dbwatch_test.t (id, v) VALUES (7, {index})")).await;
            index += 1;
            let stopped = poll(&mut reader).await;
            // With the SQL thread stopped the server reports no lag: unknown and unhealthy, never 0.
            assert_eq!(must(&stopped, "mysql_replica_sql_running", &channel), 0.0);
            assert!(must(&stopped, "mysql_replica_lag_seconds", &channel).is_nan());
            assert!(must(&stopped, "db_replication_lag_seconds", &replica_label).is_nan());
            assert_eq!(must(&stopped, "db_replication_healthy", &replica_label), 0.0);
            let heartbeat_lag = must(&stopped, "mysql_heartbeat_lag_seconds", &channel);
            if heartbeat_lag >= 2.0 {
                break;
            }
            assert!(Instant::now() < end, "heartbeat lag stayed at {heartbeat_lag}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        run(&mut replica_admin, "START SLAVE SQL_THREAD").await;
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            poll(&mut writer).await;
            let recovered = poll(&mut reader).await;
            let fresh = value(&recovered, "mysql_heartbeat_lag_seconds", &channel).is_some_and(|lag| lag < 1.5);
            if healthy_replica(&recovered) && fresh {
                break;
            }
            assert!(Instant::now() < end, "replication did not recover: {:#?}", recovered.samples);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // The monitoring role cannot read the table: that view is recorded as failed, the poll goes on.
        let mut monitor = MysqlCollector::new(MysqlOptions {
            heartbeat: heartbeat(false),
            ..options(REPLICA, "mysql-replica")
        });
        let denied = poll(&mut monitor).await;
        assert_eq!(view_error(&denied, "heartbeat_read"), Some(Some(ErrorKind::Auth)));
        assert_eq!(must(&denied, "db_replication_healthy", &replica_label), 1.0);
    })
    .await;
}

#[tokio::test]
async fn a_fully_stopped_replica_is_broken_not_zero_lag() {
    let _serial = SERIAL.lock().await;
    restoring_replication(async {
        let mut replica_admin = admin(REPLICA_ADMIN).await;
        run(&mut replica_admin, "STOP SLAVE").await;
        let mut replica = collector(REPLICA, "mysql-replica");
        let stopped = poll(&mut replica).await;
        let channel = [("channel", "")];
        let replica_label = [("replica", "mysql-replica")];
        assert_eq!(must(&stopped, "mysql_replica_configured", &[]), 1.0);
        assert_eq!(must(&stopped, "mysql_replica_io_running", &channel), 0.0);
        assert_eq!(must(&stopped, "mysql_replica_sql_running", &channel), 0.0);
        assert!(must(&stopped, "mysql_replica_lag_seconds", &channel).is_nan());
        assert!(must(&stopped, "db_replication_lag_seconds", &replica_label).is_nan());
        assert_eq!(
            must(&stopped, "db_replication_healthy", &replica_label),
            0.0
        );

        run(&mut replica_admin, "START SLAVE").await;
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
async fn top_digests_are_bounded_and_labelled_by_hash_only() {
    let _serial = SERIAL.lock().await;
    let mut primary_admin = admin(ADMIN).await;
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
        ..options(PRIMARY, "mysql-primary")
    });
    for _ in 0..2 {
        let collected = poll(&mut primary).await;
        assert_eq!(
            view_error(&collected, "events_statements_summary_by_digest"),
            Some(None)
        );
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
            assert!(
                (digest.len() == 32 || digest.len() == 64)
                    && digest.chars().all(|c| c.is_ascii_hexdigit()),
                "digest label {digest:?} is not a hash"
            );
        }
    }
}

#[tokio::test]
async fn a_blocked_statement_is_cut_by_the_server_side_timeout_and_the_poll_goes_on() {
    let _serial = SERIAL.lock().await;
    let mut primary_admin = admin(ADMIN).await;
    run(&mut primary_admin, "CREATE DATABASE IF NOT EXISTS dbwatch").await;
    run(
        &mut primary_admin,
        "CREATE TABLE IF NOT EXISTS dbwatch.heartbeat (id INT UNSIGNED NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL)",
    )
    .await;
    let mut writer = MysqlCollector::new(MysqlOptions {
        statement_timeout: Duration::from_secs(1),
        heartbeat: Some(HeartbeatOptions {
            table: "dbwatch.heartbeat".into(),
            write: true,
        }),
        ..options(ADMIN, "mysql-primary")
    });
    poll(&mut writer).await;
    // The lock holder's session blocks the heartbeat write on the table's lock; the server cuts it.
    let mut holder = admin(ADMIN).await;
    run(&mut holder, "LOCK TABLES dbwatch.heartbeat WRITE").await;
    let started = Instant::now();
    let blocked = poll(&mut writer).await;
    let took = started.elapsed();
    run(&mut holder, "UNLOCK TABLES").await;
    assert_eq!(
        view_error(&blocked, "heartbeat_write"),
        Some(Some(ErrorKind::Timeout))
    );
    assert_eq!(
        view_error(&blocked, "events_statements_summary_global_by_event_name"),
        Some(None)
    );
    assert!(
        took < Duration::from_millis(2500),
        "the blocked poll took {took:?}"
    );
    let unblocked = poll(&mut writer).await;
    assert_eq!(view_error(&unblocked, "heartbeat_write"), Some(None));
}

#[tokio::test]
async fn a_dead_port_fails_fast_as_a_connect_error_then_backs_off() {
    let _serial = SERIAL.lock().await;
    let mut dead = MysqlCollector::new(MysqlOptions {
        connection: MysqlConnectionOptions {
            port: 1,
            ..options(PRIMARY, "mysql-dead").connection
        },
        ..options(PRIMARY, "mysql-dead")
    });
    let started = Instant::now();
    let error = dead.collect().await.expect_err("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Connect);
    assert!(started.elapsed() < Duration::from_secs(3));
    let again = dead.collect().await.expect_err("still down");
    assert!(again.to_string().contains("backing off"), "{again}");
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    let _serial = SERIAL.lock().await;
    let mut options = options(PRIMARY, "mysql-primary");
    options.connection.password = Some(PasswordSource::Inline(Secret::new("wrong".into())));
    let mut collector = MysqlCollector::new(options);
    let error = collector.collect().await.expect_err("wrong password");
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
}

#[tokio::test]
async fn innodb_reports_transactions_row_lock_waits_and_deadlocks() {
    let _serial = SERIAL.lock().await;
    let mut monitored = collector(PRIMARY, "mariadb-primary");
    innodb_contention_shows(|| admin(ADMIN), async || poll(&mut monitored).await).await;
}
