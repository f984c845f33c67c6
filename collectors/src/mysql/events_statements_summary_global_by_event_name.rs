//! Statement latency from performance_schema's statement summaries: the fleet's
//! `db_query_latency_avg_seconds`.
//!
//! The mean latency of an interval is the change in total statement time over the change in completed
//! statements between two polls. By default that is every statement the server completed, dbwatch's own
//! included, as every exporter reads it: its 4-6 statements per poll take a few milliseconds of server time in
//! all, so they pull the mean down only on a server that is nearly idle (under 10 statements of 150 ms in an
//! interval are needed to keep a 100 ms threshold from firing). `exclude_own_statements` subtracts dbwatch's
//! user exactly, at two to three times the database time of this statement (measured in docs/benchmarks.md).
//! performance_schema is off by
//! default on MariaDB and cannot be switched on without a restart: then the capability gauge reads 0 and the
//! latency is NaN, never 0.

use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

use super::query::{fetch_rows, QueryError};
use super::row::{ShapeError, TextRow};

pub const VIEW: &str = "events_statements_summary_global_by_event_name";
const QUERY: &str = include_str!("events_statements_summary_global_by_event_name.sql");
const QUERY_EXCLUDING_OWN_USER: &str =
    include_str!("events_statements_summary_global_by_event_name.excluding_own_user.sql");

/// performance_schema timers count picoseconds.
pub const PICOSECONDS_PER_SECOND: f64 = 1e12;

pub static STATEMENTS: MetricDesc = MetricDesc {
    name: "mysql_perf_schema_statements_total",
    help: "Statements completed, as counted by performance_schema (dbwatch's own included unless exclude_own_statements is set)",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static STATEMENT_SECONDS: MetricDesc = MetricDesc {
    name: "mysql_perf_schema_statement_seconds_total",
    help: "Total execution time of the completed statements (dbwatch's own included unless exclude_own_statements is set)",
    kind: MetricKind::Counter,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&STATEMENTS, &STATEMENT_SECONDS];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatementTotals {
    pub count: f64,
    pub seconds: f64,
}

pub async fn fetch(
    connection: &mut MySqlConnection,
    exclude_own_user: bool,
    timeout: Duration,
) -> Result<StatementTotals, QueryError> {
    let query = if exclude_own_user {
        QUERY_EXCLUDING_OWN_USER
    } else {
        QUERY
    };
    let rows = fetch_rows(connection, query, timeout).await?;
    Ok(StatementTotals::from_rows(&rows)?)
}

impl StatementTotals {
    pub fn from_rows(rows: &[TextRow]) -> Result<Self, ShapeError> {
        let row = rows
            .first()
            .ok_or_else(|| ShapeError::Other("the statement summary returned no row".into()))?;
        Ok(StatementTotals {
            count: row.number(&["count_star"])?.unwrap_or(0.0),
            seconds: row.number(&["sum_timer_wait"])?.unwrap_or(0.0) / PICOSECONDS_PER_SECOND,
        })
    }
}

/// The totals of the previous poll, for the interval mean.
#[derive(Debug, Default)]
pub struct LatencyHistory {
    previous: Option<StatementTotals>,
}

impl LatencyHistory {
    pub fn samples(&mut self, current: StatementTotals, out: &mut Vec<Sample>) {
        let previous = self.previous.map(|totals| (totals.count, totals.seconds));
        out.push(STATEMENTS.sample(current.count));
        out.push(STATEMENT_SECONDS.sample(current.seconds));
        out.push(
            fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(fleet::average_latency(
                previous,
                (current.count, current.seconds),
            )),
        );
        self.previous = Some(current);
    }

    /// No usable totals this poll (performance_schema off, or the query failed): the latency is unknown
    /// and the next interval starts afresh.
    pub fn unknown(&mut self, out: &mut Vec<Sample>) {
        self.previous = None;
        out.push(fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(f64::NAN));
    }

    pub fn forget(&mut self) {
        self.previous = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals_row(count: &str, picoseconds: &str) -> Vec<TextRow> {
        vec![TextRow::new(vec![
            ("count_star".into(), Some(count.into())),
            ("sum_timer_wait".into(), Some(picoseconds.into())),
        ])]
    }

    fn latency(samples: &[Sample]) -> f64 {
        samples
            .iter()
            .find(|sample| sample.name() == "db_query_latency_avg_seconds")
            .map(|sample| sample.value)
            .unwrap_or(f64::NEG_INFINITY)
    }

    #[test]
    fn the_interval_mean_converts_picoseconds_and_uses_deltas() {
        let mut history = LatencyHistory::default();
        let mut first = Vec::new();
        let totals =
            StatementTotals::from_rows(&totals_row("100", "5000000000000")).expect("first");
        assert_eq!(totals.seconds, 5.0);
        history.samples(totals, &mut first);
        assert!(latency(&first).is_nan());
        let mut second = Vec::new();
        // 4 statements, 1.2 s between the polls: one SLEEP(1) and three fast ones.
        history.samples(
            StatementTotals::from_rows(&totals_row("104", "6200000000000")).expect("second"),
            &mut second,
        );
        assert!((latency(&second) - 0.3).abs() < 1e-9);
        let mut idle = Vec::new();
        history.samples(
            StatementTotals::from_rows(&totals_row("104", "6200000000000")).expect("idle"),
            &mut idle,
        );
        assert!(latency(&idle).is_nan(), "no statement completed: no mean");
    }

    #[test]
    fn a_truncated_summary_is_not_a_negative_latency() {
        let mut history = LatencyHistory::default();
        history.samples(
            StatementTotals {
                count: 100.0,
                seconds: 5.0,
            },
            &mut Vec::new(),
        );
        let mut out = Vec::new();
        history.samples(
            StatementTotals {
                count: 3.0,
                seconds: 0.1,
            },
            &mut out,
        );
        assert!(latency(&out).is_nan());
    }

    #[test]
    fn decimal_sums_parse() {
        let totals =
            StatementTotals::from_rows(&totals_row("18446744073709551616", "1")).expect("decimal");
        assert!(totals.count > 1.8e19);
        assert!(StatementTotals::from_rows(&[]).is_err());
    }
}
