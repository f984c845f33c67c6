#!/usr/bin/env bash
# Compares what dbwatch and mysqld_exporter cost the same MariaDB or MySQL server and the machine they run on.
# A benchmark, not a test: it prints figures and goal checks, and exits non-zero only when it cannot measure.
#
#   deploy/bench/mysql_compare.sh                 # N=30 polls/scrapes per tool, the MariaDB 10.11 primary
#   SERVER=mysql8 deploy/bench/mysql_compare.sh   # the MySQL 8.0 primary
#   N=60 deploy/bench/mysql_compare.sh
#
# Needs the local fleet (`deploy/local/fleet up mariadb`: primary on 127.0.0.1:13306; with SERVER=mysql8,
# `deploy/local/fleet up mysql`: primary on 127.0.0.1:13316; performance_schema on),
# the mariadb client, curl, and Debian's prometheus-mysqld-exporter (installed with apt-get when missing; its
# service is stopped at once: this script starts the binary itself, on 127.0.0.1:19104; dbwatch on 19631).
#
# Method (per tool, one tool after the other, never both at once, as deploy/bench/pg_compare.sh):
#   * warm up, then, between two polls, snapshot the tool's account in performance_schema as fleet_admin,
#     let it do N polls (dbwatch: its own 1 s interval, scraped once a second; mysqld_exporter: N scrapes 1 s
#     apart, every scrape is a poll), snapshot again; nothing is truncated, so the shared fleet's statistics
#     survive. Per poll:
#     new connections = delta(performance_schema.users.TOTAL_CONNECTIONS) of the tool's user;
#     statements      = delta(COUNT_STAR) of events_statements_summary_by_user_by_event_name, SQL statements
#                       (statement/sql/*) and protocol commands (statement/com/*: Quit, Ping, Prepare,
#                       Execute, ...) apart; a prepared statement's execution counts once, as com/Execute;
#     DB time         = delta(SUM_TIMER_WAIT) over all of the user's statement events (picoseconds -> ms);
#                       the handshake of a new connection (authentication, session setup) is not a statement
#                       and is not in it, so it favours a tool that reconnects;
#     CPU, RSS, series: as pg_compare.sh (utime+stime of /proc/<pid>/stat over the window / polls; VmRSS).
#   * The global Connections status counter moves with every client on the server (this script's own
#     mariadb calls included), so it is only printed, per poll, beside the per-user figure.
#
# Each tool logs in as its own account, with the same grants as the fleet's dbwatch account (README.md's: on
# MariaDB PROCESS, BINLOG MONITOR, SLAVE MONITOR, on MySQL PROCESS, REPLICATION CLIENT; SELECT on
# performance_schema; created by fleet_admin when missing, password = name): bench_dbwatch and
# bench_mysqld_exporter, so their statements are separable. On MySQL 8 both log in without TLS, so
# caching_sha2_password sends the password encrypted with the server's RSA key, which both clients ask for.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH=mysql_compare
EXPORTER_NAME=mysqld_exp
EXPORTER_BIN=${EXPORTER_BIN:-/usr/bin/prometheus-mysqld-exporter}
EXPORTER_ADDRESS=${EXPORTER_ADDRESS:-127.0.0.1:19104}
DBWATCH_ADDRESS=${DBWATCH_ADDRESS:-127.0.0.1:19631}
DBWATCH_USER=${DBWATCH_USER:-bench_dbwatch}
EXPORTER_USER=${EXPORTER_USER:-bench_mysqld_exporter}
# dbwatch's collectors block, to see what one view costs, e.g. DBWATCH_COLLECTORS='{statement_latency: false}'
DBWATCH_COLLECTORS=${DBWATCH_COLLECTORS:-'{}'}
# shellcheck source=deploy/bench/lib.sh
source "$ROOT/deploy/bench/lib.sh"

command -v mariadb >/dev/null || die "the mariadb client is missing (apt-get install mariadb-client)"

SERVER=${SERVER:-mariadb}
case $SERVER in
  mariadb) ADMIN_URL_VAR=DBWATCH_MYSQL_ADMIN_URL COMPONENT=mariadb ;;
  mysql8) ADMIN_URL_VAR=DBWATCH_MYSQL8_ADMIN_URL COMPONENT=mysql ;;
  *) die "SERVER is mariadb or mysql8, not $SERVER" ;;
