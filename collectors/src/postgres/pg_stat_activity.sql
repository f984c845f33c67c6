-- Client backends by state against the connection limit, in one round trip.
-- Reserved slots (superuser_reserved_connections, and reserved_connections from PostgreSQL 16) are not
-- available to ordinary clients, so the usable maximum subtracts them.
SELECT
    current_setting('max_connections')::float8 AS max_connections,
    current_setting('superuser_reserved_connections')::float8 AS superuser_reserved_connections,
    COALESCE(current_setting('reserved_connections', true), '0')::float8 AS reserved_connections,
    pg_is_in_recovery() AS in_recovery,
    count(*) FILTER (WHERE backend_type = 'client backend')::float8 AS client_backends,
    count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active')::float8 AS active,
    count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle')::float8 AS idle,
    count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle in transaction')::float8 AS idle_in_transaction,
    count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle in transaction (aborted)')::float8 AS idle_in_transaction_aborted,
    count(*) FILTER (WHERE backend_type = 'client backend' AND wait_event_type = 'Lock')::float8 AS waiting_on_lock,
    COALESCE(max(EXTRACT(epoch FROM now() - xact_start)) FILTER (WHERE backend_type = 'client backend'), 0)::float8 AS oldest_transaction_seconds,
    COALESCE(max(EXTRACT(epoch FROM now() - state_change)) FILTER (WHERE backend_type = 'client backend' AND state LIKE 'idle in transaction%'), 0)::float8 AS oldest_idle_in_transaction_seconds
FROM pg_stat_activity
