# shellcheck shell=bash
# MariaDB primary (127.0.0.1:13306) + GTID replica (127.0.0.1:13307), Debian's 10.11 packages.
# Sourced by deploy/local/fleet. Two private mariadbd instances run as root (--user=root, data owned by root);
# the Debian service, /etc/mysql and /var/lib/mysql are left alone (each server gets --defaults-file).
#
#   $FLEET_DIR/mariadb/{primary,replica}/    data folders (binlogs, slow.log inside)
#   $FLEET_DIR/mariadb/run/                  sockets and pid files
#   $FLEET_DIR/mariadb/{primary,replica}.cnf configs rendered from deploy/local/mariadb/*.cnf.in
#   $FLEET_LOG_DIR/mariadb-{primary,replica}.log  error logs
#
# Accounts (deploy/local/mariadb/users.sql): dbwatch/dbwatch (monitor), fleet_admin/admin (ALL), repl/repl.
# root@localhost authenticates by unix_socket only: `mariadb --no-defaults -S $FLEET_DIR/mariadb/run/primary.sock -uroot`.

MARIADB_DIR=$FLEET_DIR/mariadb
MARIADB_RUN=$MARIADB_DIR/run
MARIADB_SRC=$FLEET_ROOT/deploy/local/mariadb

_mariadb_port() { case "$1" in primary) echo 13306 ;; replica) echo 13307 ;; esac; }
_mariadb_sock() { echo "$MARIADB_RUN/$1.sock"; }
_mariadb_pidfile() { echo "$MARIADB_RUN/$1.pid"; }
_mariadb_log() { echo "$FLEET_LOG_DIR/mariadb-$1.log"; }

# _mariadb_sql NAME ARGS...: the mariadb client as root over NAME's socket (no option files read).
_mariadb_sql() {
  local name=$1; shift
  mariadb --no-defaults --socket="$(_mariadb_sock "$name")" --user=root --batch --skip-column-names "$@"
}

# _mariadb_tcp_ok NAME: a real query over TCP as the monitor account.
_mariadb_tcp_ok() {
  mariadb --no-defaults --protocol=tcp --host=127.0.0.1 --port="$(_mariadb_port "$1")" \
    --user=dbwatch --password=dbwatch --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1
}

_mariadb_answers() { _mariadb_sql "$1" --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1; }

# _mariadb_running PID: the process exists and is not a zombie (PID 1 here may reap killed orphans late).
_mariadb_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ "${stat%% *}" != Z ]]
}

_mariadb_pid_running() { [[ -s "$1" ]] && _mariadb_running "$(cat "$1")"; }

# _mariadb_answers_or_gone NAME PID: ends a wait_for early when the server died.
_mariadb_answers_or_gone() { _mariadb_answers "$1" || ! _mariadb_running "$2"; }

_mariadb_fail() {
  local name=$1; shift
  log "last lines of $(_mariadb_log "$name"):"
  tail -n 40 "$(_mariadb_log "$name")" >&2 2>/dev/null || true
  die "mariadb $name: $*"
}

_mariadb_render_cnf() {
  local name=$1
  sed -e "s|@DATADIR@|$MARIADB_DIR/$name|g" -e "s|@RUNDIR@|$MARIADB_RUN|g" -e "s|@LOGDIR@|$FLEET_LOG_DIR|g" \
    "$MARIADB_SRC/$name.cnf.in" >"$MARIADB_DIR/$name.cnf.tmp"
  mv -f "$MARIADB_DIR/$name.cnf.tmp" "$MARIADB_DIR/$name.cnf"
}

# _mariadb_start NAME: initialise the data folder if new, start mariadbd unless running, wait until it answers.
_mariadb_start() {
  local name=$1 port sock pidfile datadir
  port=$(_mariadb_port "$name"); sock=$(_mariadb_sock "$name"); pidfile=$(_mariadb_pidfile "$name")
  datadir=$MARIADB_DIR/$name
  _mariadb_render_cnf "$name"

  if _mariadb_pid_running "$pidfile"; then
    local running; running=$(cat "$pidfile")
    ( wait_for "mariadb $name" 60 _mariadb_answers_or_gone "$name" "$running" ) || true
    _mariadb_answers "$name" && return 0
    _mariadb_running "$running" && _mariadb_fail "$name" "running (pid $running) but not answering"
    log "mariadb $name: pid $running is gone, starting again"
  fi
  port_open 127.0.0.1 "$port" && die "mariadb $name: port $port is taken by another process"
  rm -f "$pidfile" "$sock"

  if [[ ! -d "$datadir/mysql" ]]; then
    log "mariadb $name: initialising $datadir"
    rm -rf "$datadir"; mkdir -p "$datadir"
    # --no-defaults: nothing from /etc/mysql; no binlog during bootstrap, so the replica can replay the
    # primary's binlog from its very first event.
    mariadb-install-db --no-defaults --user=root --datadir="$datadir" --skip-test-db \
      --auth-root-authentication-method=socket >"$FLEET_LOG_DIR/mariadb-$name-install.log" 2>&1 \
      || { tail -n 40 "$FLEET_LOG_DIR/mariadb-$name-install.log" >&2; die "mariadb $name: mariadb-install-db failed"; }
  fi

  log "mariadb $name: starting on 127.0.0.1:$port"
  setsid nohup mariadbd --defaults-file="$MARIADB_DIR/$name.cnf" </dev/null >>"$(_mariadb_log "$name")" 2>&1 &
  local pid=$!
  ( wait_for "mariadb $name" 120 _mariadb_answers_or_gone "$name" "$pid" ) || true
  _mariadb_answers "$name" || _mariadb_fail "$name" "did not start (pid $pid)"
  wait_for "mariadb $name pid file" 10 test -s "$pidfile"
}

