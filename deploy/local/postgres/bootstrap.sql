-- Roles and databases of the fleet's primary. Run with psql as the `postgres` superuser, connected to
-- database `postgres`, on every `fleet up`: idempotent, and it never resets a password that is already set
-- (PgBouncer's auth_file holds the SCRAM secrets, which a new password would change).
\set ON_ERROR_STOP on

-- dbwatch: the monitoring role. Member of pg_monitor and of nothing else (least privilege); pg_monitor brings
-- pg_read_all_settings, pg_read_all_stats (every query text in pg_stat_statements, all of pg_stat_replication)
-- and pg_stat_scan_tables.
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dbwatch') THEN
    CREATE ROLE dbwatch LOGIN PASSWORD 'dbwatch';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_admin') THEN
    CREATE ROLE fleet_admin SUPERUSER LOGIN PASSWORD 'admin';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') THEN
    CREATE ROLE replicator REPLICATION LOGIN PASSWORD 'replicator';
  END IF;
END $$;
ALTER ROLE dbwatch NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION LOGIN;
GRANT pg_monitor TO dbwatch;

-- fleet_admin: superuser for tests and the workload.
ALTER ROLE fleet_admin SUPERUSER LOGIN;
-- replicator: used by the streaming replica (pg_basebackup and primary_conninfo).
ALTER ROLE replicator NOSUPERUSER REPLICATION LOGIN;

SELECT 'CREATE DATABASE shop OWNER fleet_admin'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'shop') \gexec

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
