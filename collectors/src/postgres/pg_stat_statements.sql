-- Statement totals per database, text not fetched (showtext => false keeps this cheap with thousands of entries).
-- dbwatch's own statements are left out so that polling does not dilute the latency it reports.
SELECT
    d.datname,
    sum(s.calls)::float8 AS calls,
    (sum(s.total_exec_time) / 1000.0)::float8 AS exec_seconds,
    sum(s.rows)::float8 AS rows
FROM pg_stat_statements(false) AS s
JOIN pg_database AS d ON d.oid = s.dbid
WHERE s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
GROUP BY d.datname
