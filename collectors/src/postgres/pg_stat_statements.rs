//! Query execution time from pg_stat_statements: per-database totals by default, top statements opt-in.
//!
//! The average latency of an interval is the change in total execution time over the change in calls between
//! two polls. Totals per database keep cardinality fixed; the opt-in top-N list is sticky (see
//! [`crate::top::StickyTop::select`]) and carries the queryid only, never the query text.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::fleet;
use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_stat_statements";
pub const TOP_VIEW: &str = "pg_stat_statements_top";
const QUERY: &str = include_str!("pg_stat_statements.sql");
const TOP_QUERY: &str = include_str!("pg_stat_statements_top.sql");

pub static CALLS: MetricDesc = MetricDesc {
    name: "pg_statements_calls_total",
    help: "Statement executions recorded by pg_stat_statements, dbwatch's own excluded",
    kind: MetricKind::Counter,
    labels: &["database"],
};
pub static EXEC_SECONDS: MetricDesc = MetricDesc {
    name: "pg_statements_exec_seconds_total",
    help: "Time spent executing statements, dbwatch's own excluded",
    kind: MetricKind::Counter,
    labels: &["database"],
};
pub static ROWS: MetricDesc = MetricDesc {
    name: "pg_statements_rows_total",
    help: "Rows retrieved or affected by statements",
    kind: MetricKind::Counter,
    labels: &["database"],
};
pub static LATENCY: MetricDesc = MetricDesc {
    name: "pg_statements_latency_avg_seconds",
    help: "Mean execution time of statements completed in the last poll interval; NaN when none completed",
    kind: MetricKind::Gauge,
    labels: &["database"],
};
pub static AVAILABLE: MetricDesc = MetricDesc {
    name: "pg_statements_available",
    help:
        "1 when the pg_stat_statements extension is installed in the database dbwatch connects to",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static TOP_CALLS: MetricDesc = MetricDesc {
    name: "pg_statement_calls_total",
    help: "Executions of one of the top statements by execution time (opt-in)",
    kind: MetricKind::Counter,
    labels: &["database", "queryid"],
};
pub static TOP_EXEC_SECONDS: MetricDesc = MetricDesc {
    name: "pg_statement_exec_seconds_total",
    help: "Execution time of one of the top statements by execution time (opt-in)",
    kind: MetricKind::Counter,
    labels: &["database", "queryid"],
};
pub static TOP_ROWS: MetricDesc = MetricDesc {
    name: "pg_statement_rows_total",
    help: "Rows of one of the top statements by execution time (opt-in)",
    kind: MetricKind::Counter,
    labels: &["database", "queryid"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &CALLS,
    &EXEC_SECONDS,
    &ROWS,
    &LATENCY,
    &AVAILABLE,
    &TOP_CALLS,
    &TOP_EXEC_SECONDS,
    &TOP_ROWS,
];

/// Cumulative totals of one database or one statement.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    pub calls: f64,
    pub exec_seconds: f64,
    pub rows: f64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.calls += other.calls;
        self.exec_seconds += other.exec_seconds;
        self.rows += other.rows;
    }
}

/// Whether the extension can be read, learnt once per connection.
pub async fn available(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed",
    )
    .fetch_one(connection)
    .await?;
    row.try_get("installed")
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Vec<(String, Totals)>, sqlx::Error> {
    let rows = sqlx::query(QUERY).fetch_all(connection).await?;
    let mut totals = Vec::with_capacity(rows.len());
    for row in rows {
        totals.push((row.try_get("datname")?, totals_of(&row)?));
    }
    Ok(totals)
}

pub type StatementKey = (String, String);

pub async fn fetch_top(
    connection: &mut PgConnection,
    window: usize,
) -> Result<Vec<(StatementKey, Totals)>, sqlx::Error> {
    let limit = i64::try_from(window).unwrap_or(i64::MAX);
    let rows = sqlx::query(TOP_QUERY)
        .bind(limit)
        .fetch_all(connection)
        .await?;
    let mut top = Vec::with_capacity(rows.len());
    for row in rows {
        let key = (row.try_get("datname")?, row.try_get("queryid")?);
        top.push((key, totals_of(&row)?));
    }
    Ok(top)
}

fn totals_of(row: &sqlx::postgres::PgRow) -> Result<Totals, sqlx::Error> {
    Ok(Totals {
        calls: row.try_get::<Option<f64>, _>("calls")?.unwrap_or(0.0),
        exec_seconds: row
            .try_get::<Option<f64>, _>("exec_seconds")?
            .unwrap_or(0.0),
        rows: row.try_get::<Option<f64>, _>("rows")?.unwrap_or(0.0),
    })
}

/// Per-database totals of the previous poll, for interval averages.
#[derive(Debug, Default)]
pub struct StatementsState {
    previous: HashMap<String, Totals>,
    previous_sum: Option<Totals>,
}

