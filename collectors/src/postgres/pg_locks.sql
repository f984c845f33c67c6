-- Sessions blocked on heavyweight locks and who blocks them. pg_blocking_pids() is called only for backends
-- waiting on a lock (usually none), so the usual cost is one scan of pg_stat_activity and pg_locks' ungranted
-- entries. A blocking root blocks others without waiting itself: the session to look at (or end) first.
-- pg_locks.waitstart exists from PostgreSQL 14 and is read through to_jsonb, so the statement also plans on
-- 13; where it is absent (or not yet set), a wait is timed from the start of the waiting statement.
WITH waiting AS (
    SELECT pid, pg_blocking_pids(pid) AS blockers, query_start
    FROM pg_stat_activity
    WHERE wait_event_type = 'Lock'
),
roots AS (
    SELECT DISTINCT blocker
    FROM waiting, unnest(blockers) AS blocker
    WHERE blocker NOT IN (SELECT pid FROM waiting)
)
SELECT
    (SELECT count(*) FROM waiting WHERE cardinality(blockers) > 0)::float8 AS blocked,
    (SELECT count(*) FROM roots)::float8 AS blocking_roots,
    COALESCE(
        (SELECT max(EXTRACT(epoch FROM now() - (to_jsonb(l) ->> 'waitstart')::timestamptz))
         FROM pg_locks l WHERE NOT l.granted),
        (SELECT max(EXTRACT(epoch FROM now() - query_start)) FROM waiting),
        0
    )::float8 AS longest_wait_seconds
