-- WAL archiving: the seed archives WAL continuously, so a failing or silent archiver is a backup gap.
SELECT
    current_setting('archive_mode') AS archive_mode,
    archived_count::float8 AS archived_count,
    failed_count::float8 AS failed_count,
    EXTRACT(epoch FROM now() - last_archived_time)::float8 AS last_archived_age_seconds,
    EXTRACT(epoch FROM last_failed_time)::float8 AS last_failed_timestamp
FROM pg_stat_archiver
