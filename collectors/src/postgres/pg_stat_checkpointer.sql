-- PostgreSQL 17 and later: checkpoints moved to pg_stat_checkpointer and backend writes to pg_stat_io.
SELECT
    c.num_timed::float8 AS checkpoints_timed,
    c.num_requested::float8 AS checkpoints_requested,
    (c.write_time / 1000.0)::float8 AS checkpoint_write_seconds,
    (c.sync_time / 1000.0)::float8 AS checkpoint_sync_seconds,
    c.buffers_written::float8 AS checkpoint_buffers_written,
    b.buffers_clean::float8 AS buffers_clean,
    b.maxwritten_clean::float8 AS maxwritten_clean,
    NULL::float8 AS buffers_backend,
    b.buffers_alloc::float8 AS buffers_alloc
FROM pg_stat_checkpointer AS c, pg_stat_bgwriter AS b
