//! Replication seen from a replica: `SHOW ALL SLAVES STATUS` (MariaDB, one row per multi-source connection)
//! or `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS` (MySQL, one row per channel).
//!
//! Rows are parsed by column name, each column looked up under all its spellings (`Seconds_Behind_Source` or
//! `Seconds_Behind_Master`, `Channel_Name` or 5.7's `Channel_name`, ...), because the spelling depends on the
//! flavour, the version and even the statement (RDS for MariaDB mixes both). A NULL lag, which the server
//! reports when a replication thread is stopped, stays NaN and makes the replica unhealthy: never 0, never
//! a missing series (mysqld_exporter drops it, dd-agent reported 0). Error numbers become a bounded
//! `error_class`; the error text never leaves the server.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::fleet;
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

use super::query::{fetch_rows, QueryError};
use super::row::{ShapeError, TextRow};

pub const VIEW: &str = "replica_status";

pub static CONFIGURED: MetricDesc = MetricDesc {
    name: "mysql_replica_configured",
    help: "1 when the server has at least one replication channel configured, 0 on a server that is no replica",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static IO_RUNNING: MetricDesc = MetricDesc {
    name: "mysql_replica_io_running",
    help: "1 when the channel's IO (receiver) thread runs and is connected to its source; 0 when stopped or still connecting",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};
pub static SQL_RUNNING: MetricDesc = MetricDesc {
    name: "mysql_replica_sql_running",
    help: "1 when the channel's SQL (applier) thread runs",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};
pub static LAG: MetricDesc = MetricDesc {
    name: "mysql_replica_lag_seconds",
    help: "Seconds_Behind_Master/Source of the channel; NaN when the server reports NULL (a thread is stopped) or a thread is not running",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};
pub static SQL_DELAY: MetricDesc = MetricDesc {
    name: "mysql_replica_sql_delay_seconds",
    help: "Configured delayed-replication interval of the channel (SQL_Delay); part of the lag on purpose",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};
pub static LAST_ERRNO: MetricDesc = MetricDesc {
    name: "mysql_replica_last_errno",
    help: "Number of the last error that stopped the channel's io or sql thread, 0 for none; error_class groups it",
    kind: MetricKind::Gauge,
    labels: &["channel", "thread", "error_class"],
};
pub static READ_POSITION: MetricDesc = MetricDesc {
    name: "mysql_replica_read_source_log_position_bytes",
    help: "Offset in the source's current binary log up to which the IO thread has read (Read_Master_Log_Pos)",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};
pub static EXEC_POSITION: MetricDesc = MetricDesc {
    name: "mysql_replica_exec_source_log_position_bytes",
    help: "Offset in the source's binary log up to which the SQL thread has applied (Exec_Master_Log_Pos)",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};
pub static RELAY_LOG_SPACE: MetricDesc = MetricDesc {
    name: "mysql_replica_relay_log_space_bytes",
    help: "Total size of the channel's relay log files: received, not yet purged",
    kind: MetricKind::Gauge,
    labels: &["channel"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &CONFIGURED,
    &IO_RUNNING,
    &SQL_RUNNING,
    &LAG,
    &SQL_DELAY,
    &LAST_ERRNO,
    &READ_POSITION,
    &EXEC_POSITION,
    &RELAY_LOG_SPACE,
];

/// The bounded class of a replication error number.
///
/// | class            | numbers                                                                   |
/// |------------------|---------------------------------------------------------------------------|
/// | `none`           | 0                                                                         |
/// | `auth`           | 1044, 1045, 1251, 1698 (access denied), 2049, 2059, 2061 (auth plugin)    |
/// | `connect`        | 2000-2999 (client errors: host, network, TLS), 1040, 1129, 1130, 1158-1161 |
/// | `source_binlog`  | 1236, 13114 (the source cannot serve the binlog/GTIDs the replica needs)  |
/// | `duplicate_key`  | 1022, 1062, 1557, 1586                                                    |
/// | `missing_row`    | 1032 (the row an event changes is not on the replica)                     |
/// | `schema`         | 1049, 1050, 1054, 1060, 1061, 1091, 1146, 1677 (objects differ)            |
/// | `other`          | anything else                                                             |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    None,
    Auth,
    Connect,
    SourceBinlog,
    DuplicateKey,
    MissingRow,
    Schema,
    Other,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::None,
        ErrorClass::Auth,
        ErrorClass::Connect,
        ErrorClass::SourceBinlog,
        ErrorClass::DuplicateKey,
        ErrorClass::MissingRow,
        ErrorClass::Schema,
        ErrorClass::Other,
    ];

    pub fn of(errno: u32) -> Self {
        match errno {
            0 => ErrorClass::None,
            1044 | 1045 | 1251 | 1698 | 2049 | 2059 | 2061 => ErrorClass::Auth,
            2000..=2999 | 1040 | 1129 | 1130 | 1158..=1161 => ErrorClass::Connect,
            1236 | 13114 => ErrorClass::SourceBinlog,
            1022 | 1062 | 1557 | 1586 => ErrorClass::DuplicateKey,
            1032 => ErrorClass::MissingRow,
            1049 | 1050 | 1054 | 1060 | 1061 | 1091 | 1146 | 1677 => ErrorClass::Schema,
            _ => ErrorClass::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::None => "none",
            ErrorClass::Auth => "auth",
            ErrorClass::Connect => "connect",
            ErrorClass::SourceBinlog => "source_binlog",
            ErrorClass::DuplicateKey => "duplicate_key",
            ErrorClass::MissingRow => "missing_row",
            ErrorClass::Schema => "schema",
            ErrorClass::Other => "other",
        }
    }
}

