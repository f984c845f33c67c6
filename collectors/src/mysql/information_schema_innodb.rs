//! InnoDB internals from `information_schema`: open transactions (`INNODB_TRX`: how many, how many wait on a
//! row lock, the oldest one's age) and two `INNODB_METRICS` counters (the history list length and deadlocks).
//! Row lock waits and their time come with `SHOW GLOBAL STATUS` (see `global_status.rs`), which is read anyway.

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::query::{fetch_rows, QueryError};
use super::row::{ShapeError, TextRow};
use super::server_version::Flavour;

pub const VIEW: &str = "information_schema_innodb";
const QUERY: &str = include_str!("information_schema_innodb.sql");

/// MariaDB names INNODB_METRICS' on/off column `ENABLED` (1 or 0) where MySQL has `STATUS` ('enabled').
static MARIADB_QUERY: LazyLock<String> =
    LazyLock::new(|| QUERY.replace("STATUS = 'enabled'", "ENABLED = 1"));

pub static TRANSACTIONS: MetricDesc = MetricDesc {
    name: "mysql_innodb_transactions",
    help: "Open InnoDB transactions (INNODB_TRX)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static LOCK_WAITING: MetricDesc = MetricDesc {
    name: "mysql_innodb_transactions_lock_waiting",
    help: "Open InnoDB transactions waiting for a row lock (trx_state LOCK WAIT)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static OLDEST_TRANSACTION: MetricDesc = MetricDesc {
    name: "mysql_innodb_oldest_transaction_seconds",
    help: "Age of the oldest open InnoDB transaction; 0 when none is open",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static HISTORY_LIST_LENGTH: MetricDesc = MetricDesc {
    name: "mysql_innodb_history_list_length",
    help:
        "Undo log records not yet purged (trx_rseg_history_len); NaN when the counter is disabled",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static DEADLOCKS: MetricDesc = MetricDesc {
    name: "mysql_innodb_deadlocks_total",
    help:
        "Deadlocks InnoDB detected and resolved (lock_deadlocks); NaN when the counter is disabled",
    kind: MetricKind::Counter,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &TRANSACTIONS,
    &LOCK_WAITING,
    &OLDEST_TRANSACTION,
    &HISTORY_LIST_LENGTH,
    &DEADLOCKS,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Innodb {
    pub transactions: f64,
    pub lock_waiting: f64,
    pub oldest_transaction_seconds: f64,
    pub history_list_length: Option<f64>,
    pub deadlocks: Option<f64>,
}

pub async fn fetch(
    connection: &mut MySqlConnection,
    flavour: Flavour,
    timeout: Duration,
) -> Result<Innodb, QueryError> {
    let query: &'static str = match flavour {
        Flavour::Mysql => QUERY,
        Flavour::MariaDb => MARIADB_QUERY.as_str(),
    };
    let rows = fetch_rows(connection, query, timeout).await?;
    Ok(Innodb::from_rows(&rows)?)
}

impl Innodb {
    pub fn from_rows(rows: &[TextRow]) -> Result<Self, ShapeError> {
        let row = rows
            .first()
            .ok_or_else(|| ShapeError::Other("the InnoDB statement returned no row".into()))?;
        let count = |name: &str| -> Result<f64, ShapeError> {
            row.number(&[name])?
                .ok_or_else(|| ShapeError::Other(format!("{name} is NULL")))
        };
        // Bounded before use: a negative age (a clock step between trx_started and NOW) reads 0.
        let oldest_microseconds = count("oldest_transaction_microseconds")?.max(0.0);
        Ok(Innodb {
            transactions: count("transactions")?,
            lock_waiting: count("lock_waiting")?,
            oldest_transaction_seconds: oldest_microseconds / 1e6,
            history_list_length: row.number(&["history_list_length"])?,
            deadlocks: row.number(&["deadlocks"])?,
        })
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(TRANSACTIONS.sample(self.transactions));
        out.push(LOCK_WAITING.sample(self.lock_waiting));
        out.push(OLDEST_TRANSACTION.sample(self.oldest_transaction_seconds));
        out.push(HISTORY_LIST_LENGTH.sample(self.history_list_length.unwrap_or(f64::NAN)));
        out.push(DEADLOCKS.sample(self.deadlocks.unwrap_or(f64::NAN)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(columns: &[(&str, Option<&str>)]) -> TextRow {
        TextRow::new(
            columns
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.map(str::to_owned)))
                .collect(),
        )
    }

    #[test]
    fn ages_in_seconds_and_disabled_counters_unknown() {
        let innodb = Innodb::from_rows(&[row(&[
            ("transactions", Some("3")),
            ("lock_waiting", Some("1")),
            ("oldest_transaction_microseconds", Some("2500000")),
            ("history_list_length", Some("42")),
            ("deadlocks", None),
        ])])
        .expect("parses");
        assert_eq!(innodb.oldest_transaction_seconds, 2.5);
        let mut samples = Vec::new();
        innodb.samples(&mut samples);
        let value = |name: &str| {
            samples
                .iter()
                .find(|s| s.desc.name == name)
                .map(|s| s.value)
        };
        assert_eq!(value("mysql_innodb_transactions"), Some(3.0));
        assert_eq!(value("mysql_innodb_transactions_lock_waiting"), Some(1.0));
        assert_eq!(value("mysql_innodb_history_list_length"), Some(42.0));
        assert!(value("mysql_innodb_deadlocks_total").is_some_and(f64::is_nan));
    }

    #[test]
    fn mariadb_reads_its_own_enabled_column() {
        assert_eq!(QUERY.matches("STATUS = 'enabled'").count(), 2);
        assert_eq!(MARIADB_QUERY.matches("ENABLED = 1").count(), 2);
        assert!(!MARIADB_QUERY.contains("STATUS"));
    }

    #[test]
    fn hostile_answers_are_errors_or_bounded() {
        assert!(Innodb::from_rows(&[]).is_err());
        let no_count = row(&[
            ("transactions", None),
            ("lock_waiting", Some("0")),
            ("oldest_transaction_microseconds", Some("0")),
        ]);
        assert!(Innodb::from_rows(&[no_count]).is_err());
        let text = row(&[
            ("transactions", Some("many")),
            ("lock_waiting", Some("0")),
            ("oldest_transaction_microseconds", Some("0")),
        ]);
        assert!(Innodb::from_rows(&[text]).is_err());
        let negative = row(&[
            ("transactions", Some("1")),
            ("lock_waiting", Some("0")),
            ("oldest_transaction_microseconds", Some("-5000000")),
            ("history_list_length", None),
            ("deadlocks", None),
        ]);
        assert_eq!(
            Innodb::from_rows(&[negative])
                .expect("parses")
                .oldest_transaction_seconds,
            0.0
        );
    }
}
