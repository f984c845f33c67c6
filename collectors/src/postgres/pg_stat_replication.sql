-- Primary side: every standby that streams, and every physical slot, so that a standby which stopped (and so
-- vanished from pg_stat_replication) is still seen, as an inactive slot retaining WAL.
SELECT
    COALESCE(r.application_name, s.slot_name) AS replica,
    r.state,
    s.slot_name,
    COALESCE(s.active, false) AS slot_active,
    EXTRACT(epoch FROM r.write_lag)::float8 AS write_lag_seconds,
    EXTRACT(epoch FROM r.flush_lag)::float8 AS flush_lag_seconds,
    EXTRACT(epoch FROM r.replay_lag)::float8 AS replay_lag_seconds,
    pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::float8 AS replay_lag_bytes,
    pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::float8 AS slot_retained_bytes
FROM pg_stat_replication AS r
FULL OUTER JOIN (SELECT * FROM pg_replication_slots WHERE slot_type = 'physical') AS s
    ON s.active_pid = r.pid
WHERE r.pid IS NULL OR r.application_name NOT IN ('pg_basebackup', 'pg_rewind')
