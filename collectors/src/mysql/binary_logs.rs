//! `SHOW BINARY LOGS`: how many binary log files the server keeps and their total size.
//!
//! Sent only when `log_bin` is on (the statement fails otherwise). It needs REPLICATION CLIENT (MySQL) or
//! BINLOG MONITOR (MariaDB 10.5+), and it briefly takes the binary log's lock, so it can be turned off.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::query::{fetch_rows, QueryError};
use super::row::{ShapeError, TextRow};

pub const VIEW: &str = "binary_logs";
const QUERY: &str = "SHOW BINARY LOGS";

pub static FILES: MetricDesc = MetricDesc {
    name: "mysql_binlog_files",
    help: "Binary log files the server keeps (SHOW BINARY LOGS)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static SIZE: MetricDesc = MetricDesc {
    name: "mysql_binlog_size_bytes",
    help: "Total size of the binary log files the server keeps",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&FILES, &SIZE];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinaryLogs {
    pub files: f64,
    pub bytes: f64,
}

pub async fn fetch(
    connection: &mut MySqlConnection,
    timeout: Duration,
) -> Result<BinaryLogs, QueryError> {
    let rows = fetch_rows(connection, QUERY, timeout).await?;
    Ok(BinaryLogs::from_rows(&rows)?)
}

impl BinaryLogs {
    pub fn from_rows(rows: &[TextRow]) -> Result<Self, ShapeError> {
        let mut bytes = 0.0;
        for row in rows {
            bytes += row.number(&["File_size"])?.unwrap_or(0.0);
        }
        Ok(BinaryLogs {
            files: rows.len() as f64,
            bytes,
        })
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(FILES.sample(self.files));
        out.push(SIZE.sample(self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::row::parse_table;

    /// MySQL 8.4's three-column output (fixture from the reference manual); MariaDB's two columns are read
    /// by the integration test against the local server.
    #[test]
    fn mysql_8_4_output_sums_file_sizes() {
        let rows = parse_table(include_str!(
            "../../tests/fixtures/mysql/show_binary_logs_8.4.txt"
        ));
        let logs = BinaryLogs::from_rows(&rows).expect("the fixture parses");
        assert_eq!(
            logs,
            BinaryLogs {
                files: 2.0,
                bytes: 724_935.0 + 733_481.0
            }
        );
    }

    #[test]
    fn no_files_is_zero_not_an_error() {
        assert_eq!(
            BinaryLogs::from_rows(&[]),
            Ok(BinaryLogs {
                files: 0.0,
                bytes: 0.0
            })
        );
    }
}
