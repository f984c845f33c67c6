-- Statements completed since the server started (or since the summary was truncated) and their total latency,
-- every user's, dbwatch's own few statements per poll included (see the module for why, and the opt-in that
-- excludes them). Timers are picoseconds. statement/sp/* are the statements inside stored programs, whose time
-- the CALL that ran them already counts.
SELECT SUM(COUNT_STAR) AS count_star, SUM(SUM_TIMER_WAIT) AS sum_timer_wait
FROM performance_schema.events_statements_summary_global_by_event_name
WHERE EVENT_NAME NOT LIKE 'statement/sp/%'
