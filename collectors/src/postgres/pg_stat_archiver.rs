//! WAL archiving health from pg_stat_archiver.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_stat_archiver";
const QUERY: &str = include_str!("pg_stat_archiver.sql");

pub static ENABLED: MetricDesc = MetricDesc {
    name: "pg_archiver_enabled",
    help: "1 when archive_mode is on or always",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static ARCHIVED: MetricDesc = MetricDesc {
    name: "pg_archiver_archived_total",
    help: "WAL segments archived successfully",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static FAILED: MetricDesc = MetricDesc {
    name: "pg_archiver_failed_total",
    help: "Failed attempts to archive a WAL segment",
    kind: MetricKind::Counter,
    labels: &[],
};
pub static LAST_ARCHIVED_AGE: MetricDesc = MetricDesc {
    name: "pg_archiver_last_archived_age_seconds",
    help: "Time since the last segment was archived; NaN when none ever was",
    kind: MetricKind::Gauge,
    labels: &[],
};
pub static LAST_FAILED: MetricDesc = MetricDesc {
    name: "pg_archiver_last_failure_timestamp_seconds",
    help: "Unix time of the last archiving failure; 0 when none happened",
    kind: MetricKind::Gauge,
    labels: &[],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &ENABLED,
    &ARCHIVED,
    &FAILED,
    &LAST_ARCHIVED_AGE,
    &LAST_FAILED,
];

#[derive(Debug, Clone, PartialEq)]
pub struct Archiver {
    pub archive_mode: String,
    pub archived_count: f64,
    pub failed_count: f64,
    pub last_archived_age_seconds: Option<f64>,
    pub last_failed_timestamp: Option<f64>,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Archiver, sqlx::Error> {
    let row = sqlx::query(QUERY).fetch_one(connection).await?;
    Ok(Archiver {
        archive_mode: row.try_get("archive_mode")?,
        archived_count: row.try_get("archived_count")?,
        failed_count: row.try_get("failed_count")?,
        last_archived_age_seconds: row.try_get("last_archived_age_seconds")?,
        last_failed_timestamp: row.try_get("last_failed_timestamp")?,
    })
}

impl Archiver {
    pub fn samples(&self, out: &mut Vec<Sample>) {
        let enabled = matches!(self.archive_mode.as_str(), "on" | "always");
        out.push(ENABLED.sample(bool_value(enabled)));
        out.push(ARCHIVED.sample(self.archived_count));
        out.push(FAILED.sample(self.failed_count));
        out.push(LAST_ARCHIVED_AGE.sample(self.last_archived_age_seconds.unwrap_or(f64::NAN)));
        out.push(LAST_FAILED.sample(self.last_failed_timestamp.unwrap_or(0.0)));
    }
}
