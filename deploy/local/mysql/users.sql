-- Accounts of the local MySQL 8.0 fleet. Run once on the primary (as root over the socket); replicated to the
-- replica. Idempotent. Passwords are fixed, documented strings: this is a local test fleet. Every account uses
-- MySQL 8's default caching_sha2_password: over TCP without TLS a client needs the server's RSA key (the
-- replica asks for it with GET_SOURCE_PUBLIC_KEY=1).

-- Replication account used by the replica's CHANGE REPLICATION SOURCE TO.
CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';

-- The monitor: the least privileges README.md documents for MySQL 8.
--   PROCESS             SHOW [FULL] PROCESSLIST of other users, information_schema.INNODB_* tables
--   REPLICATION CLIENT  SHOW BINARY LOGS, SHOW REPLICA STATUS, SHOW BINARY LOG STATUS
--   SELECT ON performance_schema.*   statement digests and totals
-- SHOW GLOBAL STATUS / SHOW GLOBAL VARIABLES need no privilege. SELECT on the heartbeat table (created by
-- heartbeat.sql before this file) lets the replicas' targets read the heartbeat as this same account.
CREATE USER IF NOT EXISTS 'dbwatch'@'127.0.0.1' IDENTIFIED BY 'dbwatch';
CREATE USER IF NOT EXISTS 'dbwatch'@'localhost' IDENTIFIED BY 'dbwatch';
GRANT PROCESS, REPLICATION CLIENT ON *.* TO 'dbwatch'@'127.0.0.1';
GRANT PROCESS, REPLICATION CLIENT ON *.* TO 'dbwatch'@'localhost';
GRANT SELECT ON performance_schema.* TO 'dbwatch'@'127.0.0.1';
GRANT SELECT ON performance_schema.* TO 'dbwatch'@'localhost';
GRANT SELECT ON dbwatch.heartbeat TO 'dbwatch'@'127.0.0.1';
GRANT SELECT ON dbwatch.heartbeat TO 'dbwatch'@'localhost';

-- The optional heartbeat's writer (the primary's target with `heartbeat.write`), separate from the monitor: the
-- monitor's grants, since it runs every other view too, plus INSERT and DELETE (REPLACE needs both) and SELECT
-- on the heartbeat table alone.
CREATE USER IF NOT EXISTS 'dbwatch_heartbeat'@'127.0.0.1' IDENTIFIED BY 'heartbeat';
GRANT PROCESS, REPLICATION CLIENT ON *.* TO 'dbwatch_heartbeat'@'127.0.0.1';
GRANT SELECT ON performance_schema.* TO 'dbwatch_heartbeat'@'127.0.0.1';
GRANT INSERT, DELETE, SELECT ON dbwatch.heartbeat TO 'dbwatch_heartbeat'@'127.0.0.1';

-- Administrator for tests and the demo (STOP REPLICA, writing the shop schema, ...).
CREATE USER IF NOT EXISTS 'fleet_admin'@'127.0.0.1' IDENTIFIED BY 'admin';
CREATE USER IF NOT EXISTS 'fleet_admin'@'localhost' IDENTIFIED BY 'admin';
GRANT ALL PRIVILEGES ON *.* TO 'fleet_admin'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'fleet_admin'@'localhost' WITH GRANT OPTION;