/// The state of one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaChannel {
    /// `Connection_name` (MariaDB) or `Channel_Name` (MySQL); "" for the default channel.
    pub channel: String,
    /// Exactly `Yes`: `Connecting` means the thread retries and has no source.
    pub io_running: bool,
    pub sql_running: bool,
    /// `None` when the server reports NULL.
    pub seconds_behind: Option<f64>,
    pub sql_delay: Option<f64>,
    pub last_io_errno: u32,
    pub last_sql_errno: u32,
    pub read_position: Option<f64>,
    pub exec_position: Option<f64>,
    pub relay_log_space: Option<f64>,
    /// The source's server_id, which the heartbeat table is keyed by; `None` when unknown (0 or absent).
    pub source_server_id: Option<u32>,
}

pub async fn fetch(
    connection: &mut MySqlConnection,
    statement: &'static str,
    timeout: Duration,
) -> Result<Vec<ReplicaChannel>, QueryError> {
    let rows = fetch_rows(connection, statement, timeout).await?;
    Ok(parse(&rows)?)
}

pub fn parse(rows: &[TextRow]) -> Result<Vec<ReplicaChannel>, ShapeError> {
    rows.iter().map(ReplicaChannel::from_row).collect()
}

fn errno(row: &TextRow, column: &str) -> Result<u32, ShapeError> {
    let number = row.number(&[column])?.unwrap_or(0.0);
    if !(0.0..=f64::from(u32::MAX)).contains(&number) {
        return Err(ShapeError::NotANumber {
            column: column.to_owned(),
            value: number.to_string(),
        });
    }
    Ok(number as u32)
}

impl ReplicaChannel {
    pub fn from_row(row: &TextRow) -> Result<Self, ShapeError> {
        let io_running = row
            .column(&["Replica_IO_Running", "Slave_IO_Running"])?
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("yes"));
        let sql_running = row
            .column(&["Replica_SQL_Running", "Slave_SQL_Running"])?
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("yes"));
        let source_server_id = row
            .optional_number(&["Source_Server_Id", "Master_Server_Id"])?
            .filter(|id| *id > 0.0 && *id <= f64::from(u32::MAX))
            .map(|id| id as u32);
        Ok(ReplicaChannel {
            // Absent before multi-source (MySQL 5.6) and from RDS's procedure: the default channel.
            channel: row
                .optional(&["Connection_name", "Channel_Name"])
                .unwrap_or_default()
                .to_owned(),
            io_running,
            sql_running,
            seconds_behind: row.number(&["Seconds_Behind_Source", "Seconds_Behind_Master"])?,
            sql_delay: row.optional_number(&["SQL_Delay"])?,
            last_io_errno: errno(row, "Last_IO_Errno")?,
            last_sql_errno: errno(row, "Last_SQL_Errno")?,
            read_position: row.optional_number(&["Read_Source_Log_Pos", "Read_Master_Log_Pos"])?,
            exec_position: row.optional_number(&["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"])?,
            relay_log_space: row.optional_number(&["Relay_Log_Space"])?,
            source_server_id,
        })
    }

    /// The channel's lag as the fleet reads it: known only while both threads run.
    pub fn lag_seconds(&self) -> Option<f64> {
        if !(self.io_running && self.sql_running) {
            return None;
        }
        self.seconds_behind.map(|lag| lag.max(0.0))
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        let channel = self.channel.as_str();
        out.push(IO_RUNNING.sample_with([channel], bool_value(self.io_running)));
        out.push(SQL_RUNNING.sample_with([channel], bool_value(self.sql_running)));
        // Only a channel whose threads both run has a lag: MySQL 8.0 reports 0, not NULL, for a channel whose
        // receiver is still connecting (an unreachable source) once the relay log is applied.
        let lag = match self.io_running && self.sql_running {
            true => self.seconds_behind.unwrap_or(f64::NAN),
            false => f64::NAN,
        };
        out.push(LAG.sample_with([channel], lag));
        for (thread, errno) in [("io", self.last_io_errno), ("sql", self.last_sql_errno)] {
            let class = ErrorClass::of(errno).as_str();
            out.push(LAST_ERRNO.sample_with([channel, thread, class], f64::from(errno)));
        }
        for (desc, value) in [
            (&SQL_DELAY, self.sql_delay),
            (&READ_POSITION, self.read_position),
            (&EXEC_POSITION, self.exec_position),
            (&RELAY_LOG_SPACE, self.relay_log_space),
        ] {
            if let Some(value) = value {
                out.push(desc.sample_with([channel], value));
            }
        }
    }
}

