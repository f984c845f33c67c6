-- The statement digests with the most cumulative execution time, without their text. dbwatch appends
-- `LIMIT <2 × top_digests>`: twice as many as are exported, so that a digest already exported keeps its
-- series while it stays in this wider window (no label churn at the boundary). Timers are picoseconds.
-- The table has no user column, so dbwatch's own (cheap) statements can appear here.
SELECT
    SCHEMA_NAME,
    DIGEST,
    COUNT_STAR,
    SUM_TIMER_WAIT,
    SUM_ROWS_EXAMINED,
    SUM_ROWS_SENT
FROM performance_schema.events_statements_summary_by_digest
WHERE DIGEST IS NOT NULL
ORDER BY SUM_TIMER_WAIT DESC
