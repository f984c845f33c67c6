-- The statements with the most cumulative execution time, twice as many as are exported, so that a statement
-- already exported keeps its series while it stays in this wider window (no label churn at the boundary).
SELECT
    d.datname,
    s.queryid::text AS queryid,
    sum(s.calls)::float8 AS calls,
    (sum(s.total_exec_time) / 1000.0)::float8 AS exec_seconds,
    sum(s.rows)::float8 AS rows
FROM pg_stat_statements(false) AS s
JOIN pg_database AS d ON d.oid = s.dbid
WHERE s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND s.queryid IS NOT NULL
GROUP BY d.datname, s.queryid
ORDER BY exec_seconds DESC
LIMIT $1