/// The replica as one fleet member: the worst of its channels. Any channel with unknown lag makes the
/// replica's lag unknown; any channel not running makes it unhealthy.
pub fn fleet_state(channels: &[ReplicaChannel]) -> (Option<f64>, bool) {
    let running = channels
        .iter()
        .all(|channel| channel.io_running && channel.sql_running);
    let mut worst: Option<f64> = Some(0.0);
    for channel in channels {
        worst = match (worst, channel.lag_seconds()) {
            (Some(so_far), Some(lag)) => Some(so_far.max(lag)),
            _ => None,
        };
    }
    (worst, running)
}

/// All samples of this view. `replica` names the server in the fleet signals (the target's name). A server
/// with no channel is no replica: only `mysql_replica_configured 0`, no fleet replication series.
pub fn samples(replica: &str, channels: &[ReplicaChannel], out: &mut Vec<Sample>) {
    out.push(CONFIGURED.sample(bool_value(!channels.is_empty())));
    if channels.is_empty() {
        return;
    }
    for channel in channels {
        channel.samples(out);
    }
    let (lag, running) = fleet_state(channels);
    out.extend(fleet::replication_samples(replica, lag, running));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::row::parse_vertical;

    fn fixture(text: &str) -> ReplicaChannel {
        let rows = parse_vertical(text);
        assert_eq!(rows.len(), 1, "one row in the fixture");
        ReplicaChannel::from_row(&rows[0]).expect("the fixture parses")
    }

    /// MySQL 8.4 `SHOW REPLICA STATUS`, Source_*/Replica_* names (fixture from the reference manual).
    #[test]
    fn mysql_8_4_show_replica_status_parses_with_the_new_names() {
        let channel = fixture(include_str!(
            "../../tests/fixtures/mysql/show_replica_status_8.4.txt"
        ));
        assert_eq!(channel.channel, "");
        assert!(channel.io_running && channel.sql_running);
        assert_eq!(channel.seconds_behind, Some(0.0));
        assert_eq!(channel.lag_seconds(), Some(0.0));
        assert_eq!(channel.read_position, Some(927.0));
        assert_eq!(channel.exec_position, Some(927.0));
        assert_eq!(channel.relay_log_space, Some(1355.0));
        assert_eq!(channel.sql_delay, Some(0.0));
        assert_eq!(channel.source_server_id, Some(1));
        assert_eq!((channel.last_io_errno, channel.last_sql_errno), (0, 0));
    }

    /// MySQL 5.7 `SHOW SLAVE STATUS` (the names 8.0 still prints for SHOW SLAVE STATUS), with 5.7's
    /// lower-case `Channel_name` (fixture from the reference manual).
    #[test]
    fn mysql_5_7_show_slave_status_parses_with_the_old_names() {
        let channel = fixture(include_str!(
            "../../tests/fixtures/mysql/show_slave_status_5.7.txt"
        ));
        assert_eq!(channel.channel, "");
        assert!(channel.io_running && channel.sql_running);
        assert_eq!(channel.lag_seconds(), Some(0.0));
        assert_eq!(channel.read_position, Some(1307.0));
        assert_eq!(channel.exec_position, Some(1307.0));
        assert_eq!(channel.relay_log_space, Some(1858.0));
        assert_eq!(channel.source_server_id, Some(1));
    }

    /// RDS for MariaDB's `mysql.rds_replica_status` mixes Source_* names with `Seconds_Behind_Master` and has
    /// no channel column (fixture from the RDS user guide): per-column aliases handle it.
    #[test]
    fn rds_mariadb_mixed_names_parse_column_by_column() {
        let channel = fixture(include_str!(
            "../../tests/fixtures/mysql/rds_replica_status_mariadb.txt"
        ));
        assert_eq!(channel.channel, "");
        assert!(channel.io_running && channel.sql_running);
        assert_eq!(channel.seconds_behind, Some(0.0));
        assert_eq!(channel.exec_position, Some(405.0));
        assert_eq!(channel.relay_log_space, Some(1016.0));
        assert_eq!(channel.source_server_id, Some(807_509_301));
    }

    fn channel(io: bool, sql: bool, lag: Option<f64>) -> ReplicaChannel {
        ReplicaChannel {
            channel: String::new(),
            io_running: io,
            sql_running: sql,
            seconds_behind: lag,
            sql_delay: Some(0.0),
            last_io_errno: 0,
            last_sql_errno: 0,
            read_position: None,
            exec_position: None,
            relay_log_space: None,
            source_server_id: Some(1),
        }
    }

    #[test]
    fn a_stopped_thread_is_unknown_lag_and_unhealthy_never_zero() {
        let mut out = Vec::new();
        samples("replica1", &[channel(true, false, None)], &mut out);
        let lag = out
            .iter()
            .find(|sample| sample.name() == "db_replication_lag_seconds")
            .expect("fleet lag present");
        assert!(lag.value.is_nan());
        assert_eq!(lag.label("replica"), Some("replica1"));
        let healthy = out
            .iter()
            .find(|sample| sample.name() == "db_replication_healthy")
            .expect("fleet health present");
        assert_eq!(healthy.value, 0.0);
        let channel_lag = out
            .iter()
            .find(|sample| sample.name() == "mysql_replica_lag_seconds")
            .expect("channel lag present");
        assert!(channel_lag.value.is_nan());
        // Even a number next to a stopped IO thread is not trusted as the fleet's lag, nor as the channel's:
        // MySQL 8.0 reports Seconds_Behind_Source 0 while the receiver of an unreachable source connects.
        assert_eq!(
            fleet_state(&[channel(false, true, Some(0.0))]),
            (None, false)
        );
        let mut out = Vec::new();
        channel(false, true, Some(0.0)).samples(&mut out);
        let connecting = out
            .iter()
            .find(|sample| sample.name() == "mysql_replica_lag_seconds")
            .expect("channel lag present");
        assert!(connecting.value.is_nan());
    }

    #[test]
    fn the_fleet_reads_the_worst_channel() {
        let mut second = channel(true, true, Some(7.0));
        second.channel = "east".into();
        assert_eq!(
            fleet_state(&[channel(true, true, Some(2.0)), second.clone()]),
            (Some(7.0), true)
        );
        assert_eq!(
            fleet_state(&[channel(true, true, None), second]),
            (None, true)
        );
    }

    #[test]
    fn a_server_without_channels_has_no_replica_series() {
        let mut out = Vec::new();
        samples("primary", &[], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name(), "mysql_replica_configured");
        assert_eq!(out[0].value, 0.0);
    }

    #[test]
    fn error_numbers_map_to_bounded_classes() {
        assert_eq!(ErrorClass::of(0), ErrorClass::None);
        assert_eq!(ErrorClass::of(2003), ErrorClass::Connect);
        assert_eq!(ErrorClass::of(1045), ErrorClass::Auth);
        assert_eq!(ErrorClass::of(2061), ErrorClass::Auth);
        assert_eq!(ErrorClass::of(1236), ErrorClass::SourceBinlog);
        assert_eq!(ErrorClass::of(13114), ErrorClass::SourceBinlog);
        assert_eq!(ErrorClass::of(1062), ErrorClass::DuplicateKey);
        assert_eq!(ErrorClass::of(1032), ErrorClass::MissingRow);
        assert_eq!(ErrorClass::of(1146), ErrorClass::Schema);
        assert_eq!(ErrorClass::of(1593), ErrorClass::Other);
        let mut broken = channel(false, false, None);
        broken.last_io_errno = 1236;
        broken.last_sql_errno = 1062;
        let mut out = Vec::new();
        broken.samples(&mut out);
        let classes: Vec<(Option<&str>, Option<&str>, f64)> = out
            .iter()
            .filter(|sample| sample.name() == "mysql_replica_last_errno")
            .map(|sample| {
                (
                    sample.label("thread"),
                    sample.label("error_class"),
                    sample.value,
                )
            })
            .collect();
        assert_eq!(
            classes,
            [
                (Some("io"), Some("source_binlog"), 1236.0),
                (Some("sql"), Some("duplicate_key"), 1062.0)
            ]
        );
    }
}
