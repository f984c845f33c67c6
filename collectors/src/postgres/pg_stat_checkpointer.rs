//! Checkpoints and the background writer. PostgreSQL 17 moved checkpoint counters from pg_stat_bgwriter to
//! pg_stat_checkpointer; the query is chosen from the server version, read once per connection, and both
//! versions export the same metric names.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_stat_checkpointer";
const QUERY_BEFORE_17: &str = include_str!("pg_stat_bgwriter.sql");
const QUERY_FROM_17: &str = include_str!("pg_stat_checkpointer.sql");

macro_rules! counter {
    ($ident:ident, $name:literal, $help:literal) => {
        pub static $ident: MetricDesc = MetricDesc {
            name: $name,
            help: $help,
            kind: MetricKind::Counter,
            labels: &[],
        };
    };
}

counter!(
    TIMED,
    "pg_checkpoints_timed_total",
    "Checkpoints started because checkpoint_timeout elapsed"
);
counter!(
    REQUESTED,
    "pg_checkpoints_requested_total",
    "Checkpoints requested, by WAL volume or explicitly"
);
counter!(
    WRITE_SECONDS,
    "pg_checkpoint_write_seconds_total",
    "Time checkpoints spent writing files"
);
counter!(
    SYNC_SECONDS,
    "pg_checkpoint_sync_seconds_total",
    "Time checkpoints spent syncing files"
);
counter!(
    BUFFERS_WRITTEN,
    "pg_checkpoint_buffers_written_total",
    "Buffers written by checkpoints"
);
counter!(
    BUFFERS_CLEAN,
    "pg_bgwriter_buffers_written_total",
    "Buffers written by the background writer"
);
counter!(
    MAXWRITTEN,
    "pg_bgwriter_maxwritten_clean_total",
    "Times the background writer stopped a round for writing too many buffers"
);
counter!(
    BUFFERS_BACKEND,
    "pg_bgwriter_buffers_backend_total",
    "Buffers written directly by backends (before PostgreSQL 17 only)"
);
counter!(
    BUFFERS_ALLOC,
    "pg_buffers_allocated_total",
    "Buffers allocated"
);

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &TIMED,
    &REQUESTED,
    &WRITE_SECONDS,
    &SYNC_SECONDS,
    &BUFFERS_WRITTEN,
    &BUFFERS_CLEAN,
    &MAXWRITTEN,
    &BUFFERS_BACKEND,
    &BUFFERS_ALLOC,
];

/// The query for a server version number (`server_version_num`, e.g. 150008).
pub fn query_for(version_num: u32) -> &'static str {
    if version_num >= 170_000 {
        QUERY_FROM_17
    } else {
        QUERY_BEFORE_17
    }
}

pub async fn fetch(
    connection: &mut PgConnection,
    version_num: u32,
) -> Result<Vec<Sample>, sqlx::Error> {
    let row = sqlx::query(query_for(version_num))
        .fetch_one(connection)
        .await?;
    let mut out = Vec::with_capacity(DESCRIPTORS.len());
    for (desc, column) in [
        (&TIMED, "checkpoints_timed"),
        (&REQUESTED, "checkpoints_requested"),
        (&WRITE_SECONDS, "checkpoint_write_seconds"),
        (&SYNC_SECONDS, "checkpoint_sync_seconds"),
        (&BUFFERS_WRITTEN, "checkpoint_buffers_written"),
        (&BUFFERS_CLEAN, "buffers_clean"),
        (&MAXWRITTEN, "maxwritten_clean"),
        (&BUFFERS_BACKEND, "buffers_backend"),
        (&BUFFERS_ALLOC, "buffers_alloc"),
    ] {
        // A counter the version does not keep is left out rather than exported as a fake 0.
        if let Some(value) = row.try_get::<Option<f64>, _>(column)? {
            out.push(desc.sample(value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_17_reads_the_checkpointer_view() {
        assert!(query_for(170_002).contains("pg_stat_checkpointer"));
        assert!(query_for(160_004).contains("checkpoints_timed"));
        assert!(!query_for(130_000).contains("pg_stat_checkpointer"));
    }
}
