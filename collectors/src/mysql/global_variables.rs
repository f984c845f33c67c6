//! The global system variables a poll needs: the connection limit, the binary log settings and read_only.
//!
//! log_bin decides whether the poll reads SHOW BINARY LOGS, so it never sends a statement bound to fail.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

use super::query::{fetch_rows, QueryError};
use super::row::{parse_flag, ShapeError, TextRow};

pub const VIEW: &str = "global_variables";
const QUERY: &str = include_str!("global_variables.sql");

/// Once per connection: whether performance_schema is on. It cannot change without a restart, which ends the
/// connection; a server built without it has no such variable, hence SHOW (no row) rather than `@@`.
pub const PERFORMANCE_SCHEMA_QUERY: &str = "SHOW GLOBAL VARIABLES LIKE 'performance_schema'";

/// The answer to [`PERFORMANCE_SCHEMA_QUERY`]: no row means the server was built without it, which is off.
pub fn performance_schema_from_rows(rows: &[TextRow]) -> Result<bool, ShapeError> {
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    let value = row.column(&["Value"])?.unwrap_or("");
    parse_flag(value).ok_or_else(|| {
        ShapeError::Other(format!(
            "performance_schema is neither ON nor OFF: {value:?}"
        ))
    })
}

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
        let row = rows
            .first()
            .ok_or_else(|| ShapeError::Other("the system variables returned no row".into()))?;
        let max_connections = row
            .number(&["max_connections"])?
            .ok_or_else(|| ShapeError::Other("max_connections is NULL".into()))?;
        let flag = |name: &str| row.optional(&[name]).and_then(parse_flag);
        let binlog_format = row.optional(&["binlog_format"]).and_then(|text| {
            BINLOG_FORMATS
                .into_iter()
                .find(|format| format.eq_ignore_ascii_case(text.trim()))
        });
        Ok(GlobalVariables {
            max_connections,
            log_bin: flag("log_bin").unwrap_or(false),
            binlog_format,
            read_only: flag("read_only").unwrap_or(false),
            server_id: row.optional_number(&["server_id"])?,
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

    /// The one row of the SELECT, as the text protocol returns it (flags as 0/1).
    fn rows(pairs: &[(&str, &str)]) -> Vec<TextRow> {
        vec![TextRow::new(
            pairs
                .iter()
                .map(|(name, value)| ((*name).into(), Some((*value).into())))
                .collect(),
        )]
    }

    #[test]
    fn settings_parse_and_the_format_is_one_hot() {
        let variables = GlobalVariables::from_rows(&rows(&[
            ("max_connections", "151"),
            ("read_only", "1"),
            ("log_bin", "1"),
            ("binlog_format", "row"),
            ("server_id", "2"),
        ]))
        .expect("variables");
        assert_eq!(variables.max_connections, 151.0);
        assert_eq!(variables.binlog_format, Some("ROW"));
        assert!(variables.log_bin && variables.read_only);
        assert_eq!(variables.server_id, Some(2.0));
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
        assert!(!variables.log_bin && !variables.read_only);
        assert!(GlobalVariables::from_rows(&rows(&[("log_bin", "1")])).is_err());
        assert!(GlobalVariables::from_rows(&[]).is_err());
    }

    #[test]
    fn performance_schema_is_off_when_the_server_lacks_it() {
        let answer = |value: &str| {
            vec![TextRow::new(vec![
                ("Variable_name".into(), Some("performance_schema".into())),
                ("Value".into(), Some(value.into())),
            ])]
        };
        assert_eq!(performance_schema_from_rows(&answer("ON")).ok(), Some(true));
        assert_eq!(
            performance_schema_from_rows(&answer("OFF")).ok(),
            Some(false)
        );
        assert_eq!(performance_schema_from_rows(&[]).ok(), Some(false));
        assert!(performance_schema_from_rows(&answer("maybe")).is_err());
    }
}