esac
if [[ -z ${!ADMIN_URL_VAR:-} ]]; then
  eval "$("$ROOT/deploy/local/fleet" env "$COMPONENT")"
fi
ADMIN_URL=${!ADMIN_URL_VAR}
# mysql://user:password@host:port/database
url_re='^mysql://([^:]+):([^@]+)@([^:/]+):([0-9]+)/?(.*)$'
[[ $ADMIN_URL =~ $url_re ]] || die "cannot parse $ADMIN_URL_VAR"
ADMIN_USER=${BASH_REMATCH[1]}
ADMIN_PASSWORD=${BASH_REMATCH[2]}
MY_HOST=${BASH_REMATCH[3]}
MY_PORT=${BASH_REMATCH[4]}

# The mariadb client as fleet_admin over TCP; SQL on stdin, tab-separated rows out.
admin() {
  MYSQL_PWD=$ADMIN_PASSWORD mariadb --no-defaults --protocol=tcp --host="$MY_HOST" --port="$MY_PORT" \
    --user="$ADMIN_USER" --batch --skip-column-names
}
admin <<<'SELECT 1' >/dev/null 2>&1 || die "cannot reach the fleet primary as $ADMIN_USER: run deploy/local/fleet up $COMPONENT"
[[ $(admin <<<'SELECT @@performance_schema') == 1 ]] || die "performance_schema is off on $MY_HOST:$MY_PORT"
SERVER_VERSION=$(admin <<<'SELECT VERSION()')
case $SERVER_VERSION in
  *MariaDB*) SERVER_NAME="MariaDB ${SERVER_VERSION%%-*}" MONITOR_GRANTS='PROCESS, BINLOG MONITOR, SLAVE MONITOR'
    GLOBAL_STATUS_TABLE=information_schema.GLOBAL_STATUS ;;
  # MySQL 8 moved the status table to performance_schema (no information_schema.GLOBAL_STATUS).
  *) SERVER_NAME="MySQL $SERVER_VERSION" MONITOR_GRANTS='PROCESS, REPLICATION CLIENT'
    GLOBAL_STATUS_TABLE=performance_schema.global_status ;;
esac

# The bench accounts, with the grants README.md gives the monitoring account on this flavour. Names are ours,
# so interpolating them is safe.
for user in "$DBWATCH_USER" "$EXPORTER_USER"; do
  admin <<SQL
CREATE USER IF NOT EXISTS '$user'@'$MY_HOST' IDENTIFIED BY '$user';
ALTER USER '$user'@'$MY_HOST' IDENTIFIED BY '$user';
GRANT $MONITOR_GRANTS ON *.* TO '$user'@'$MY_HOST';
GRANT SELECT ON performance_schema.* TO '$user'@'$MY_HOST';
SQL
done

install_exporter prometheus-mysqld-exporter "$EXPORTER_BIN"
EXPORTER_VERSION=$("$EXPORTER_BIN" --version 2>&1 | sed -n 's/.*version \([^ ]*\).*/\1/p' | head -1)
build_dbwatch

USER_NOW=$DBWATCH_USER
# snapshot FILE: "event count timer_ps" per statement event of the user, then "connections N" and "global N".
snapshot() {
  admin >"$1" <<SQL
SELECT EVENT_NAME, COUNT_STAR, SUM_TIMER_WAIT FROM performance_schema.events_statements_summary_by_user_by_event_name
WHERE USER = '$USER_NOW' AND COUNT_STAR > 0;
SELECT 'connections', COALESCE((SELECT TOTAL_CONNECTIONS FROM performance_schema.users WHERE USER = '$USER_NOW'), 0), 0;
SELECT 'global', VARIABLE_VALUE, 0 FROM $GLOBAL_STATUS_TABLE WHERE VARIABLE_NAME = 'CONNECTIONS';
SQL
}
snapshot_before() { snapshot "$WORK/before"; }
snapshot_after() { snapshot "$WORK/after"; }
user_sessions() { admin <<<"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '$USER_NOW'"; }

# deltas: "event count_delta timer_delta_ps" for every row that moved between the two snapshots.
deltas() {
  awk -F '\t' 'NR == FNR { c[$1] = $2; t[$1] = $3; next }
    { dc = $2 - c[$1]; dt = $3 - t[$1]; if (dc != 0 || dt != 0) printf "%s %d %.0f\n", $1, dc, dt }' \
    "$WORK/before" "$WORK/after"
}

