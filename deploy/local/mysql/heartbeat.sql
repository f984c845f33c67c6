-- The heartbeat table of collectors/src/mysql/heartbeat.rs, created once on the primary and replicated.
CREATE DATABASE IF NOT EXISTS dbwatch;
CREATE TABLE IF NOT EXISTS dbwatch.heartbeat (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  ts DATETIME(6)  NOT NULL
) ENGINE=InnoDB;
