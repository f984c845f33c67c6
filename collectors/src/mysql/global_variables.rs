//! `SHOW GLOBAL VARIABLES`: the connection limit, the binary log settings, read_only and performance_schema.
//!
//! These decide what else the poll reads (SHOW BINARY LOGS only with log_bin on, the latency query only with
//! performance_schema on), so the poll never sends a statement that is bound to fail.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

use super::connection::{fetch_rows, QueryError};
use super::global_status::name_value_map;
use super::row::{parse_flag, parse_number, ShapeError, TextRow};

pub const VIEW: &str = "global_variables";
const QUERY: &str = include_str!("global_variables.sql");

pub static READ_ONLY: MetricDesc = MetricDesc {
    name: "mysql_read_only",
    help: "1 when the server refuses writes from ordinary users (read_only)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BINLOG_ENABLED: MetricDesc = MetricDesc {
    name: "mysql_binlog_enabled",
    help: "1 when the server writes a binary log (log_bin)",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BINLOG_FORMAT: MetricDesc = MetricDesc {
    name: "mysql_binlog_format",
    help: "1 for the binary log format in use (binlog_format), 0 for the others",
    kind: MetricKind::Gauge,
    labels: &["format"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&READ_ONLY, &BINLOG_ENABLED, &BINLOG_FORMAT];

/// The `format` label values.
pub const BINLOG_FORMATS: [&str; 3] = ["ROW", "STATEMENT", "MIXED"];

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalVariables {
    pub max_connections: f64,
    pub log_bin: bool,
    /// Upper-cased; kept only when it is one of [`BINLOG_FORMATS`].
    pub binlog_format: Option<&'static str>,
    pub performance_schema: bool,
    pub read_only: bool,
    pub server_id: Option<f64>,
}

pub async fn fetch(
    connection: &mut MySqlConnection,
    timeout: Duration,
) -> Result<GlobalVariables, QueryError> {
    let rows = fetch_rows(connection, QUERY, timeout).await?;
    Ok(GlobalVariables::from_rows(&rows)?)
}

impl GlobalVariables {
    pub fn from_rows(rows: &[TextRow]) -> Result<Self, ShapeError> {
        let values = name_value_map(rows)?;
        let flag = |name: &str| values.get(name).and_then(|text| parse_flag(text));
        let max_connections = values
            .get("max_connections")
            .ok_or_else(|| ShapeError::MissingColumn("max_connections".into()))
            .and_then(|text| parse_number("max_connections", text))?;
        let binlog_format = values.get("binlog_format").and_then(|text| {
            BINLOG_FORMATS
                .into_iter()
                .find(|format| format.eq_ignore_ascii_case(text.trim()))
        });
        let server_id = match values.get("server_id") {
            Some(text) => Some(parse_number("server_id", text)?),
            None => None,
        };
        Ok(GlobalVariables {
            max_connections,
            log_bin: flag("log_bin").unwrap_or(false),
            binlog_format,
            // Absent when the server was built without performance_schema: the same as off.
            performance_schema: flag("performance_schema").unwrap_or(false),
            read_only: flag("read_only").unwrap_or(false),
            server_id,
        })
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(READ_ONLY.sample(bool_value(self.read_only)));
        out.push(BINLOG_ENABLED.sample(bool_value(self.log_bin)));
        for format in BINLOG_FORMATS {
            let current = self.binlog_format == Some(format);
            out.push(BINLOG_FORMAT.sample_with([format], bool_value(current)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, &str)]) -> Vec<TextRow> {
        pairs
            .iter()
            .map(|(name, value)| {
                TextRow::new(vec![
                    ("Variable_name".into(), Some((*name).into())),
                    ("Value".into(), Some((*value).into())),
                ])
            })
            .collect()
    }

    #[test]
    fn settings_parse_and_the_format_is_one_hot() {
        let variables = GlobalVariables::from_rows(&rows(&[
            ("binlog_format", "row"),
            ("log_bin", "ON"),
            ("max_connections", "151"),
            ("performance_schema", "OFF"),
            ("read_only", "ON"),
            ("server_id", "2"),
        ]))
        .expect("variables");
        assert_eq!(variables.max_connections, 151.0);
        assert_eq!(variables.binlog_format, Some("ROW"));
        assert!(variables.log_bin && variables.read_only && !variables.performance_schema);
        let mut out = Vec::new();
        variables.samples(&mut out);
        let formats: Vec<(Option<&str>, f64)> = out
            .iter()
            .filter(|sample| sample.name() == "mysql_binlog_format")
            .map(|sample| (sample.label("format"), sample.value))
            .collect();
        assert_eq!(
            formats,
            [
                (Some("ROW"), 1.0),
                (Some("STATEMENT"), 0.0),
                (Some("MIXED"), 0.0)
            ]
        );
    }

    #[test]
    fn an_unknown_format_sets_no_label_and_a_missing_limit_is_an_error() {
        let variables = GlobalVariables::from_rows(&rows(&[
            ("binlog_format", "SOMETHING"),
            ("max_connections", "10"),
        ]))
        .expect("variables");
        assert_eq!(variables.binlog_format, None);
        assert!(!variables.performance_schema);
        assert!(GlobalVariables::from_rows(&rows(&[("log_bin", "ON")])).is_err());
    }
}
