//! Per-database activity and the buffer cache hit ratio.

use sqlx::postgres::PgConnection;
use sqlx::Row;

use crate::metric::{MetricDesc, MetricKind, Sample};

pub const VIEW: &str = "pg_stat_database";
const QUERY: &str = include_str!("pg_stat_database.sql");

macro_rules! database_counter {
    ($ident:ident, $name:literal, $help:literal) => {
        pub static $ident: MetricDesc = MetricDesc {
            name: $name,
            help: $help,
            kind: MetricKind::Counter,
            labels: &["database"],
        };
    };
}

database_counter!(
    BLOCKS_HIT,
    "pg_database_blocks_hit_total",
    "Buffer reads served from shared buffers"
);
database_counter!(
    BLOCKS_READ,
    "pg_database_blocks_read_total",
    "Blocks read from disk or the OS cache"
);
database_counter!(
    COMMITS,
    "pg_database_commits_total",
    "Transactions committed"
);
database_counter!(
    ROLLBACKS,
    "pg_database_rollbacks_total",
    "Transactions rolled back"
);
database_counter!(
    ROWS_RETURNED,
    "pg_database_rows_returned_total",
    "Rows returned by sequential and index scans"
);
database_counter!(
    ROWS_FETCHED,
    "pg_database_rows_fetched_total",
    "Rows fetched by index scans"
);
database_counter!(
    ROWS_INSERTED,
    "pg_database_rows_inserted_total",
    "Rows inserted"
);
database_counter!(
    ROWS_UPDATED,
    "pg_database_rows_updated_total",
    "Rows updated"
);
database_counter!(
    ROWS_DELETED,
    "pg_database_rows_deleted_total",
    "Rows deleted"
);
database_counter!(
    DEADLOCKS,
    "pg_database_deadlocks_total",
    "Deadlocks detected"
);
database_counter!(
    TEMP_BYTES,
    "pg_database_temp_bytes_total",
    "Bytes written to temporary files by queries"
);

pub static BUFFER_HIT_RATIO: MetricDesc = MetricDesc {
    name: "pg_database_buffer_hit_ratio",
    help: "Share of block reads served from shared buffers since the statistics reset; NaN before any read",
    kind: MetricKind::Gauge,
    labels: &["database"],
};
pub static BACKENDS: MetricDesc = MetricDesc {
    name: "pg_database_backends",
    help: "Backends connected to the database",
    kind: MetricKind::Gauge,
    labels: &["database"],
};

pub static DESCRIPTORS: &[&MetricDesc] = &[
    &BLOCKS_HIT,
    &BLOCKS_READ,
    &COMMITS,
    &ROLLBACKS,
    &ROWS_RETURNED,
    &ROWS_FETCHED,
    &ROWS_INSERTED,
    &ROWS_UPDATED,
    &ROWS_DELETED,
    &DEADLOCKS,
    &TEMP_BYTES,
    &BUFFER_HIT_RATIO,
    &BACKENDS,
];

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseStats {
    pub database: String,
    pub backends: f64,
    pub commits: f64,
    pub rollbacks: f64,
    pub blocks_read: f64,
    pub blocks_hit: f64,
    pub rows_returned: f64,
    pub rows_fetched: f64,
    pub rows_inserted: f64,
    pub rows_updated: f64,
    pub rows_deleted: f64,
    pub deadlocks: f64,
    pub temp_bytes: f64,
}

pub async fn fetch(connection: &mut PgConnection) -> Result<Vec<DatabaseStats>, sqlx::Error> {
    let rows = sqlx::query(QUERY).fetch_all(connection).await?;
    let mut stats = Vec::with_capacity(rows.len());
    for row in rows {
        stats.push(DatabaseStats {
            database: row.try_get("datname")?,
            backends: row.try_get("numbackends")?,
            commits: row.try_get("xact_commit")?,
            rollbacks: row.try_get("xact_rollback")?,
            blocks_read: row.try_get("blks_read")?,
            blocks_hit: row.try_get("blks_hit")?,
            rows_returned: row.try_get("tup_returned")?,
            rows_fetched: row.try_get("tup_fetched")?,
            rows_inserted: row.try_get("tup_inserted")?,
            rows_updated: row.try_get("tup_updated")?,
            rows_deleted: row.try_get("tup_deleted")?,
            deadlocks: row.try_get("deadlocks")?,
            temp_bytes: row.try_get("temp_bytes")?,
        });
    }
    Ok(stats)
}

impl DatabaseStats {
    /// Hits over all block requests; NaN (unknown), not 1 or 0, when nothing was read yet.
    pub fn buffer_hit_ratio(&self) -> f64 {
        let requests = self.blocks_hit + self.blocks_read;
        if requests > 0.0 {
            self.blocks_hit / requests
        } else {
            f64::NAN
        }
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        let database = self.database.as_str();
        for (desc, value) in [
            (&BLOCKS_HIT, self.blocks_hit),
            (&BLOCKS_READ, self.blocks_read),
            (&COMMITS, self.commits),
            (&ROLLBACKS, self.rollbacks),
            (&ROWS_RETURNED, self.rows_returned),
            (&ROWS_FETCHED, self.rows_fetched),
            (&ROWS_INSERTED, self.rows_inserted),
            (&ROWS_UPDATED, self.rows_updated),
            (&ROWS_DELETED, self.rows_deleted),
            (&DEADLOCKS, self.deadlocks),
            (&TEMP_BYTES, self.temp_bytes),
            (&BUFFER_HIT_RATIO, self.buffer_hit_ratio()),
            (&BACKENDS, self.backends),
        ] {
            out.push(desc.sample_with([database], value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(hit: f64, read: f64) -> DatabaseStats {
        DatabaseStats {
            database: "shop".into(),
            backends: 1.0,
            commits: 0.0,
            rollbacks: 0.0,
            blocks_read: read,
            blocks_hit: hit,
            rows_returned: 0.0,
            rows_fetched: 0.0,
            rows_inserted: 0.0,
            rows_updated: 0.0,
            rows_deleted: 0.0,
            deadlocks: 0.0,
            temp_bytes: 0.0,
        }
    }

    #[test]
    fn hit_ratio_is_hits_over_requests_and_unknown_without_reads() {
        assert_eq!(stats(990.0, 10.0).buffer_hit_ratio(), 0.99);
        assert!(stats(0.0, 0.0).buffer_hit_ratio().is_nan());
    }
}