# _mariadb_slave_status: SHOW SLAVE STATUS of the replica, one "Field: value" a line.
_mariadb_slave_status() {
  mariadb --no-defaults --socket="$(_mariadb_sock replica)" --user=root --connect-timeout=3 -e 'SHOW SLAVE STATUS\G'
}

_mariadb_slave_running() {
  local status
  status=$(_mariadb_slave_status) || return 1
  grep -Eq '^ *Slave_IO_Running: Yes$' <<<"$status" && grep -Eq '^ *Slave_SQL_Running: Yes$' <<<"$status"
}

# _mariadb_slave_stopped: a replication thread is stopped (not merely reconnecting), e.g. after STOP SLAVE.
_mariadb_slave_stopped() {
  _mariadb_slave_status | grep -Eq '^ *Slave_(IO|SQL)_Running: No$'
}

_mariadb_slave_report() {
  _mariadb_slave_status 2>&1 \
    | grep -E 'Slave_(IO|SQL)_Running:|Last_(IO_|SQL_)?Errno:|Last_(IO_|SQL_)?Error:|Gtid_IO_Pos:' >&2 || true
}

mariadb_install() {
  apt_install mariadb-server mariadb-client
}

mariadb_up() {
  mkdir -p "$MARIADB_RUN" "$FLEET_LOG_DIR"
  local longest=$MARIADB_RUN/replica.sock
  (( ${#longest} < 100 )) || die "mariadb: socket path $longest is too long for a unix socket; set DBWATCH_FLEET_DIR to a shorter folder"

  _mariadb_start primary
  if [[ ! -f "$MARIADB_DIR/primary/fleet-provisioned" ]]; then
    log "mariadb primary: creating accounts and the shop schema"
    _mariadb_sql primary <"$MARIADB_SRC/users.sql"
    _mariadb_sql primary <"$MARIADB_SRC/schema.sql"
    touch "$MARIADB_DIR/primary/fleet-provisioned"
  fi

  _mariadb_start replica
  if [[ ! -f "$MARIADB_DIR/replica/fleet-provisioned" ]]; then
    log "mariadb replica: replicating from 127.0.0.1:13306 (GTID)"
    _mariadb_sql replica -e "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=13306,
      MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
    touch "$MARIADB_DIR/replica/fleet-provisioned"
  elif _mariadb_slave_stopped; then
    log "mariadb replica: START SLAVE"
    _mariadb_sql replica -e 'START SLAVE'
  fi
  ( wait_for "mariadb replication threads" 60 _mariadb_slave_running ) \
    || { _mariadb_slave_report; _mariadb_fail replica "Slave_IO_Running/Slave_SQL_Running not both Yes"; }

  # Caught up: the replica has applied everything the primary has binlogged so far (accounts, schema).
  local pos caught
  pos=$(_mariadb_sql primary -e 'SELECT @@gtid_binlog_pos')
  caught=$(_mariadb_sql replica -e "SELECT MASTER_GTID_WAIT('$pos', 60)")
  [[ "$caught" == 0 ]] || { _mariadb_slave_report; _mariadb_fail replica "did not catch up with the primary ($pos)"; }
  wait_for "mariadb primary as dbwatch over TCP" 10 _mariadb_tcp_ok primary
  wait_for "mariadb replica as dbwatch over TCP" 10 _mariadb_tcp_ok replica
}

mariadb_down() {
  stop_pidfile "mariadb replica" "$(_mariadb_pidfile replica)"
  stop_pidfile "mariadb primary" "$(_mariadb_pidfile primary)"
}

mariadb_status() {
  local rc=0
  status_line "mariadb-primary" "127.0.0.1:13306" _mariadb_tcp_ok primary || rc=1
  status_line "mariadb-replica" "127.0.0.1:13307" _mariadb_tcp_ok replica || rc=1
  return "$rc"
}

mariadb_env() {
  local var value
  while IFS='=' read -r var value; do
    printf 'export %s=%q\n' "$var" "$value"
  done <<EOF
DBWATCH_MYSQL_PRIMARY_URL=mysql://dbwatch:dbwatch@127.0.0.1:13306/
DBWATCH_MYSQL_REPLICA_URL=mysql://dbwatch:dbwatch@127.0.0.1:13307/
DBWATCH_MYSQL_ADMIN_URL=mysql://fleet_admin:admin@127.0.0.1:13306/shop
DBWATCH_MYSQL_REPLICA_ADMIN_URL=mysql://fleet_admin:admin@127.0.0.1:13307/shop
DBWATCH_MYSQL_SOCKET_DIR=$MARIADB_RUN
DBWATCH_MYSQL_PRIMARY_SOCKET=$MARIADB_RUN/primary.sock
DBWATCH_MYSQL_REPLICA_SOCKET=$MARIADB_RUN/replica.sock
DBWATCH_MYSQL_PRIMARY_SLOW_LOG=$MARIADB_DIR/primary/slow.log
DBWATCH_MYSQL_REPLICA_SLOW_LOG=$MARIADB_DIR/replica/slow.log
DBWATCH_MYSQL_PRIMARY_ERROR_LOG=$FLEET_LOG_DIR/mariadb-primary.log
DBWATCH_MYSQL_REPLICA_ERROR_LOG=$FLEET_LOG_DIR/mariadb-replica.log
EOF
}
