//! `SHOW STATS_TOTALS`: queries pooled and the time they took, per database (times in microseconds).

use sqlx::postgres::PgConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "show_stats_totals";

pub static QUERIES: MetricDesc = MetricDesc {
    name: "pgbouncer_queries_total",
    help: "Queries pooled by PgBouncer",
    kind: MetricKind::Counter,
    labels: &["database"],
};
pub static QUERY_SECONDS: MetricDesc = MetricDesc {
    name: "pgbouncer_query_seconds_total",
    help: "Time spent by PgBouncer's server connections running queries",
    kind: MetricKind::Counter,
    labels: &["database"],
};
pub static WAIT_SECONDS: MetricDesc = MetricDesc {
    name: "pgbouncer_client_wait_seconds_total",
    help: "Time clients spent waiting for a server connection",
    kind: MetricKind::Counter,
    labels: &["database"],
};

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseTotals {
    pub database: String,
    pub queries: f64,
    pub query_seconds: f64,
    pub wait_seconds: f64,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Vec<DatabaseTotals>, sqlx::Error> {
    let rows = sqlx::raw_sql("SHOW STATS_TOTALS")
        .fetch_all(connection)
        .await?;
    let mut totals = Vec::with_capacity(rows.len());
    for row in rows {
        totals.push(DatabaseTotals {
            database: super::text(&row, "database")?.unwrap_or_default(),
            queries: super::number(&row, "query_count")?.unwrap_or(0.0),
            query_seconds: super::number(&row, "query_time")?.unwrap_or(0.0) / 1e6,
            wait_seconds: super::number(&row, "wait_time")?.unwrap_or(0.0) / 1e6,
        });
    }
    Ok(totals)
}

/// (queries, seconds) summed over databases, for the interval average.
pub fn sum(totals: &[DatabaseTotals]) -> (f64, f64) {
    totals
        .iter()
        .fold((0.0, 0.0), |(queries, seconds), database| {
            (queries + database.queries, seconds + database.query_seconds)
        })
}

impl DatabaseTotals {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        let labels = [self.database.as_str()];
        out.push(QUERIES.sample_with(labels, self.queries));
        out.push(QUERY_SECONDS.sample_with(labels, self.query_seconds));
        out.push(WAIT_SECONDS.sample_with(labels, self.wait_seconds));
    }
}
