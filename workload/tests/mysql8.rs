//! The workload's MySQL parts on the fleet's MySQL 8.0 pair (`deploy/local/fleet up mysql`, 13316/13317): the
//! orders flow, and each MySQL fault in MySQL 8's words (`STOP REPLICA`, `SOURCE_DELAY`), started and cleared.
//! The MySQL 8.0 URLs reach the workload in the variables it reads (DBWATCH_MYSQL_ADMIN_URL,
//! DBWATCH_MYSQL_REPLICA_ADMIN_URL), set on its command only. One test at a time: they share the replica.
//! Every fault is cleared by a guard, on failure paths too. Fails, never skips, without the fleet.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{env, mysql, run, unique, workload};
use sqlx::mysql::MySqlConnection;
use sqlx::Row;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PRIMARY_ADMIN: &str = "DBWATCH_MYSQL8_ADMIN_URL";
const REPLICA_ADMIN: &str = "DBWATCH_MYSQL8_REPLICA_ADMIN_URL";

/// The workload pointed at the MySQL 8.0 pair instead of MariaDB.
fn on_mysql8() -> Command {
    let mut command = workload();
    command
        .env("DBWATCH_MYSQL_ADMIN_URL", env(PRIMARY_ADMIN))
        .env("DBWATCH_MYSQL_REPLICA_ADMIN_URL", env(REPLICA_ADMIN));
    command
}

async fn server(connection: &mut MySqlConnection) -> String {
    let version: String = sqlx::query_scalar("SELECT @@version")
        .fetch_one(connection)
        .await
        .expect("@@version");
    eprintln!("[mysql8] server: MySQL {version}");
    assert!(
        version.starts_with("8.0."),
        "the MySQL 8.0 fleet answered as {version}"
    );
    format!("MySQL {version}")
}

fn fault(name: &str, action: &str, args: &[&str], state: &Path) -> String {
    let output = run(on_mysql8()
        .args(["fault", name, action, "--engine", "mysql"])
        .args(args)
        .arg("--state-dir")
        .arg(state));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Clears the fault when dropped, whatever happened in the test.
struct Applied {
    fault: &'static str,
    args: Vec<&'static str>,
    state: PathBuf,
    cleared: bool,
}

impl Applied {
    fn start(fault_name: &'static str, args: &[&'static str], state: &Path) -> (Applied, String) {
        let applied = Applied {
            fault: fault_name,
            args: args.to_vec(),
            state: state.to_owned(),
            cleared: false,
        };
        let said = fault(fault_name, "start", args, state);
        // Idempotent: a second start changes nothing and succeeds.
        fault(fault_name, "start", args, state);
        (applied, said)
    }

    fn clear(&mut self) -> String {
        let said = fault(self.fault, "clear", &self.args, &self.state);
        fault(self.fault, "clear", &self.args, &self.state);
        self.cleared = true;
        said
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        if !self.cleared {
            let _ = on_mysql8()
                .args(["fault", self.fault, "clear", "--engine", "mysql"])
                .args(&self.args)
                .arg("--state-dir")
                .arg(&self.state)
                .status();
        }
    }
}

