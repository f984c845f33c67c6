-- Accounts of the local MariaDB fleet. Run once on the primary (as root over the socket); replicated to the replica.
-- Idempotent. Passwords are fixed, documented strings: this is a local test fleet.

-- Replication account used by the replica's CHANGE MASTER TO.
CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';

-- The monitor: least privileges for MariaDB 10.11.
--   PROCESS         SHOW [FULL] PROCESSLIST of other users, information_schema.INNODB_* tables, SHOW ENGINE INNODB STATUS
--   BINLOG MONITOR  (the 10.5+ name of REPLICATION CLIENT) SHOW BINARY LOGS, SHOW MASTER STATUS, SHOW BINLOG STATUS
--   SLAVE MONITOR   (10.5.9+) SHOW [ALL] SLAVE(S) STATUS, SHOW RELAYLOG EVENTS
--   SELECT ON performance_schema.*   statement digests, waits, ...
-- SHOW GLOBAL STATUS / SHOW GLOBAL VARIABLES need no privilege.
CREATE USER IF NOT EXISTS 'dbwatch'@'127.0.0.1' IDENTIFIED BY 'dbwatch';
CREATE USER IF NOT EXISTS 'dbwatch'@'localhost' IDENTIFIED BY 'dbwatch';
GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'dbwatch'@'127.0.0.1';
GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'dbwatch'@'localhost';
GRANT SELECT ON performance_schema.* TO 'dbwatch'@'127.0.0.1';
GRANT SELECT ON performance_schema.* TO 'dbwatch'@'localhost';

-- Administrator for tests and the demo (STOP SLAVE, writing the shop schema, ...).
CREATE USER IF NOT EXISTS 'fleet_admin'@'127.0.0.1' IDENTIFIED BY 'admin';
CREATE USER IF NOT EXISTS 'fleet_admin'@'localhost' IDENTIFIED BY 'admin';
GRANT ALL PRIVILEGES ON *.* TO 'fleet_admin'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'fleet_admin'@'localhost' WITH GRANT OPTION;
