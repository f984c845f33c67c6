# PostgreSQL part of the local fleet: a primary, a streaming replica and PgBouncer, from Debian's packages.
# Sourced by deploy/local/fleet, which calls postgres_install/_up/_down/_status/_env.
#
#   127.0.0.1:15432  primary   $FLEET_DIR/postgres/primary   (initdb; roles, databases and schema from deploy/local/postgres/*.sql)
#   127.0.0.1:15433  replica   $FLEET_DIR/postgres/replica   (pg_basebackup -R from the primary, physical slot `replica1`)
#   127.0.0.1:16432  pgbouncer $FLEET_DIR/postgres/pgbouncer (pgbouncer.ini, userlist.txt, pid file)
#   $FLEET_DIR/postgres/archive   WAL archive the primary's archive_command copies to
#   $FLEET_DIR/postgres/run       unix sockets of all three (.s.PGSQL.<port>)
#   $FLEET_LOG_DIR/postgres-primary.log, postgres-replica.log, pgbouncer.log
#
# PostgreSQL and PgBouncer refuse to run as root, so every server runs as the `postgres` OS user that Debian's
# package creates; everything under $FLEET_DIR/postgres is owned by it. The binaries of
# /usr/lib/postgresql/15/bin are used directly (not pg_ctlcluster), so /etc/postgresql and Debian's default
# cluster are never touched. The config templates live in deploy/local/postgres/ and are re-rendered on every `up`.
#
# Fixed credentials (a local test fleet): dbwatch/dbwatch (monitoring, pg_monitor only), fleet_admin/admin
# (superuser), replicator/replicator (replication). The OS user postgres logs in over the socket without password.

PG_BIN=/usr/lib/postgresql/15/bin
PG_TEMPLATES=$FLEET_ROOT/deploy/local/postgres
PG_HOME=$FLEET_DIR/postgres
PG_PRIMARY_DATA=$PG_HOME/primary
PG_REPLICA_DATA=$PG_HOME/replica
PG_ARCHIVE_DIR=$PG_HOME/archive
PG_RUN_DIR=$PG_HOME/run
PG_BOUNCER_DIR=$PG_HOME/pgbouncer
PG_PRIMARY_PORT=15432
PG_REPLICA_PORT=15433
PG_BOUNCER_PORT=16432
PG_SLOT=replica1
PG_PRIMARY_LOG=$FLEET_LOG_DIR/postgres-primary.log
PG_REPLICA_LOG=$FLEET_LOG_DIR/postgres-replica.log
PG_BOUNCER_LOG=$FLEET_LOG_DIR/pgbouncer.log
PG_BOUNCER_PID=$PG_BOUNCER_DIR/pgbouncer.pid

PG_DBWATCH_PRIMARY_URL=postgres://dbwatch:dbwatch@127.0.0.1:$PG_PRIMARY_PORT/postgres
PG_DBWATCH_REPLICA_URL=postgres://dbwatch:dbwatch@127.0.0.1:$PG_REPLICA_PORT/postgres
PG_BOUNCER_ADMIN_URL=postgres://dbwatch:dbwatch@127.0.0.1:$PG_BOUNCER_PORT/pgbouncer
PG_BOUNCER_SHOP_URL=postgres://fleet_admin:admin@127.0.0.1:$PG_BOUNCER_PORT/shop

# ---------------------------------------------------------------------------------------------------------------
# helpers

# as_pg COMMAND...: runs COMMAND as the postgres OS user, from a folder it can enter (else every tool warns
# that it cannot chdir to root's working directory), with a locale that exists on every Debian machine.
as_pg() { (cd "$PG_HOME" && runuser -u postgres -- env LC_ALL=C.UTF-8 "$@"); }

# pg_sql PORT DB SQL: one query as the postgres superuser over the fleet's socket; prints unaligned tuples.
pg_sql() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN_DIR" -p "$1" -U postgres -d "$2" -tAc "$3"; }

# pg_run_sql DB FILE: a SQL file on the primary as the postgres superuser; the "already exists, skipping"
# notices of the idempotent re-runs are not shown.
pg_run_sql() {
  as_pg PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_RUN_DIR" -p "$PG_PRIMARY_PORT" -U postgres -d "$1" -f - <"$2" >/dev/null
}

# url_query URL SQL: a query over TCP with a password, as the tests and dbwatch connect.
url_query() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$1" -tAc "$2"; }

