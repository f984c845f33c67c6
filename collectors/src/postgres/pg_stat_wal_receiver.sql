-- Standby side: what was received against what was replayed, and whether the WAL receiver runs at all.
SELECT
    (SELECT status FROM pg_stat_wal_receiver) AS receiver_status,
    pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() AS caught_up,
    pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 AS replay_pending_bytes,
    EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS since_last_replay_seconds,
    EXTRACT(epoch FROM now() - (SELECT last_msg_receipt_time FROM pg_stat_wal_receiver))::float8 AS since_last_message_seconds,
    pg_is_wal_replay_paused() AS replay_paused
