//! The top statement digests by execution time, opt-in (`top_digests`, 0 = off).
//!
//! Bounded and stable: at most `top_digests` digests are exported, and the set is sticky (see
//! [`crate::top::StickyTop::select`]). The labels are the schema and the DIGEST hash only, never the digest text:
//! statement text has unbounded cardinality and can carry literals.

use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::MySqlConnection;

use crate::metric::{MetricDesc, MetricKind, Sample};

use super::events_statements_summary_global_by_event_name::PICOSECONDS_PER_SECOND;
use super::query::{fetch_rows, QueryError};
use super::row::{ShapeError, TextRow};

pub const VIEW: &str = "events_statements_summary_by_digest";
const QUERY: &str = include_str!("events_statements_summary_by_digest.sql");

pub static CALLS: MetricDesc = MetricDesc {
    name: "mysql_digest_calls_total",
    help: "Executions of one of the top statement digests by execution time (opt-in)",
    kind: MetricKind::Counter,
    labels: &["schema", "digest"],
};
pub static SECONDS: MetricDesc = MetricDesc {
    name: "mysql_digest_seconds_total",
    help: "Execution time of one of the top statement digests (opt-in)",
    kind: MetricKind::Counter,
    labels: &["schema", "digest"],
};
pub static ROWS_EXAMINED: MetricDesc = MetricDesc {
    name: "mysql_digest_rows_examined_total",
    help: "Rows read by the storage engines for one of the top statement digests (opt-in)",
    kind: MetricKind::Counter,
    labels: &["schema", "digest"],
};
pub static ROWS_SENT: MetricDesc = MetricDesc {
    name: "mysql_digest_rows_sent_total",
    help: "Rows returned to clients by one of the top statement digests (opt-in)",
    kind: MetricKind::Counter,
    labels: &["schema", "digest"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&CALLS, &SECONDS, &ROWS_EXAMINED, &ROWS_SENT];

/// (schema, digest); the schema is "" for statements run without a default database.
pub type DigestKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DigestTotals {
    pub calls: f64,
    pub seconds: f64,
    pub rows_examined: f64,
    pub rows_sent: f64,
}

/// The statement for a window of `window` digests, built once per collector.
pub fn query_for(window: usize) -> Arc<str> {
    Arc::from(format!("{}\nLIMIT {window}", QUERY.trim_end()))
}

pub async fn fetch(
    connection: &mut MySqlConnection,
    query: Arc<str>,
    timeout: Duration,
) -> Result<Vec<(DigestKey, DigestTotals)>, QueryError> {
    let rows = fetch_rows(connection, sqlx::AssertSqlSafe(query), timeout).await?;
    Ok(parse(&rows)?)
}

pub fn parse(rows: &[TextRow]) -> Result<Vec<(DigestKey, DigestTotals)>, ShapeError> {
    let mut ranked = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(digest) = row.column(&["DIGEST"])? else {
            continue;
        };
        let schema = row.column(&["SCHEMA_NAME"])?.unwrap_or_default();
        let totals = DigestTotals {
            calls: row.number(&["COUNT_STAR"])?.unwrap_or(0.0),
            seconds: row.number(&["SUM_TIMER_WAIT"])?.unwrap_or(0.0) / PICOSECONDS_PER_SECOND,
            rows_examined: row.number(&["SUM_ROWS_EXAMINED"])?.unwrap_or(0.0),
            rows_sent: row.number(&["SUM_ROWS_SENT"])?.unwrap_or(0.0),
        };
        ranked.push(((schema.to_owned(), digest.to_owned()), totals));
    }
    Ok(ranked)
}

/// The sticky set of exported digests.
pub type TopDigests = crate::top::StickyTop<DigestKey>;

/// The series of the chosen digests.
pub fn top_samples(chosen: &[(DigestKey, DigestTotals)], out: &mut Vec<Sample>) {
    for ((schema, digest), totals) in chosen {
        let labels = [schema.as_str(), digest.as_str()];
        out.push(CALLS.sample_with(labels, totals.calls));
        out.push(SECONDS.sample_with(labels, totals.seconds));
        out.push(ROWS_EXAMINED.sample_with(labels, totals.rows_examined));
        out.push(ROWS_SENT.sample_with(labels, totals.rows_sent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(seconds: f64) -> DigestTotals {
        DigestTotals {
            calls: 1.0,
            seconds,
            rows_examined: 0.0,
            rows_sent: 0.0,
        }
    }

    fn key(digest: &str) -> DigestKey {
        ("shop".into(), digest.into())
    }

    fn names(chosen: &[(DigestKey, DigestTotals)]) -> Vec<&str> {
        chosen
            .iter()
            .map(|((_, digest), _)| digest.as_str())
            .collect()
    }

    #[test]
    fn digests_keep_their_place_inside_the_window() {
        let mut top = TopDigests::new(2);
        assert_eq!(top.window(), 4);
        let first = top.select(&[
            (key("a"), totals(9.0)),
            (key("b"), totals(8.0)),
            (key("c"), totals(7.0)),
        ]);
        assert_eq!(names(&first), ["a", "b"]);
        // c overtakes b, but b is still within the top 2N: the exported set does not change.
        let second = top.select(&[
            (key("a"), totals(9.0)),
            (key("c"), totals(8.5)),
            (key("b"), totals(8.0)),
        ]);
        assert_eq!(names(&second), ["a", "b"]);
        // b leaves the window: its place goes to the best-ranked newcomer.
        let third = top.select(&[
            (key("a"), totals(9.0)),
            (key("c"), totals(8.5)),
            (key("d"), totals(8.4)),
            (key("e"), totals(8.3)),
        ]);
        assert_eq!(names(&third), ["a", "c"]);
    }

    #[test]
    fn rows_parse_without_text_and_null_schema_is_empty() {
        let rows = vec![TextRow::new(vec![
            ("SCHEMA_NAME".into(), None),
            (
                "DIGEST".into(),
                Some("6f179da6809ce8872c2ff5b5131bd0d3".into()),
            ),
            ("COUNT_STAR".into(), Some("4".into())),
            ("SUM_TIMER_WAIT".into(), Some("2000000000000".into())),
            ("SUM_ROWS_EXAMINED".into(), Some("10".into())),
            ("SUM_ROWS_SENT".into(), Some("4".into())),
        ])];
        let ranked = parse(&rows).expect("parse");
        assert_eq!(
            ranked[0].0,
            (String::new(), "6f179da6809ce8872c2ff5b5131bd0d3".into())
        );
        assert_eq!(ranked[0].1.seconds, 2.0);
        let mut out = Vec::new();
        top_samples(&ranked, &mut out);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|sample| sample.labels.iter().count() == 2));
    }

    #[test]
    fn the_limit_follows_the_sql_not_a_comment() {
        let query = query_for(10);
        assert!(
            query.ends_with("ORDER BY SUM_TIMER_WAIT DESC\nLIMIT 10"),
            "{query}"
        );
    }
}
