//! The PostgreSQL and PgBouncer collectors against the real local fleet: primary, streaming replica and PgBouncer
//! started by `deploy/local/fleet up postgres`. These tests fail, never skip, when the fleet is missing.
//!
//! They share one primary and one replica and some of them break replication on purpose, so they take a
//! process-wide lock and run one at a time; each restores what it changed even when its assertions fail.

#![cfg(feature = "postgres")]

use std::time::Duration;

use dbwatch_collectors::pgbouncer::PgBouncerCollector;
use dbwatch_collectors::postgres::{
    PgConnectionOptions, PgTls, PgTlsMode, PostgresCollector, PostgresOptions, PostgresViews,
};
use dbwatch_collectors::secret::{PasswordSource, Secret};
use dbwatch_collectors::{Collected, Collector, ErrorKind};
use sqlx::{Connection, Executor, PgConnection};
use tokio::time::Instant;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A connection URL from the fleet's environment, split into the collector's options.
struct Url {
    user: String,
    password: String,
    host: String,
    port: u16,
    database: String,
    raw: String,
}

fn fleet_url(variable: &str) -> Url {
    let raw = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run `eval \"$(deploy/local/fleet env postgres)\"` after `deploy/local/fleet up postgres`")
    });
    let rest = raw
        .strip_prefix("postgres://")
        .unwrap_or_else(|| panic!("{variable} is not a postgres:// URL"));
    let (credentials, rest) = rest.split_once('@').expect("user:password@ in the URL");
    let (user, password) = credentials
        .split_once(':')
        .expect("user:password in the URL");
    let (address, database) = rest.split_once('/').expect("/database in the URL");
    let (host, port) = address.split_once(':').expect("host:port in the URL");
    Url {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.parse().expect("numeric port"),
        database: database.into(),
        raw,
    }
}

fn connection_options(url: &Url, target: &str) -> PgConnectionOptions {
    PgConnectionOptions {
        target: target.into(),
        host: url.host.clone(),
        port: url.port,
        user: url.user.clone(),
        database: url.database.clone(),
        password: Some(PasswordSource::Inline(Secret::new(url.password.clone()))),
        tls: PgTls {
            mode: PgTlsMode::Disable,
            ..PgTls::default()
        },
        connect_timeout: Duration::from_secs(3),
    }
}

fn collector(variable: &str, target: &str) -> PostgresCollector {
    PostgresCollector::new(PostgresOptions {
        connection: connection_options(&fleet_url(variable), target),
        statement_timeout: Duration::from_secs(2),
        lock_timeout: Duration::from_millis(500),
        views: PostgresViews {
            top_statements: 5,
            ..PostgresViews::default()
        },
    })
}

async fn admin(variable: &str) -> PgConnection {
    let url = fleet_url(variable);
    PgConnection::connect(&url.raw)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {variable}: {error}; is the fleet up?"))
}

async fn poll(collector: &mut dyn Collector) -> Collected {
    collector
        .collect()
        .await
        .unwrap_or_else(|error| panic!("poll failed: {error}"))
}

fn value(collected: &Collected, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    collected
        .samples
        .iter()
        .find(|sample| {
            sample.name() == name
                && labels
                    .iter()
                    .all(|(label, wanted)| sample.label(label) == Some(*wanted))
        })
        .map(|sample| sample.value)
}