/// A text column of SHOW REPLICA STATUS (MySQL sends SHOW columns as text, some as integers).
fn text(row: &sqlx::mysql::MySqlRow, name: &str) -> String {
    row.try_get::<Vec<u8>, _>(name)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .or_else(|_| row.try_get::<u32, _>(name).map(|value| value.to_string()))
        .or_else(|_| row.try_get::<i64, _>(name).map(|value| value.to_string()))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// (Replica_IO_Running, Replica_SQL_Running, SQL_Delay) of the default channel.
async fn replica_status(replica: &mut MySqlConnection) -> (String, String, String) {
    let row = sqlx::query("SHOW REPLICA STATUS")
        .fetch_one(replica)
        .await
        .expect("SHOW REPLICA STATUS");
    (
        text(&row, "Replica_IO_Running"),
        text(&row, "Replica_SQL_Running"),
        text(&row, "SQL_Delay"),
    )
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

fn running(io: &str, sql: &str, delay: &str) -> (String, String, String) {
    (io.to_owned(), sql.to_owned(), delay.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn n_orders_with_their_payments_land_on_the_mysql_8_primary_and_replica() {
    let _serial = SERIAL.lock().await;
    let mut primary = mysql(PRIMARY_ADMIN).await;
    let named = server(&mut primary).await;
    let domain = format!("{}.example", unique("it8"));
    const ORDERS: i64 = 12;
    let output = run(on_mysql8().args([
        "--stores",
        "mysql",
        "--count",
        &ORDERS.to_string(),
        "--rate",
        "4",
        "--timeout",
        "30s",
        "--mysql-email-domain",
        &domain,
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let done = stderr
        .lines()
        .find(|line| line.contains("mysql: done"))
        .unwrap_or_else(|| panic!("{named}: no summary in:\n{stderr}"));
    assert!(
        done.contains(&format!(": orders {ORDERS},")) && done.contains("errors 0 "),
        "{named}: {done}"
    );

    let count_orders = "SELECT CAST(COUNT(*) AS SIGNED) FROM shop.orders o
                          JOIN shop.customers c ON c.customer_id = o.customer_id
                          JOIN shop.payments p ON p.order_id = o.order_id AND p.status = 'captured'
                         WHERE c.email LIKE ?";
    let on_primary: i64 = sqlx::query_scalar(count_orders)
        .bind(format!("%@{domain}"))
        .fetch_one(&mut primary)
        .await
        .expect("the run's orders");
    assert_eq!(
        on_primary, ORDERS,
        "{named}: orders with a captured payment"
    );
    // Replicated: wait for the primary's GTIDs on the replica, then count there too.
    let executed: String = sqlx::query_scalar("SELECT @@GLOBAL.gtid_executed")
        .fetch_one(&mut primary)
        .await
        .expect("gtid_executed");
    let mut replica = mysql(REPLICA_ADMIN).await;
    let waited: i64 = sqlx::query_scalar("SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 20)")
        .bind(&executed)
        .fetch_one(&mut replica)
        .await
        .expect("WAIT_FOR_EXECUTED_GTID_SET");
    assert_eq!(waited, 0, "{named}: the replica did not apply {executed}");
    let on_replica: i64 = sqlx::query_scalar(count_orders)
        .bind(format!("%@{domain}"))
        .fetch_one(&mut replica)
        .await
        .expect("the run's orders on the replica");
    assert_eq!(on_replica, ORDERS);
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_lag_stops_the_mysql_8_sql_thread_and_clear_restarts_it() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut replica = mysql(REPLICA_ADMIN).await;
    let named = server(&mut replica).await;

    let (mut applied, said) = Applied::start("replica-lag", &[], state.path());
    assert!(said.contains("STOP REPLICA SQL_THREAD"), "{named}: {said}");
    assert_eq!(
        replica_status(&mut replica).await,
        running("Yes", "No", "0")
    );

    applied.clear();
    assert_eq!(
        until!(
            running("Yes", "Yes", "0"),
            replica_status(&mut replica).await
        ),
        running("Yes", "Yes", "0"),
        "{named}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_lag_with_a_delay_keeps_mysql_8_replicating_behind_by_source_delay() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut replica = mysql(REPLICA_ADMIN).await;
    let named = server(&mut replica).await;

    let (mut applied, said) = Applied::start("replica-lag", &["--delay", "30s"], state.path());
    assert!(said.contains("SOURCE_DELAY = 30"), "{named}: {said}");
    assert_eq!(
        until!(
            running("Yes", "Yes", "30"),
            replica_status(&mut replica).await
        ),
        running("Yes", "Yes", "30"),
        "{named}"
    );

    let cleared = applied.clear();
    assert!(cleared.contains("SOURCE_DELAY = 0"), "{cleared}");
    assert_eq!(
        until!(
            running("Yes", "Yes", "0"),
            replica_status(&mut replica).await
        ),
        running("Yes", "Yes", "0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_broken_stops_both_mysql_8_threads_and_clear_restarts_them() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut replica = mysql(REPLICA_ADMIN).await;
    let named = server(&mut replica).await;

    let (mut applied, said) = Applied::start("replication-broken", &[], state.path());
    assert!(said.contains("STOP REPLICA"), "{named}: {said}");
    assert_eq!(replica_status(&mut replica).await, running("No", "No", "0"));

    applied.clear();
    assert_eq!(
        until!(
            running("Yes", "Yes", "0"),
            replica_status(&mut replica).await
        ),
        running("Yes", "Yes", "0"),
        "{named}"
    );
}

async fn status_number(connection: &mut MySqlConnection, name: &str) -> f64 {
    let value: String = sqlx::query_scalar(
        "SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = ?",
    )
    .bind(name)
    .fetch_one(connection)
    .await
    .unwrap_or_else(|error| panic!("{name}: {error}"));
    value.parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_fill_the_mysql_8_primary_to_the_fraction_and_are_released() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut primary = mysql(PRIMARY_ADMIN).await;
    let named = server(&mut primary).await;
    let max: i64 = sqlx::query_scalar("SELECT CAST(@@GLOBAL.max_connections AS SIGNED)")
        .fetch_one(&mut primary)
        .await
        .expect("max_connections");

    let (mut applied, said) = Applied::start("connections", &["--fraction", "0.9"], state.path());
    assert!(said.contains("mysql: holding"), "{named}: {said}");
    let connected = status_number(&mut primary, "Threads_connected").await;
    eprintln!("[mysql8] {named}: {connected} of {max} connections in use with the fault");
    assert!(
        connected >= 0.9 * max as f64,
        "{named}: {connected} connected of {max}"
    );

    applied.clear();
    let after = until!(
        true,
        status_number(&mut primary, "Threads_connected").await < 0.5 * max as f64
    );
    assert!(after, "{named}: the held connections were not released");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_queries_run_tagged_sleeps_on_mysql_8_and_clear_ends_them() {
    let _serial = SERIAL.lock().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut primary = mysql(PRIMARY_ADMIN).await;
    let named = server(&mut primary).await;
    let sleeps = "SELECT CAST(COUNT(*) AS SIGNED) FROM information_schema.PROCESSLIST
                  WHERE INFO LIKE '%dbwatch-fault-slow-queries%' AND ID <> CONNECTION_ID()";

    let (mut applied, said) = Applied::start(
        "slow-queries",
        &["--sessions", "2", "--sleep", "5s"],
        state.path(),
    );
    let running_sleeps = until!(
        2i64,
        sqlx::query_scalar::<_, i64>(sleeps)
            .fetch_one(&mut primary)
            .await
            .expect("count")
    );
    assert_eq!(running_sleeps, 2, "{named}: {said}");

    applied.clear();
    let left = until!(
        0i64,
        sqlx::query_scalar::<_, i64>(sleeps)
            .fetch_one(&mut primary)
            .await
            .expect("count")
    );
    assert_eq!(left, 0, "{named}: sleeps left after the clear");
}