record() { # tool self-metric-prefixes
  local tool=$1
  record_window "$tool" "$2"
  local d
  d=$(deltas)
  sum() { awk -v pattern="$1" -v col="$2" '$1 ~ pattern { s += $col } END { printf "%.0f", s }' <<<"$d"; }
  RESULT[$tool.conns]=$(per_poll "$(sum '^connections$' 2)" 2)
  RESULT[$tool.global_conns]=$(per_poll "$(sum '^global$' 2)" 2)
  RESULT[$tool.stmts]=$(per_poll "$(sum '^statement/sql/' 2)" 1)
  RESULT[$tool.coms]=$(per_poll "$(sum '^statement/com/' 2)" 1)
  RESULT[$tool.db_ms]=$(per_poll "$(sum '^statement/' 3) / 1e9" 3)
  RESULT[$tool.sessions]=$W_MID
  say "--- $tool: where the DB time goes (per poll, statement events of user $USER_NOW)"
  awk -v n="$W_POLLS" '$1 ~ /^statement\// { printf "%8.3f ms | %5.1f calls | %s\n", $3 / 1e9 / n, $2 / n, $1 }' \
    <<<"$d" | sort -rn >&2
}

run_dbwatch() {
  USER_NOW=$DBWATCH_USER
  say "=== dbwatch: $N polls at a 1 s interval, user $USER_NOW, collectors $DBWATCH_COLLECTORS (digests off by default)"
  start_dbwatch "$USER_NOW" <<EOF
  - name: $SERVER-primary
    type: mysql
    connection: {host: $MY_HOST, port: $MY_PORT, user: $USER_NOW, password: '\${BENCH_PASSWORD}', tls: {mode: disabled}}
    collectors: $DBWATCH_COLLECTORS
EOF
  dbwatch_window "$SERVER-primary" "$DBWATCH_ADDRESS" snapshot_before user_sessions snapshot_after
  stop_daemon
  record dbwatch dbwatch_
}

run_exporter() {
  USER_NOW=$EXPORTER_USER
  say "=== mysqld_exporter $EXPORTER_VERSION: $N scrapes 1 s apart, user $USER_NOW, default collectors"
  start_exporter "$USER_NOW:$USER_NOW@tcp($MY_HOST:$MY_PORT)/"
  exporter_window "http://$EXPORTER_ADDRESS/metrics" '^mysql_up 1' snapshot_before user_sessions snapshot_after
  stop_daemon
  record exporter 'mysql_exporter_|mysqld_exporter_|mysql_up'
}

run_tools

printf '\nmysql_compare: %s, N=%s, %s on %s:%s, mysqld_exporter %s, users %s/%s, %s cores, load %s\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$N" "$SERVER_NAME" "$MY_HOST" "$MY_PORT" \
  "$EXPORTER_VERSION" "$DBWATCH_USER" "$EXPORTER_USER" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
table_header
row "polls measured" polls ""
row "new connections/poll" conns "0"
row "  (server-wide, all users)" global_conns ""
row "SQL statements/poll" stmts "<= 6"
row "protocol commands/poll" coms ""
row "DB time ms/poll" db_ms "<= 0.33"
row "CPU ms/poll (stat)" cpu_ms "<= 0.33"
row "CPU ms/poll (sched)" sched_ms ""
row "RSS MB after N" rss_mb "<= 1.00"
row "  of which anonymous" anon_mb ""
row "series" series ""
row "db series" db_series ""
row "user sessions mid-run" sessions ""
printf 'goals:\n'
if [[ -n ${RESULT[dbwatch.conns]:-} ]]; then
  if awk -v c="${RESULT[dbwatch.conns]}" 'BEGIN { exit !(c == 0) }'; then
    printf '  %-12s met    (%s new connections per poll)\n' connections "${RESULT[dbwatch.conns]}"
  else
    printf '  %-12s MISSED (%s new connections per poll)\n' connections "${RESULT[dbwatch.conns]}"
  fi
  if awk -v s="${RESULT[dbwatch.stmts]}" 'BEGIN { exit !(s <= 6) }'; then
    printf '  %-12s met    (%s SQL statements per poll)\n' statements "${RESULT[dbwatch.stmts]}"
  else
    printf '  %-12s MISSED (%s SQL statements per poll)\n' statements "${RESULT[dbwatch.stmts]}"
  fi
fi
check "DB time" db_ms 0.3334 le
check "CPU" cpu_ms 0.3334 le
check "memory" rss_mb 1.0 le