pg_running() { [[ -f "$1/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" status -D "$1" >/dev/null 2>&1; }

# The pid file alone is not enough after a machine restart: the pid may now belong to another program.
bouncer_running() { pid_alive "$PG_BOUNCER_PID" && [[ $(cat "/proc/$(cat "$PG_BOUNCER_PID")/comm" 2>/dev/null) == pgbouncer ]]; }

# wait_or_log DESCRIPTION TIMEOUT LOGFILE COMMAND...: wait_for, but on a timeout show the server's log first.
wait_or_log() {
  local what=$1 timeout=$2 logfile=$3; shift 3
  if ! (wait_for "$what" "$timeout" "$@"); then
    log "last lines of $logfile:"
    tail -n 40 "$logfile" >&2 || true
    die "$what not ready after ${timeout}s (log: $logfile)"
  fi
}

# render TEMPLATE DEST: fills the @NAME@ placeholders; writes DEST (owned by postgres, private) only when its
# content changes. Returns 0 when DEST changed, 1 when it was already up to date.
render() {
  local template=$1 dest=$2 tmp
  tmp=$(mktemp "$dest.XXXXXX")
  sed -e "s|@RUN_DIR@|$PG_RUN_DIR|g" -e "s|@ARCHIVE_DIR@|$PG_ARCHIVE_DIR|g" \
      -e "s|@BOUNCER_DIR@|$PG_BOUNCER_DIR|g" -e "s|@LOG_DIR@|$FLEET_LOG_DIR|g" "$template" >"$tmp"
  install_if_changed "$tmp" "$dest"
}

# install_if_changed TMPFILE DEST: moves TMPFILE over DEST unless identical; 0 when DEST changed.
install_if_changed() {
  local tmp=$1 dest=$2
  chown postgres:postgres "$tmp"; chmod 600 "$tmp"
  if [[ -f "$dest" ]] && cmp -s "$tmp" "$dest"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$dest"
}

# pg_log_file PATH: the servers write their logs as postgres into the root-owned fleet log folder.
pg_log_file() { touch "$1"; chown postgres:postgres "$1"; }

# ---------------------------------------------------------------------------------------------------------------
# checks on the place the fleet lives in (CI clones the repository to a folder nobody chose)

# The paths end up inside postgresql.conf values and shell commands (archive_command): refuse characters that
# would need quoting there rather than quote them half-right.
pg_check_path() {
  [[ "$FLEET_DIR" =~ ^[A-Za-z0-9_./+@=-]+$ ]] \
    || die "postgres: the fleet folder '$FLEET_DIR' has characters (space, quote, ...) that PostgreSQL's config would need quoted; set DBWATCH_FLEET_DIR to a plain path"
  # A unix socket path is limited to 107 bytes (sun_path); the longest is the lock file next to pgbouncer's socket.
  local longest=$PG_RUN_DIR/.s.PGSQL.$PG_BOUNCER_PORT.lock
  (( ${#longest} <= 107 )) \
    || die "postgres: socket path $longest is ${#longest} bytes, over the 107 a unix socket allows; set DBWATCH_FLEET_DIR to a shorter path"
}

# The postgres user must be able to traverse every folder above its data. Decision: when it cannot, grant the
# postgres user alone the search (x) right with an ACL (setfacl -m u:postgres:x): no listing, no other user
# gains anything, nothing else about the folder changes. This keeps a clone under /root (mode 700) working in
# CI. When ACLs cannot be set, stop and say what to do.
pg_check_traversal() {
  local dir
  for dir in $(pg_parent_dirs "$PG_HOME") $(pg_parent_dirs "$FLEET_LOG_DIR/x"); do
    runuser -u postgres -- test -x "$dir" && continue
    log "postgres: the postgres user cannot enter $dir; granting it search (x) access with: setfacl -m u:postgres:x $dir"
    setfacl -m u:postgres:x "$dir" 2>/dev/null && runuser -u postgres -- test -x "$dir" && continue
    die "postgres: the postgres OS user cannot enter $dir, which holds the fleet's data. Fix it with \`chmod o+x $dir\` (or \`setfacl -m u:postgres:x $dir\`), or set DBWATCH_FLEET_DIR to a folder under a traversable path such as /tmp"
  done
}

# pg_parent_dirs PATH: every existing folder from / down to PATH's parent, one per line.
pg_parent_dirs() {
  local dir
  dir=$(dirname "$1")
  while [[ "$dir" != / ]]; do
    [[ -d "$dir" ]] && echo "$dir"
    dir=$(dirname "$dir")
  done | sort -u
}

# Dies when PORT is taken by something that is not the server we are about to start.
pg_port_free() { ! port_open 127.0.0.1 "$1" || die "postgres: 127.0.0.1:$1 is already in use by another program (not this fleet's $2)"; }

# ---------------------------------------------------------------------------------------------------------------
# install

postgres_install() {
  if ! dpkg-query -W -f='${Status}' postgresql-15 2>/dev/null | grep -q 'install ok installed'; then
    # Debian's postgresql-15 creates and starts a default cluster on 5432 unless told not to. The fleet runs
    # its own servers, so switch that off (a drop-in of postgresql-common's createcluster.conf) before installing.
    apt_install postgresql-common
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/50-dbwatch-fleet.conf
  fi
  # postgresql-contrib: pg_stat_statements (part of postgresql-15 since v10, the metapackage keeps it explicit);
  # acl: setfacl, for pg_check_traversal.
  apt_install postgresql-15 postgresql-contrib postgresql-client-15 pgbouncer acl
}

# ---------------------------------------------------------------------------------------------------------------
# up

postgres_up() {
  pg_check_path
  pg_prepare_dirs
  pg_check_traversal
  pg_primary_up
  pg_bootstrap
  pg_replica_up
  pg_bouncer_up
  log "postgres: primary :$PG_PRIMARY_PORT, replica :$PG_REPLICA_PORT (streaming), pgbouncer :$PG_BOUNCER_PORT ready"
}

pg_prepare_dirs() {
  mkdir -p "$PG_HOME" "$PG_ARCHIVE_DIR" "$PG_RUN_DIR" "$PG_BOUNCER_DIR" "$FLEET_LOG_DIR"
  chown postgres:postgres "$PG_HOME" "$PG_ARCHIVE_DIR" "$PG_RUN_DIR" "$PG_BOUNCER_DIR"
  chmod 700 "$PG_ARCHIVE_DIR" "$PG_BOUNCER_DIR"
  # root (psql in tests) and the postgres user both use the sockets; PG_HOME itself holds nothing secret.
  chmod 755 "$PG_HOME" "$PG_RUN_DIR"
  pg_log_file "$PG_PRIMARY_LOG"; pg_log_file "$PG_REPLICA_LOG"; pg_log_file "$PG_BOUNCER_LOG"
}

# pg_write_config DATADIR PORT NAME: the shared postgresql.conf and pg_hba.conf, plus the server's node.conf.
# Returns 0 when any file changed.
pg_write_config() {
  local data=$1 port=$2 name=$3 changed=1 tmp
  render "$PG_TEMPLATES/postgresql.conf.in" "$data/postgresql.conf" && changed=0
  tmp=$(mktemp "$data/pg_hba.conf.XXXXXX"); cp "$PG_TEMPLATES/pg_hba.conf" "$tmp"
  install_if_changed "$tmp" "$data/pg_hba.conf" && changed=0
  tmp=$(mktemp "$data/node.conf.XXXXXX")
  printf "# Written by deploy/local/components/postgres.sh: what differs between the fleet's servers.\nport = %s\ncluster_name = '%s'\n" "$port" "$name" >"$tmp"
  install_if_changed "$tmp" "$data/node.conf" && changed=0
  return "$changed"
}

# pg_start DATADIR PORT NAME LOGFILE: starts the server unless it runs; restarts it when its config changed.
pg_start() {
  local data=$1 port=$2 name=$3 logfile=$4 changed=1
  pg_write_config "$data" "$port" "$name" && changed=0
  if pg_running "$data"; then
    if (( changed == 0 )); then
      log "postgres: $name config changed, restarting it"
      as_pg "$PG_BIN/pg_ctl" restart -D "$data" -m fast -W -l "$logfile" >/dev/null
    fi
    return 0
  fi
  pg_port_free "$port" "$name"
  log "postgres: starting $name on 127.0.0.1:$port"
  # -W: do not wait here; wait_or_log below polls with a real login and shows the log on a timeout.
  as_pg "$PG_BIN/pg_ctl" start -D "$data" -W -l "$logfile" >/dev/null
}

pg_primary_up() {
  if [[ ! -f "$PG_PRIMARY_DATA/PG_VERSION" ]]; then
    log "postgres: initdb $PG_PRIMARY_DATA"
    # Into a scratch folder first, so that an interrupted initdb never leaves a half-made data dir behind.
    # --no-sync: a throw-away test cluster need not wait for fsync (saves seconds on CI's disks).
    rm -rf "$PG_PRIMARY_DATA.tmp"
    as_pg "$PG_BIN/initdb" -D "$PG_PRIMARY_DATA.tmp" -U postgres --encoding=UTF8 --locale=C.UTF-8 --no-sync \
      --auth-local=trust --auth-host=scram-sha-256 >"$FLEET_LOG_DIR/postgres-initdb.log" 2>&1 \
      || { tail -n 20 "$FLEET_LOG_DIR/postgres-initdb.log" >&2; die "postgres: initdb failed"; }
    mv "$PG_PRIMARY_DATA.tmp" "$PG_PRIMARY_DATA"
  fi
  pg_start "$PG_PRIMARY_DATA" "$PG_PRIMARY_PORT" primary "$PG_PRIMARY_LOG"
  wait_or_log "postgres primary (127.0.0.1:$PG_PRIMARY_PORT)" 60 "$PG_PRIMARY_LOG" \
    pg_sql "$PG_PRIMARY_PORT" postgres 'SELECT 1'
}

# Roles, databases, extensions and the seed schema; idempotent, so it runs on every up.
pg_bootstrap() {
  pg_run_sql postgres "$PG_TEMPLATES/bootstrap.sql"
  pg_run_sql shop "$PG_TEMPLATES/schema.sql"
  # The monitoring login must work over TCP with its password, as dbwatch will use it.
  url_query "$PG_DBWATCH_PRIMARY_URL" 'SELECT 1' >/dev/null || die "postgres: dbwatch cannot log in to the primary"
}

pg_replica_up() {
  [[ -f "$PG_REPLICA_DATA/PG_VERSION" ]] || pg_replica_create
  pg_start "$PG_REPLICA_DATA" "$PG_REPLICA_PORT" "$PG_SLOT" "$PG_REPLICA_LOG"
  wait_or_log "postgres replica (127.0.0.1:$PG_REPLICA_PORT)" 90 "$PG_REPLICA_LOG" \
    url_query "$PG_DBWATCH_REPLICA_URL" 'SELECT 1'
  wait_or_log "replication primary -> replica ($PG_SLOT streaming)" 60 "$PG_REPLICA_LOG" pg_replica_streaming
}

pg_replica_streaming() {
  [[ $(pg_sql "$PG_PRIMARY_PORT" postgres \
      "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$PG_SLOT' AND state = 'streaming'") == 1 ]]
}

# A fresh standby: base backup of the primary with a new physical slot, -R writes standby.signal and
# primary_conninfo/primary_slot_name into postgresql.auto.conf (so ALTER SYSTEM on the replica can change them).
pg_replica_create() {
  # A slot left over from a replica whose data dir was deleted would make -C fail; it holds WAL for nothing.
  local active
  active=$(pg_sql "$PG_PRIMARY_PORT" postgres "SELECT active FROM pg_replication_slots WHERE slot_name = '$PG_SLOT'")
  [[ "$active" == t ]] && die "postgres: slot $PG_SLOT is in use by a server that is not this fleet's replica"
  if [[ "$active" == f ]]; then
    log "postgres: dropping the stale replication slot $PG_SLOT"
    pg_sql "$PG_PRIMARY_PORT" postgres "SELECT pg_drop_replication_slot('$PG_SLOT')" >/dev/null
  fi
  log "postgres: pg_basebackup into $PG_REPLICA_DATA (slot $PG_SLOT)"
  rm -rf "$PG_REPLICA_DATA.tmp"
  as_pg "$PG_BIN/pg_basebackup" -D "$PG_REPLICA_DATA.tmp" -R -C -S "$PG_SLOT" -X stream --checkpoint=fast --no-sync \
    -d "host=127.0.0.1 port=$PG_PRIMARY_PORT user=replicator password=replicator" \
    >"$FLEET_LOG_DIR/postgres-basebackup.log" 2>&1 \
    || { tail -n 20 "$FLEET_LOG_DIR/postgres-basebackup.log" >&2; die "postgres: pg_basebackup failed"; }
  mv "$PG_REPLICA_DATA.tmp" "$PG_REPLICA_DATA"
}

pg_bouncer_up() {
  local changed=1
  render "$PG_TEMPLATES/pgbouncer.ini.in" "$PG_BOUNCER_DIR/pgbouncer.ini" && changed=0
  pg_bouncer_userlist && changed=0
  if bouncer_running; then
    if (( changed == 0 )); then
      log "postgres: pgbouncer config changed, reloading it"
      kill -HUP "$(cat "$PG_BOUNCER_PID")"
    fi
  else
    rm -f "$PG_BOUNCER_PID"
    pg_port_free "$PG_BOUNCER_PORT" pgbouncer
    log "postgres: starting pgbouncer on 127.0.0.1:$PG_BOUNCER_PORT"
    as_pg /usr/sbin/pgbouncer -d -q "$PG_BOUNCER_DIR/pgbouncer.ini"
  fi
  wait_or_log "pgbouncer (127.0.0.1:$PG_BOUNCER_PORT)" 30 "$PG_BOUNCER_LOG" url_query "$PG_BOUNCER_ADMIN_URL" 'SHOW POOLS'
  wait_or_log "pgbouncer -> primary, database shop" 30 "$PG_BOUNCER_LOG" url_query "$PG_BOUNCER_SHOP_URL" 'SELECT 1'
}

# PgBouncer's auth_file: the roles' SCRAM secrets, read from the primary (never a plaintext password).
# Returns 0 when the file changed.
pg_bouncer_userlist() {
  local tmp
  tmp=$(mktemp "$PG_BOUNCER_DIR/userlist.txt.XXXXXX")
  pg_sql "$PG_PRIMARY_PORT" postgres \
    "SELECT format('\"%s\" \"%s\"', rolname, rolpassword) FROM pg_authid
      WHERE rolname IN ('dbwatch', 'fleet_admin') ORDER BY rolname" >"$tmp"
  install_if_changed "$tmp" "$PG_BOUNCER_DIR/userlist.txt"
}

# ---------------------------------------------------------------------------------------------------------------
# down, status, env

postgres_down() {
  stop_pidfile pgbouncer "$PG_BOUNCER_PID"
  # Replica first, so the primary does not log the walsender's disconnect as an error on the way down.
  local data
  for data in "$PG_REPLICA_DATA" "$PG_PRIMARY_DATA"; do
    pg_running "$data" || continue
    log "postgres: stopping $(basename "$data")"
    as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null
  done
}

postgres_status() {
  local rc=0
  status_line pg-primary "127.0.0.1:$PG_PRIMARY_PORT" url_query "$PG_DBWATCH_PRIMARY_URL" 'SELECT 1' || rc=1
  status_line pg-replica "127.0.0.1:$PG_REPLICA_PORT" url_query "$PG_DBWATCH_REPLICA_URL" 'SELECT pg_is_in_recovery()' || rc=1
  status_line pgbouncer "127.0.0.1:$PG_BOUNCER_PORT" url_query "$PG_BOUNCER_ADMIN_URL" 'SHOW POOLS' || rc=1
  return "$rc"
}

postgres_env() {
  cat <<EOF
export DBWATCH_PG_PRIMARY_URL=$PG_DBWATCH_PRIMARY_URL
export DBWATCH_PG_REPLICA_URL=$PG_DBWATCH_REPLICA_URL
export DBWATCH_PG_ADMIN_URL=postgres://fleet_admin:admin@127.0.0.1:$PG_PRIMARY_PORT/shop
export DBWATCH_PG_REPLICA_ADMIN_URL=postgres://fleet_admin:admin@127.0.0.1:$PG_REPLICA_PORT/postgres
export DBWATCH_PG_SHOP_URL=postgres://dbwatch:dbwatch@127.0.0.1:$PG_PRIMARY_PORT/shop
export DBWATCH_PGBOUNCER_URL=$PG_BOUNCER_ADMIN_URL
export DBWATCH_PGBOUNCER_SHOP_URL=$PG_BOUNCER_SHOP_URL
export DBWATCH_PGBOUNCER_ADMIN_URL=postgres://fleet_admin:admin@127.0.0.1:$PG_BOUNCER_PORT/pgbouncer
export DBWATCH_PG_REPLICATION_SLOT=$PG_SLOT
export DBWATCH_PG_ARCHIVE_DIR=$PG_ARCHIVE_DIR
export DBWATCH_PG_BIN=$PG_BIN
export DBWATCH_PG_PRIMARY_DATA=$PG_PRIMARY_DATA
export DBWATCH_PG_REPLICA_DATA=$PG_REPLICA_DATA
export DBWATCH_PG_SOCKET_DIR=$PG_RUN_DIR
EOF
}
