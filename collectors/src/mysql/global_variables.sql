-- The settings a poll needs, read every poll because they change at runtime: max_connections (SET GLOBAL),
-- read_only (flipped at failover), binlog_format and server_id; log_bin as it decides whether SHOW BINARY LOGS
-- runs. A SELECT of system variables reads them directly; SHOW GLOBAL VARIABLES WHERE ... would build all
-- ~650 rows and filter them, five times the server time. Every one of these exists on MySQL 5.7-8.4 and
-- MariaDB 10.x-11.x (performance_schema may not: it is read once per connection, see connection.rs).
SELECT
    @@GLOBAL.max_connections AS max_connections,
    @@GLOBAL.read_only AS read_only,
    @@GLOBAL.log_bin AS log_bin,
    @@GLOBAL.binlog_format AS binlog_format,
    @@GLOBAL.server_id AS server_id
