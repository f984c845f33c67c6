-- Transaction-ID and multixact wraparound: how far each database's oldest unfrozen XID and multixact are
-- behind, against the ages at which autovacuum forces an anti-wraparound vacuum. One scan of pg_database
-- (a row per database) and two settings: no per-table work. Templates that refuse connections are left out:
-- they are frozen and never advance.
SELECT
    datname,
    age(datfrozenxid)::float8 AS xid_age,
    mxid_age(datminmxid)::float8 AS multixact_age,
    current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max_age,
    current_setting('autovacuum_multixact_freeze_max_age')::float8 AS multixact_freeze_max_age
FROM pg_database
WHERE datallowconn
ORDER BY datname