impl StatementsState {
    /// Samples for this poll, including the fleet's `db_query_latency_avg_seconds`, and remembers the totals.
    pub fn samples(&mut self, current: &[(String, Totals)], out: &mut Vec<Sample>) {
        let mut sum = Totals::default();
        for (database, totals) in current {
            sum.add(*totals);
            let previous = self
                .previous
                .get(database)
                .map(|totals| (totals.calls, totals.exec_seconds));
            let latency = fleet::average_latency(previous, (totals.calls, totals.exec_seconds));
            let labels = [database.as_str()];
            out.push(CALLS.sample_with(labels, totals.calls));
            out.push(EXEC_SECONDS.sample_with(labels, totals.exec_seconds));
            out.push(ROWS.sample_with(labels, totals.rows));
            out.push(LATENCY.sample_with(labels, latency));
        }
        let previous_sum = self
            .previous_sum
            .map(|totals| (totals.calls, totals.exec_seconds));
        out.push(
            fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(fleet::average_latency(
                previous_sum,
                (sum.calls, sum.exec_seconds),
            )),
        );
        self.previous = current.iter().cloned().collect();
        self.previous_sum = Some(sum);
    }

    /// After a reconnect the counters may have been reset underneath us; start the interval afresh.
    pub fn forget(&mut self) {
        self.previous.clear();
        self.previous_sum = None;
    }
}

/// The sticky set of exported top statements.
pub type TopStatements = crate::top::StickyTop<StatementKey>;

/// The series of the chosen top statements.
pub fn top_samples(chosen: &[(StatementKey, Totals)], out: &mut Vec<Sample>) {
    for ((database, queryid), totals) in chosen {
        let labels = [database.as_str(), queryid.as_str()];
        out.push(TOP_CALLS.sample_with(labels, totals.calls));
        out.push(TOP_EXEC_SECONDS.sample_with(labels, totals.exec_seconds));
        out.push(TOP_ROWS.sample_with(labels, totals.rows));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(calls: f64, exec_seconds: f64) -> Totals {
        Totals {
            calls,
            exec_seconds,
            rows: 0.0,
        }
    }

    fn value_of(samples: &[Sample], name: &str) -> f64 {
        samples
            .iter()
            .find(|sample| sample.name() == name)
            .map(|sample| sample.value)
            .unwrap_or(f64::NEG_INFINITY)
    }

    #[test]
    fn interval_latency_comes_from_deltas_across_databases() {
        let mut state = StatementsState::default();
        let mut first = Vec::new();
        state.samples(
            &[
                ("shop".into(), totals(100.0, 1.0)),
                ("postgres".into(), totals(10.0, 1.0)),
            ],
            &mut first,
        );
        assert!(value_of(&first, "db_query_latency_avg_seconds").is_nan());
        let mut second = Vec::new();
        state.samples(
            &[
                ("shop".into(), totals(103.0, 1.9)),
                ("postgres".into(), totals(11.0, 1.1)),
            ],
            &mut second,
        );
        let latency = value_of(&second, "db_query_latency_avg_seconds");
        assert!((latency - 1.0 / 4.0).abs() < 1e-9, "latency {latency}");
        let shop = second
            .iter()
            .find(|sample| {
                sample.name() == "pg_statements_latency_avg_seconds"
                    && sample.label("database") == Some("shop")
            })
            .map(|sample| sample.value);
        assert!(shop.is_some_and(|value| (value - 0.3).abs() < 1e-9));
    }

    fn key(queryid: &str) -> StatementKey {
        ("shop".into(), queryid.into())
    }

    #[test]
    fn top_statements_keep_their_place_inside_the_window() {
        let mut top = TopStatements::new(2);
        let first = top.select(&[
            (key("a"), totals(1.0, 9.0)),
            (key("b"), totals(1.0, 8.0)),
            (key("c"), totals(1.0, 7.0)),
        ]);
        let names: Vec<_> = first.iter().map(|((_, id), _)| id.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        // c overtakes b, but b is still within the top 2N: the exported set does not change.
        let second = top.select(&[
            (key("a"), totals(1.0, 9.0)),
            (key("c"), totals(1.0, 8.5)),
            (key("b"), totals(1.0, 8.0)),
        ]);
        let names: Vec<_> = second.iter().map(|((_, id), _)| id.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        // b leaves the window: its place goes to the best-ranked newcomer.
        let third = top.select(&[
            (key("a"), totals(1.0, 9.0)),
            (key("c"), totals(1.0, 8.5)),
            (key("d"), totals(1.0, 8.4)),
            (key("e"), totals(1.0, 8.3)),
        ]);
        let names: Vec<_> = third.iter().map(|((_, id), _)| id.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }
}
