//! Optional heartbeat, pt-heartbeat style: replication lag measured by a row written on the primary.
//!
//! `Seconds_Behind_Master` is NULL whenever a replication thread is stopped, 0 when the IO thread trails a
//! slow network, and jumps around in chains; a timestamp written on the primary and read on the replica
//! says how old the replica's data really is, also while the SQL thread is stopped.
//!
//! On a writable target with `write: true`, each poll runs
//! `REPLACE INTO <table> (id, ts) VALUES (@@server_id, NOW(6))`; on a replica each poll reads the rows of
//! its channels' sources and reports `mysql_heartbeat_lag_seconds` = now - ts. The lag therefore includes up
//! to one poll interval of the primary's target, and any clock difference between the hosts. Both sessions
//! run in UTC (set per connection), so DATETIME and TIMESTAMP columns both work.
//!
//! Writing needs a role the monitoring role should not be: give the primary's heartbeat target its own
//! account. The table, created once on the primary and replicated:
//!
//! ```sql
//! CREATE TABLE dbwatch.heartbeat (id INT UNSIGNED NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL);
//! GRANT INSERT, DELETE ON dbwatch.heartbeat TO 'dbwatch_heartbeat'@'%';  -- REPLACE needs both
//! GRANT SELECT ON dbwatch.heartbeat TO 'dbwatch'@'%';                     -- for the replicas' reads
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::query::{execute, fetch_rows, QueryError};
use super::replica_status::ReplicaChannel;
use super::row::{ShapeError, TextRow};

pub const WRITE_VIEW: &str = "heartbeat_write";
pub const READ_VIEW: &str = "heartbeat_read";

pub static LAG: MetricDesc = MetricDesc {
    name: "mysql_heartbeat_lag_seconds",
    help: "Age on this replica of the newest heartbeat its channel's source wrote; NaN when no heartbeat row was found",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&LAG];

/// The heartbeat mode of one target. Off unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOptions {
    /// The table as `schema.table`, e.g. `dbwatch.heartbeat`; columns `id` (the writer's server_id, primary
    /// key) and `ts` (DATETIME(6) or TIMESTAMP(6)).
    pub table: String,
    /// Write the heartbeat on this target (its primary role). Skipped while the server is read_only. Needs
    /// INSERT and DELETE on the table: use a separate account from the monitoring role.
    pub write: bool,
}

/// A heartbeat table name that cannot be quoted safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("heartbeat table {0:?} is not schema.table with letters, digits, _ and $ only")]
pub struct InvalidHeartbeatTable(pub String);

/// A validated `schema.table`, backquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatTable {
    quoted: String,
}

