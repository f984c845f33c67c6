-- PostgreSQL 13 to 16: checkpoint and background writer counters share pg_stat_bgwriter.
SELECT
    checkpoints_timed::float8 AS checkpoints_timed,
    checkpoints_req::float8 AS checkpoints_requested,
    (checkpoint_write_time / 1000.0)::float8 AS checkpoint_write_seconds,
    (checkpoint_sync_time / 1000.0)::float8 AS checkpoint_sync_seconds,
    buffers_checkpoint::float8 AS checkpoint_buffers_written,
    buffers_clean::float8 AS buffers_clean,
    maxwritten_clean::float8 AS maxwritten_clean,
    buffers_backend::float8 AS buffers_backend,
    buffers_alloc::float8 AS buffers_alloc
FROM pg_stat_bgwriter