fn must(collected: &Collected, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(collected, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:#?}", collected.samples))
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn every_view_answers_for_a_pg_monitor_role() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let collected = poll(&mut primary).await;
    for view in &collected.views {
        assert_eq!(view.error, None, "view {} failed", view.view);
    }
    let views: Vec<&str> = collected.views.iter().map(|view| view.view).collect();
    for expected in [
        "pg_stat_activity",
        "pg_stat_database",
        "pg_stat_statements",
        "pg_stat_statements_top",
        "pg_stat_replication",
        "pg_stat_archiver",
        "pg_stat_checkpointer",
    ] {
        assert!(
            views.contains(&expected),
            "{expected} missing from {views:?}"
        );
    }
    assert_eq!(must(&collected, "pg_statements_available", &[]), 1.0);
    assert!(must(&collected, "pg_server_version_num", &[]) >= 130_000.0);
    assert_eq!(must(&collected, "pg_in_recovery", &[]), 0.0);
    assert_eq!(must(&collected, "pg_archiver_enabled", &[]), 1.0);
}

#[tokio::test]
async fn reading_a_table_twice_raises_its_buffer_hit_ratio() {
    let _serial = SERIAL.lock().await;
    let mut admin_connection = admin("DBWATCH_PG_ADMIN_URL").await;
    // A database of its own, so that nothing else reads in it between the polls.
    admin_connection
        .execute("DROP DATABASE IF EXISTS dbwatch_hit_ratio_test")
        .await
        .expect("drop test database");
    admin_connection
        .execute("CREATE DATABASE dbwatch_hit_ratio_test")
        .await
        .expect("create test database");
    let mut admin_url = fleet_url("DBWATCH_PG_ADMIN_URL");
    admin_url.raw = admin_url.raw.replace("/shop", "/dbwatch_hit_ratio_test");
    let mut test_db = PgConnection::connect(&admin_url.raw)
        .await
        .expect("connect to the test database");
    test_db
        .execute("CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
        .await
        .expect("create and fill table");

    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let labels = [("database", "dbwatch_hit_ratio_test")];
    // The bulk write of CREATE TABLE AS goes through a small ring of buffers, so the first read finds most
    // pages outside shared buffers (reads); the second finds them cached (hits) and must raise the ratio.
    let mut ratios = Vec::new();
    for read in 1..=2 {
        let before = poll(&mut primary).await;
        let requests_before = must(&before, "pg_database_blocks_hit_total", &labels)
            + must(&before, "pg_database_blocks_read_total", &labels);
        test_db
            .execute("SELECT count(*) FROM t")
            .await
            .expect("read the table");
        // Backends flush their statistics to the shared counters about once a second; poll until they show.
        let after = poll_until(
            &mut primary,
            Duration::from_secs(10),
            "block counters to move",
            |collected| {
                let requests = value(collected, "pg_database_blocks_hit_total", &labels)
                    .unwrap_or(0.0)
                    + value(collected, "pg_database_blocks_read_total", &labels).unwrap_or(0.0);
                requests > requests_before + 500.0
            },
        )
        .await;
        ratios.push((read, must(&after, "pg_database_buffer_hit_ratio", &labels)));
    }
    drop(test_db);
    assert!(
        ratios[1].1 > ratios[0].1,
        "the second read should raise the hit ratio: {ratios:?}"
    );
    admin_connection
        .execute("DROP DATABASE dbwatch_hit_ratio_test WITH (FORCE)")
        .await
        .expect("drop test database");
}

#[tokio::test]
async fn extra_idle_connections_move_utilization_by_n_over_max() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let before = poll(&mut primary).await;
    let active_before = must(&before, "db_connections_active", &[]);
    let max = must(&before, "db_connections_max", &[]);
    let utilization_before = must(&before, "db_connections_utilization_ratio", &[]);
    assert_eq!(
        max,
        must(&before, "pg_settings_max_connections", &[])
            - must(&before, "pg_settings_reserved_connections", &[])
    );

    const EXTRA: usize = 6;
    let mut held = Vec::new();
    for _ in 0..EXTRA {
        held.push(admin("DBWATCH_PG_ADMIN_URL").await);
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
    let utilization_after = must(&after, "db_connections_utilization_ratio", &[]);
    let moved = utilization_after - utilization_before;
    assert!(
        (moved - EXTRA as f64 / max).abs() < 1e-9,
        "utilization moved by {moved}, expected {}",
        EXTRA as f64 / max
    );
    assert!(must(&after, "pg_connections_backends", &[("state", "idle")]) >= EXTRA as f64);
    drop(held);
}

#[tokio::test]
async fn a_slow_query_raises_the_average_latency() {
    let _serial = SERIAL.lock().await;
    let mut admin_connection = admin("DBWATCH_PG_ADMIN_URL").await;
    // A database of its own, so that its per-database mean holds nothing but this test's statements.
    admin_connection
        .execute("DROP DATABASE IF EXISTS dbwatch_latency_test")
        .await
        .expect("drop test database");
    admin_connection
        .execute("CREATE DATABASE dbwatch_latency_test")
        .await
        .expect("create test database");
    let mut url = fleet_url("DBWATCH_PG_ADMIN_URL");
    url.raw = url.raw.replace("/shop", "/dbwatch_latency_test");
    let mut sleeper = PgConnection::connect(&url.raw)
        .await
        .expect("connect to the test database");
    let labels = [("database", "dbwatch_latency_test")];
    // One fast statement first, so that the database has totals at the first poll to take a delta from.
    sleeper.execute("SELECT 1").await.expect("first statement");

    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let before = poll(&mut primary).await;
    sleeper
        .execute("SELECT pg_sleep(0.4)")
        .await
        .expect("pg_sleep");
    let after = poll(&mut primary).await;

    let latency = must(&after, "pg_statements_latency_avg_seconds", &labels);
    assert!(latency > 0.3, "mean latency of the test database {latency}");
    // The fleet mean covers every database; whatever else ran meanwhile, the sleep alone puts a floor under it:
    // at least 0.4 s of execution time spread over the calls of the interval.
    let calls = |collected: &Collected| -> f64 {
        collected
            .samples
            .iter()
            .filter(|sample| sample.name() == "pg_statements_calls_total")
            .map(|sample| sample.value)
            .sum()
    };
    let interval_calls = calls(&after) - calls(&before);
    let fleet = must(&after, "db_query_latency_avg_seconds", &[]);
    assert!(
        fleet >= 0.4 / interval_calls * 0.99,
        "fleet mean {fleet} below 0.4 s over {interval_calls} calls"
    );
    // An interval in which nothing completed in the database has no mean.
    let idle = poll(&mut primary).await;
    let idle_latency = value(&idle, "pg_statements_latency_avg_seconds", &labels);
    assert!(
        idle_latency.is_some_and(f64::is_nan),
        "idle interval latency {idle_latency:?}"
    );
    drop(sleeper);
    admin_connection
        .execute("DROP DATABASE dbwatch_latency_test WITH (FORCE)")
        .await
        .expect("drop test database");
}

#[tokio::test]
async fn replay_pause_grows_replica_lag_and_resume_clears_it() {
    let _serial = SERIAL.lock().await;
    let mut replica_admin = admin("DBWATCH_PG_REPLICA_ADMIN_URL").await;
    let mut primary_admin = admin("DBWATCH_PG_ADMIN_URL").await;
    let mut replica = collector("DBWATCH_PG_REPLICA_URL", "pg-replica");

    let baseline = poll(&mut replica).await;
    assert_eq!(must(&baseline, "pg_in_recovery", &[]), 1.0);
    assert_eq!(
        must(
            &baseline,
            "db_replication_healthy",
            &[("replica", "pg-replica")]
        ),
        1.0
    );

    replica_admin
        .execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let outcome = async {
        primary_admin
            .execute("CREATE TABLE IF NOT EXISTS dbwatch_lag_test (id serial, at timestamptz default now())")
            .await
            .expect("create lag table");
        let end = Instant::now() + Duration::from_secs(30);
        let mut lag = 0.0;
        while Instant::now() < end {
            primary_admin
                .execute("INSERT INTO dbwatch_lag_test DEFAULT VALUES")
                .await
                .expect("write on the primary");
            let collected = poll(&mut replica).await;
            lag = must(&collected, "db_replication_lag_seconds", &[("replica", "pg-replica")]);
            if lag > 3.0 {
                assert_eq!(must(&collected, "pg_standby_replay_paused", &[]), 1.0);
                return lag;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("lag stayed at {lag} while replay was paused and the primary wrote");
    }
    .await;
    replica_admin
        .execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    assert!(outcome > 3.0);

    let recovered = poll_until(
        &mut replica,
        Duration::from_secs(30),
        "lag to fall back",
        |collected| {
            value(
                collected,
                "db_replication_lag_seconds",
                &[("replica", "pg-replica")],
            )
            .is_some_and(|lag| lag < 1.0)
        },
    )
    .await;
    assert_eq!(
        must(
            &recovered,
            "db_replication_healthy",
            &[("replica", "pg-replica")]
        ),
        1.0
    );
    primary_admin
        .execute("DROP TABLE dbwatch_lag_test")
        .await
        .expect("drop lag table");
}

#[tokio::test]
async fn a_stopped_wal_receiver_is_broken_not_zero_lag() {
    let _serial = SERIAL.lock().await;
    let mut replica_admin = admin("DBWATCH_PG_REPLICA_ADMIN_URL").await;
    let mut replica = collector("DBWATCH_PG_REPLICA_URL", "pg-replica");
    let original: (String,) = sqlx::query_as("SELECT current_setting('primary_conninfo')")
        .fetch_one(&mut replica_admin)
        .await
        .expect("read primary_conninfo");

    replica_admin
        .execute("ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 user=replicator'")
        .await
        .expect("break primary_conninfo");
    replica_admin
        .execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    let broken = async {
        poll_until(
            &mut replica,
            Duration::from_secs(30),
            "replication to read broken",
            |collected| {
                value(
                    collected,
                    "db_replication_healthy",
                    &[("replica", "pg-replica")],
                ) == Some(0.0)
            },
        )
        .await
    }
    .await;
    let restore = format!(
        "ALTER SYSTEM SET primary_conninfo = '{}'",
        original.0.replace('\'', "''")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(restore))
        .execute(&mut replica_admin)
        .await
        .expect("restore primary_conninfo");
    replica_admin
        .execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");

    let lag = must(
        &broken,
        "db_replication_lag_seconds",
        &[("replica", "pg-replica")],
    );
    assert!(
        lag.is_nan(),
        "lag of a broken standby must be unknown (NaN), was {lag}"
    );
    assert_eq!(must(&broken, "pg_standby_wal_receiver_streaming", &[]), 0.0);

    poll_until(
        &mut replica,
        Duration::from_secs(30),
        "replication to stream again",
        |collected| {
            value(
                collected,
                "db_replication_healthy",
                &[("replica", "pg-replica")],
            ) == Some(1.0)
        },
    )
    .await;
}

#[tokio::test]
async fn a_stopped_replica_is_broken_on_the_primary_not_zero_lag() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let streaming = poll_until(
        &mut primary,
        Duration::from_secs(30),
        "replica1 to stream",
        |collected| {
            value(
                collected,
                "db_replication_healthy",
                &[("replica", "replica1")],
            ) == Some(1.0)
        },
    )
    .await;
    assert_eq!(
        must(
            &streaming,
            "pg_replication_slot_active",
            &[("slot", "replica1")]
        ),
        1.0
    );

    let pg_bin = std::env::var("DBWATCH_PG_BIN").expect("DBWATCH_PG_BIN from the fleet env");
    let replica_data = std::env::var("DBWATCH_PG_REPLICA_DATA")
        .expect("DBWATCH_PG_REPLICA_DATA from the fleet env");
    let stop = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(format!("{pg_bin}/pg_ctl"))
        .args(["stop", "-m", "fast", "-w", "-D", &replica_data])
        .status()
        .expect("run pg_ctl stop");
    assert!(stop.success(), "pg_ctl stop failed");

    let broken = async {
        poll_until(
            &mut primary,
            Duration::from_secs(30),
            "the primary to see the replica gone",
            |collected| {
                value(
                    collected,
                    "db_replication_healthy",
                    &[("replica", "replica1")],
                ) == Some(0.0)
            },
        )
        .await
    }
    .await;
    let fleet = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/fleet");
    let start = std::process::Command::new(fleet)
        .args(["up", "postgres"])
        .status()
        .expect("run the fleet script");
    assert!(start.success(), "restarting the replica failed");

    let lag = must(
        &broken,
        "db_replication_lag_seconds",
        &[("replica", "replica1")],
    );
    assert!(
        lag.is_nan(),
        "a stopped replica's lag must be unknown (NaN), was {lag}"
    );
    assert_eq!(
        must(
            &broken,
            "pg_replication_slot_active",
            &[("slot", "replica1")]
        ),
        0.0
    );
    assert_eq!(
        must(
            &broken,
            "pg_replication_standby_streaming",
            &[("replica", "replica1")]
        ),
        0.0
    );

    poll_until(
        &mut primary,
        Duration::from_secs(30),
        "replica1 to stream again",
        |collected| {
            value(
                collected,
                "db_replication_healthy",
                &[("replica", "replica1")],
            ) == Some(1.0)
        },
    )
    .await;
}

#[tokio::test]
async fn a_query_blocked_on_a_lock_is_cut_by_the_server_side_timeout() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    // Connect first: new backends read pg_database too, and would wait behind the lock like the query.
    poll(&mut primary).await;
    let mut locker = admin("DBWATCH_PG_ADMIN_URL").await;
    locker.execute("BEGIN").await.expect("begin");
    locker
        .execute("LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock pg_database");
    let started = Instant::now();
    let result = primary.collect().await;
    let elapsed = started.elapsed();
    locker.execute("ROLLBACK").await.expect("release the lock");

    let error = match result {
        Ok(_) => panic!("the poll should have been cut by lock_timeout"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), ErrorKind::Timeout, "error: {error}");
    // lock_timeout is 500 ms here: the server cut the query long before any client-side deadline.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    // The connection survives a server-side cancel; the next poll works on it.
    let after = poll(&mut primary).await;
    assert!(value(&after, "db_connections_active", &[]).is_some());
}

#[tokio::test]
async fn a_dead_port_fails_fast_as_a_connect_error() {
    let _serial = SERIAL.lock().await;
    let url = fleet_url("DBWATCH_PG_PRIMARY_URL");
    let mut options = connection_options(&url, "dead");
    options.port = 1;
    let mut dead = PostgresCollector::new(PostgresOptions {
        connection: options,
        statement_timeout: Duration::from_secs(1),
        lock_timeout: Duration::from_millis(500),
        views: PostgresViews::default(),
    });
    let started = Instant::now();
    let error = match dead.collect().await {
        Ok(_) => panic!("a dead port cannot be polled"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), ErrorKind::Connect);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Within the backoff window the next poll does not even try the network.
    let error = match dead.collect().await {
        Ok(_) => panic!("still dead"),
        Err(error) => error,
    };
    assert!(error.to_string().contains("backing off"), "{error}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let _serial = SERIAL.lock().await;
    let url = fleet_url("DBWATCH_PG_PRIMARY_URL");
    let mut options = connection_options(&url, "bad-password");
    options.password = Some(PasswordSource::Inline(Secret::new("wrong".into())));
    let mut collector = PostgresCollector::new(PostgresOptions {
        connection: options,
        statement_timeout: Duration::from_secs(1),
        lock_timeout: Duration::from_millis(500),
        views: PostgresViews::default(),
    });
    let error = match collector.collect().await {
        Ok(_) => panic!("a wrong password cannot log in"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), ErrorKind::Auth);
    assert!(
        !error.to_string().contains("wrong"),
        "the password leaked: {error}"
    );
}

#[tokio::test]
async fn pgbouncer_reports_pools_and_client_utilization() {
    let _serial = SERIAL.lock().await;
    let url = fleet_url("DBWATCH_PGBOUNCER_URL");
    let mut bouncer = PgBouncerCollector::new(connection_options(&url, "pgbouncer"));
    let before = poll(&mut bouncer).await;
    assert_eq!(must(&before, "db_connections_max", &[]), 100.0);
    let clients_before = must(&before, "db_connections_active", &[]);

    const EXTRA: usize = 4;
    let mut held = Vec::new();
    for _ in 0..EXTRA {
        let mut client = admin("DBWATCH_PGBOUNCER_SHOP_URL").await;
        client
            .execute("SELECT 1")
            .await
            .expect("query through pgbouncer");
        held.push(client);
    }
    let after = poll(&mut bouncer).await;
    assert_eq!(
        must(&after, "db_connections_active", &[]),
        clients_before + EXTRA as f64
    );
    let shop_active = must(
        &after,
        "pgbouncer_pool_client_connections",
        &[
            ("database", "shop"),
            ("user", "fleet_admin"),
            ("state", "active"),
        ],
    );
    assert!(
        shop_active >= EXTRA as f64,
        "active clients of the shop pool: {shop_active}"
    );
    assert!(must(&after, "pgbouncer_queries_total", &[("database", "shop")]) >= EXTRA as f64);
    drop(held);
}

#[tokio::test]
async fn switching_wal_is_archived() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let before = poll(&mut primary).await;
    let archived_before = must(&before, "pg_archiver_archived_total", &[]);
    let mut admin_connection = admin("DBWATCH_PG_ADMIN_URL").await;
    admin_connection
        .execute("CREATE TEMP TABLE wal_filler AS SELECT 1 AS x")
        .await
        .expect("write something");
    admin_connection
        .execute("SELECT pg_switch_wal()")
        .await
        .expect("switch wal");
    let after = poll_until(
        &mut primary,
        Duration::from_secs(20),
        "a segment to be archived",
        |collected| {
            value(collected, "pg_archiver_archived_total", &[])
                .is_some_and(|count| count > archived_before)
        },
    )
    .await;
    let age = must(&after, "pg_archiver_last_archived_age_seconds", &[]);
    assert!((0.0..20.0).contains(&age), "last archive age {age}");
}

#[tokio::test]
async fn wraparound_ages_follow_the_transactions_a_database_consumes() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let mut admin = admin("DBWATCH_PG_ADMIN_URL").await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut admin)
        .await
        .expect("current database");
    let freeze_max_age: String = sqlx::query_scalar("SHOW autovacuum_freeze_max_age")
        .fetch_one(&mut admin)
        .await
        .expect("setting");

    let before = poll(&mut primary).await;
    let age_before = must(&before, "pg_database_xid_age", &[("database", &database)]);
    assert_eq!(
        must(&before, "pg_settings_autovacuum_freeze_max_age", &[]),
        freeze_max_age.parse::<f64>().expect("a number")
    );
    assert!(age_before > 0.0, "age {age_before}");
    assert!(
        must(
            &before,
            "pg_database_multixact_age",
            &[("database", &database)]
        ) >= 0.0
    );
    // template0 refuses connections and is frozen: it is left out.
    assert_eq!(
        value(&before, "pg_database_xid_age", &[("database", "template0")]),
        None
    );

    // Each txid_current() in its own transaction consumes one transaction ID.
    for _ in 0..50 {
        admin
            .execute("SELECT txid_current()")
            .await
            .expect("consume an XID");
    }
    let after = poll(&mut primary).await;
    let age_after = must(&after, "pg_database_xid_age", &[("database", &database)]);
    assert!(
        age_after >= age_before + 50.0,
        "50 transactions moved the age from {age_before} to {age_after}"
    );
}

