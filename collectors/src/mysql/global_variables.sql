-- The few settings dbwatch needs, filtered on the server. Read every poll: one short round trip keeps
-- max_connections (dynamic) and read_only (flipped at failover) current.
SHOW GLOBAL VARIABLES WHERE Variable_name IN (
    'max_connections',
    'log_bin',
    'binlog_format',
    'performance_schema',
    'read_only',
    'server_id'
)
