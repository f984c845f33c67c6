//! Blocking: sessions waiting on a heavyweight lock held by another, the longest such wait, and how many
//! blocking roots (sessions that block others and wait on nobody) there are, from `pg_blocking_pids` over
//! `pg_stat_activity` and `pg_locks`.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_locks";
const QUERY: &str = include_str!("pg_locks.sql");

pub static BLOCKED: MetricDesc = MetricDesc {
    name: "pg_locks_blocked_sessions",
    help: "Sessions waiting on a heavyweight lock another session holds",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static BLOCKING_ROOTS: MetricDesc = MetricDesc {
    name: "pg_locks_blocking_roots",
    help: "Sessions that block others while waiting on no lock themselves",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static LONGEST_WAIT: MetricDesc = MetricDesc {
    name: "pg_locks_longest_wait_seconds",
    help: "The longest current wait for a heavyweight lock; 0 when nothing waits",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[&BLOCKED, &BLOCKING_ROOTS, &LONGEST_WAIT];

#[derive(Debug, Clone, PartialEq)]
pub struct Blocking {
    pub blocked: f64,
    pub blocking_roots: f64,
    pub longest_wait_seconds: f64,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Blocking, sqlx::Error> {
    let row = sqlx::query(QUERY).fetch_one(connection).await?;
    Ok(Blocking {
        blocked: row.try_get("blocked")?,
        blocking_roots: row.try_get("blocking_roots")?,
        longest_wait_seconds: row.try_get("longest_wait_seconds")?,
    })
}

impl Blocking {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        out.push(BLOCKED.sample(self.blocked));
        out.push(BLOCKING_ROOTS.sample(self.blocking_roots));
        // A clock step between the server's now() and a wait's start can make the difference negative.
        out.push(LONGEST_WAIT.sample(self.longest_wait_seconds.max(0.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_series_and_no_negative_wait() {
        let mut samples = Vec::new();
        Blocking {
            blocked: 2.0,
            blocking_roots: 1.0,
            longest_wait_seconds: -0.25,
        }
        .samples(&mut samples);
        let values: Vec<(&str, f64)> = samples
            .iter()
            .map(|sample| (sample.desc.name, sample.value))
            .collect();
        assert_eq!(
            values,
            [
                ("pg_locks_blocked_sessions", 2.0),
                ("pg_locks_blocking_roots", 1.0),
                ("pg_locks_longest_wait_seconds", 0.0)
            ]
        );
    }
}