#[tokio::test]
async fn a_session_holding_a_lock_shows_as_the_blocking_root_of_its_waiters() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let mut holder = admin("DBWATCH_PG_ADMIN_URL").await;
    holder
        .execute("CREATE TABLE IF NOT EXISTS dbwatch_lock_probe (id int)")
        .await
        .expect("create the probe table");
    let quiet = poll(&mut primary).await;
    assert_eq!(must(&quiet, "pg_locks_blocked_sessions", &[]), 0.0);
    assert_eq!(must(&quiet, "pg_locks_blocking_roots", &[]), 0.0);
    assert_eq!(must(&quiet, "pg_locks_longest_wait_seconds", &[]), 0.0);

    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute("LOCK TABLE dbwatch_lock_probe IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("take the lock");
    // Two waiters behind the one holder: one root, two blocked.
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let mut waiter = admin("DBWATCH_PG_ADMIN_URL").await;
        waiters.push(tokio::spawn(async move {
            let result = waiter
                .execute("SELECT count(*) FROM dbwatch_lock_probe")
                .await;
            (waiter, result.map(|_| ()))
        }));
    }
    // pg_locks and pg_stat_activity are separate statements of one poll, so a waiter that starts waiting
    // between them shows in one only: wait until both views see the two.
    let blocked = poll_until(
        &mut primary,
        Duration::from_secs(20),
        "two blocked sessions in pg_locks and pg_stat_activity",
        |collected| {
            value(collected, "pg_locks_blocked_sessions", &[]) == Some(2.0)
                && value(collected, "pg_locks_longest_wait_seconds", &[])
                    .is_some_and(|wait| wait > 0.0)
                && value(collected, "pg_connections_waiting_on_lock", &[])
                    .is_some_and(|waiting| waiting >= 2.0)
        },
    )
    .await;
    assert_eq!(must(&blocked, "pg_locks_blocking_roots", &[]), 1.0);

    holder.execute("ROLLBACK").await.expect("release the lock");
    for waiter in waiters {
        let (_, result) = waiter.await.expect("waiter task");
        result.expect("the waiter's query ran once the lock was released");
    }
    poll_until(
        &mut primary,
        Duration::from_secs(20),
        "no blocked session",
        |collected| {
            value(collected, "pg_locks_blocked_sessions", &[]) == Some(0.0)
                && value(collected, "pg_locks_blocking_roots", &[]) == Some(0.0)
        },
    )
    .await;
}

#[tokio::test]
async fn a_session_idle_inside_a_transaction_is_timed() {
    let _serial = SERIAL.lock().await;
    let mut primary = collector("DBWATCH_PG_PRIMARY_URL", "pg-primary");
    let mut idle = admin("DBWATCH_PG_ADMIN_URL").await;
    idle.execute("BEGIN").await.expect("begin");
    idle.execute("SELECT 1")
        .await
        .expect("a statement inside it");
    let seen = poll_until(
        &mut primary,
        Duration::from_secs(20),
        "an idle-in-transaction session over 1 s",
        |collected| {
            value(collected, "pg_idle_in_transaction_oldest_seconds", &[])
                .is_some_and(|age| age >= 1.0)
        },
    )
    .await;
    assert!(
        must(
            &seen,
            "pg_connections_backends",
            &[("state", "idle_in_transaction")]
        ) >= 1.0
    );
    idle.execute("COMMIT").await.expect("commit");
    poll_until(
        &mut primary,
        Duration::from_secs(20),
        "no idle-in-transaction session",
        |collected| value(collected, "pg_idle_in_transaction_oldest_seconds", &[]) == Some(0.0),
    )
    .await;
}
