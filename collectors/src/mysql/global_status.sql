-- The status counters dbwatch reads, filtered on the server: about 30 rows instead of the ~500 of a bare
-- SHOW GLOBAL STATUS. SHOW needs no privilege and works alike on MySQL 5.7-8.4 and MariaDB 10.x-11.x.
SHOW GLOBAL STATUS WHERE Variable_name IN (
    'Uptime',
    'Questions',
    'Queries',
    'Com_select',
    'Com_insert',
    'Com_update',
    'Com_delete',
    'Com_commit',
    'Com_rollback',
    'Slow_queries',
    'Threads_connected',
    'Threads_running',
    'Max_used_connections',
    'Innodb_buffer_pool_pages_data',
    'Innodb_buffer_pool_pages_free',
    'Innodb_buffer_pool_pages_misc',
    'Innodb_buffer_pool_pages_dirty',
    'Innodb_buffer_pool_pages_total',
    'Innodb_buffer_pool_bytes_data',
    'Innodb_buffer_pool_bytes_dirty',
    'Innodb_buffer_pool_read_requests',
    'Innodb_buffer_pool_reads',
    'Performance_schema_digest_lost'
)
