-- Statements completed since the server started (or since the summary was truncated) and their total latency,
-- for every user except the one dbwatch connects as, so that polling does not dilute the latency it reports:
-- all users from the global summary, minus dbwatch's user from the per-user summary. Should the per-user
-- summary hold no row (performance_schema_users_size = 0), nothing is subtracted.
-- Timers are picoseconds. statement/sp/* are the statements inside stored programs, whose time the CALL that
-- ran them already counts.
SELECT
    COALESCE(g.count_star, 0) - COALESCE(u.count_star, 0) AS count_star,
    COALESCE(g.sum_timer_wait, 0) - COALESCE(u.sum_timer_wait, 0) AS sum_timer_wait
FROM (
    SELECT SUM(COUNT_STAR) AS count_star, SUM(SUM_TIMER_WAIT) AS sum_timer_wait
    FROM performance_schema.events_statements_summary_global_by_event_name
    WHERE EVENT_NAME NOT LIKE 'statement/sp/%'
) AS g
CROSS JOIN (
    SELECT SUM(COUNT_STAR) AS count_star, SUM(SUM_TIMER_WAIT) AS sum_timer_wait
    FROM performance_schema.events_statements_summary_by_user_by_event_name
    WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)
      AND EVENT_NAME NOT LIKE 'statement/sp/%'
) AS u
