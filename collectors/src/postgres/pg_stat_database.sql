-- Per-database counters since the last statistics reset. Template databases never take connections.
SELECT
    datname,
    numbackends::float8 AS numbackends,
    xact_commit::float8 AS xact_commit,
    xact_rollback::float8 AS xact_rollback,
    blks_read::float8 AS blks_read,
    blks_hit::float8 AS blks_hit,
    tup_returned::float8 AS tup_returned,
    tup_fetched::float8 AS tup_fetched,
    tup_inserted::float8 AS tup_inserted,
    tup_updated::float8 AS tup_updated,
    tup_deleted::float8 AS tup_deleted,
    deadlocks::float8 AS deadlocks,
    temp_bytes::float8 AS temp_bytes
FROM pg_stat_database
WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1')
