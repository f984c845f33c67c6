-- The opt-in variant (`exclude_own_statements`): the statements of every user except the one dbwatch connects as,
-- so that polling cannot dilute the latency of a nearly idle server: all users from the global summary, minus
-- dbwatch's user from the per-user summary. MariaDB aggregates the per-user summary over every live thread
-- for every user and statement class, so this costs two to three times the plain global sum. Should the per-user
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
