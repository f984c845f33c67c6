//! What the MariaDB and MySQL 8.0 suites share: the fleet's connection URLs, one statement as the admin, and
//! reading one sample of a poll.

use dbwatch_collectors::Collected;
use sqlx::mysql::MySqlConnection;

/// A connection URL from the fleet's environment, split into the collector's options.
pub struct Url {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub raw: String,
}

/// The URL in `variable`, set by `deploy/local/fleet env <component>`.
pub fn fleet_url(variable: &str, component: &str) -> Url {
    let raw = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run `eval \"$(deploy/local/fleet env {component})\"` after `deploy/local/fleet up {component}`")
    });
    let rest = raw
        .strip_prefix("mysql://")
        .unwrap_or_else(|| panic!("{variable} is not a mysql:// URL"));
    let (credentials, rest) = rest.split_once('@').expect("user:password@ in the URL");
    let (user, password) = credentials
        .split_once(':')
        .expect("user:password in the URL");
    let address = rest.split('/').next().expect("host:port in the URL");
    let (host, port) = address.split_once(':').expect("host:port in the URL");
    Url {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.parse().expect("numeric port"),
        raw,
    }
}

pub async fn run(connection: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The value of the first sample named `name` with these labels.
pub fn value(collected: &Collected, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

/// Row-lock contention and a deadlock on `server`'s primary, as InnoDB reports them: `connect` opens admin
/// sessions, `poll` polls the collector under test. The table is `dbwatch_test.innodb_probe`.
pub async fn innodb_contention_shows<C, P, F>(connect: C, mut poll: P)
where
    C: Fn() -> F,
    F: std::future::Future<Output = MySqlConnection>,
    P: AsyncFnMut() -> Collected,
{
    use std::time::Duration;

    let mut setup = connect().await;
    run(&mut setup, "CREATE DATABASE IF NOT EXISTS dbwatch_test").await;
    run(
        &mut setup,
        "CREATE TABLE IF NOT EXISTS dbwatch_test.innodb_probe (id INT NOT NULL PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB",
    )
    .await;
    run(
        &mut setup,
        "INSERT IGNORE INTO dbwatch_test.innodb_probe VALUES (1, 0), (2, 0)",
    )
    .await;

    let before = poll().await;
    let waits_before =
        value(&before, "mysql_innodb_row_lock_waits_total", &[]).expect("row lock waits");
    let history =
        value(&before, "mysql_innodb_history_list_length", &[]).expect("history list length");
    assert!(
        history.is_finite() && history >= 0.0,
        "history list length {history}"
    );
    assert!(value(&before, "mysql_aborted_connects_total", &[]).is_some_and(|n| n >= 0.0));
    assert!(value(&before, "mysql_table_open_cache_misses_total", &[]).is_some_and(|n| n >= 0.0));

    // A holds row 1; B waits for it.
    let mut holder = connect().await;
    run(&mut holder, "BEGIN").await;
    run(
        &mut holder,
        "SELECT v FROM dbwatch_test.innodb_probe WHERE id = 1 FOR UPDATE",
    )
    .await;
    let mut waiter = connect().await;
    run(&mut waiter, "SET SESSION innodb_lock_wait_timeout = 30").await;
    let waiting = tokio::spawn(async move {
        run(
            &mut waiter,
            "UPDATE dbwatch_test.innodb_probe SET v = v + 1 WHERE id = 1",
        )
        .await;
        waiter
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let contended = loop {
        let collected = poll().await;
        if value(&collected, "mysql_innodb_transactions_lock_waiting", &[]) == Some(1.0) {
            break collected;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no lock-waiting transaction: {:#?}",
            collected.samples
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(value(&contended, "mysql_innodb_transactions", &[]).is_some_and(|n| n >= 2.0));
    assert!(
        value(&contended, "mysql_innodb_oldest_transaction_seconds", &[])
            .is_some_and(|age| age > 0.0)
    );
    run(&mut holder, "COMMIT").await;
    let _waiter = waiting.await.expect("the waiter finished");
    let after = poll().await;
    let waits_after =
        value(&after, "mysql_innodb_row_lock_waits_total", &[]).expect("row lock waits");
    assert!(
        waits_after >= waits_before + 1.0,
        "row lock waits {waits_before} -> {waits_after}"
    );

    // A deadlock: A holds 1 and wants 2, B holds 2 and wants 1; InnoDB rolls one back.
    let deadlocks_before = value(&after, "mysql_innodb_deadlocks_total", &[]).expect("deadlocks");
    let mut first = connect().await;
    let mut second = connect().await;
    run(&mut first, "BEGIN").await;
    run(&mut second, "BEGIN").await;
    run(
        &mut first,
        "UPDATE dbwatch_test.innodb_probe SET v = v + 1 WHERE id = 1",
    )
    .await;
    run(
        &mut second,
        "UPDATE dbwatch_test.innodb_probe SET v = v + 1 WHERE id = 2",
    )
    .await;
    let crossing = tokio::spawn(async move {
        let result = sqlx::raw_sql("UPDATE dbwatch_test.innodb_probe SET v = v + 1 WHERE id = 2")
            .execute(&mut first)
            .await;
        (first, result.is_ok())
    });
    // Once A waits on B's row, B's own crossing request closes the cycle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while value(&poll().await, "mysql_innodb_transactions_lock_waiting", &[]) != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first session never waited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second_ok = sqlx::raw_sql("UPDATE dbwatch_test.innodb_probe SET v = v + 1 WHERE id = 1")
        .execute(&mut second)
        .await
        .is_ok();
    let (mut first, first_ok) = crossing.await.expect("the first session finished");
    assert!(
        first_ok != second_ok,
        "exactly one side of the deadlock is rolled back"
    );
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut first).await;
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut second).await;
    let deadlocks_after =
        value(&poll().await, "mysql_innodb_deadlocks_total", &[]).expect("deadlocks");
    assert!(
        deadlocks_after >= deadlocks_before + 1.0,
        "deadlocks {deadlocks_before} -> {deadlocks_after} (is lock_deadlocks disabled in INNODB_METRICS?)"
    );
}