impl HeartbeatTable {
    /// Accepts `schema.table` where both parts are plain identifiers; the monitoring session has no default
    /// database, so the schema is required.
    pub fn parse(name: &str) -> Result<Self, InvalidHeartbeatTable> {
        let invalid = || InvalidHeartbeatTable(name.to_owned());
        let (schema, table) = name.split_once('.').ok_or_else(invalid)?;
        let plain = |part: &str| {
            !part.is_empty()
                && part.len() <= 64
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        if !plain(schema) || !plain(table) {
            return Err(invalid());
        }
        Ok(HeartbeatTable {
            quoted: format!("`{schema}`.`{table}`"),
        })
    }

    pub fn write_statement(&self) -> String {
        format!(
            "REPLACE INTO {} (id, ts) VALUES (@@server_id, NOW(6))",
            self.quoted
        )
    }

    /// The read of the given sources' rows; `None` when there is no source to read.
    pub fn read_statement(&self, source_ids: &[u32]) -> Option<String> {
        if source_ids.is_empty() {
            return None;
        }
        let mut ids = String::new();
        for (index, id) in source_ids.iter().enumerate() {
            if index > 0 {
                ids.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = write!(ids, "{id}");
        }
        Some(format!(
            "SELECT id, TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)) AS lag_microseconds FROM {} WHERE id IN ({ids})",
            self.quoted
        ))
    }
}

pub async fn write(
    connection: &mut MySqlConnection,
    table: &HeartbeatTable,
    timeout: Duration,
) -> Result<(), QueryError> {
    execute(
        connection,
        sqlx::AssertSqlSafe(table.write_statement()),
        timeout,
    )
    .await
}

/// The lag per channel; a channel whose source has no row gets `None`.
pub async fn read(
    connection: &mut MySqlConnection,
    table: &HeartbeatTable,
    channels: &[ReplicaChannel],
    timeout: Duration,
) -> Result<Vec<(String, Option<f64>)>, QueryError> {
    let mut source_ids: Vec<u32> = channels
        .iter()
        .filter_map(|channel| channel.source_server_id)
        .collect();
    source_ids.sort_unstable();
    source_ids.dedup();
    let rows = match table.read_statement(&source_ids) {
        Some(sql) => fetch_rows(connection, sqlx::AssertSqlSafe(sql), timeout).await?,
        None => Vec::new(),
    };
    Ok(lag_per_channel(channels, &rows)?)
}

pub fn lag_per_channel(
    channels: &[ReplicaChannel],
    rows: &[TextRow],
) -> Result<Vec<(String, Option<f64>)>, ShapeError> {
    let mut by_source = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.number(&["id"])?;
        let lag = row
            .number(&["lag_microseconds"])?
            .map(|microseconds| (microseconds / 1e6).max(0.0));
        by_source.push((id, lag));
    }
    Ok(channels
        .iter()
        .map(|channel| {
            let lag = channel.source_server_id.and_then(|source| {
                by_source
                    .iter()
                    .find(|(id, _)| *id == Some(f64::from(source)))
                    .and_then(|(_, lag)| *lag)
            });
            (channel.channel.clone(), lag)
        })
        .collect())
}

pub fn samples(lags: &[(String, Option<f64>)], out: &mut Vec<Sample>) {
    for (channel, lag) in lags {
        out.push(LAG.sample_with([channel.as_str()], lag.unwrap_or(f64::NAN)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_schema_dot_table_names_are_accepted() {
        let table = HeartbeatTable::parse("dbwatch.heartbeat").expect("valid");
        assert_eq!(
            table.write_statement(),
            "REPLACE INTO `dbwatch`.`heartbeat` (id, ts) VALUES (@@server_id, NOW(6))"
        );
        for bad in [
            "heartbeat",
            "a.b.c",
            "db.t`; DROP TABLE x",
            ".t",
            "db.",
            "d b.t",
        ] {
            assert!(HeartbeatTable::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn each_channel_reads_its_sources_row() {
        let table = HeartbeatTable::parse("dbwatch.heartbeat").expect("valid");
        assert_eq!(table.read_statement(&[]), None);
        assert!(table
            .read_statement(&[1, 7])
            .is_some_and(|sql| sql.ends_with("WHERE id IN (1, 7)")));
        let channel = |name: &str, source: Option<u32>| ReplicaChannel {
            channel: name.into(),
            io_running: true,
            sql_running: true,
            seconds_behind: Some(0.0),
            sql_delay: None,
            last_io_errno: 0,
            last_sql_errno: 0,
            read_position: None,
            exec_position: None,
            relay_log_space: None,
            source_server_id: source,
        };
        let rows = vec![TextRow::new(vec![
            ("id".into(), Some("1".into())),
            ("lag_microseconds".into(), Some("2500000".into())),
        ])];
        let lags = lag_per_channel(
            &[
                channel("", Some(1)),
                channel("east", Some(7)),
                channel("west", None),
            ],
            &rows,
        )
        .expect("lags");
        assert_eq!(
            lags,
            [
                (String::new(), Some(2.5)),
                ("east".to_owned(), None),
                ("west".to_owned(), None)
            ]
        );
    }
}
