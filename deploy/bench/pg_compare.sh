#!/usr/bin/env bash
# Compares what dbwatch and postgres_exporter cost the same PostgreSQL server and the machine they run on.
# A benchmark, not a test: it prints figures and goal checks, and exits non-zero only when it cannot measure.
#
#   deploy/bench/pg_compare.sh            # N=30 polls/scrapes per tool
#   N=60 deploy/bench/pg_compare.sh
#
# Needs the local fleet (`deploy/local/fleet up postgres`: primary on 127.0.0.1:15432 with pg_stat_statements,
# track = all), psql, curl, and Debian's prometheus-postgres-exporter (installed with apt-get when missing; its
# service is stopped at once: this script starts the binary itself, on 127.0.0.1:19187; dbwatch on 19630).
#
# Method (per tool, one tool after the other, never both at once, so neither sees the other's statements or
# competes with it for the 2 cores):
#   * warm up (connection open, prepared statements cached), then, between two polls, reset the monitoring
#     role's pg_stat_statements entries as fleet_admin (pg_stat_statements_reset(<role oid>): only that role's
#     entries, so other people's statistics on the shared fleet survive) and read the daemon's CPU;
#   * let it do N polls (dbwatch: its own 1 s interval, scraped once a second as Prometheus would;
#     postgres_exporter: N scrapes with curl, 1 s apart: every scrape is a poll);
#   * DB time per poll  = sum(total_exec_time + total_plan_time) / polls over the role's top-level statements
#     (planning is tracked for the two bench roles only: ALTER ROLE ... SET pg_stat_statements.track_planning,
#     so a tool that re-plans every statement pays for it; the fleet's own setting stays off);
#     statements per poll = sum(calls) / polls;
#     CPU per poll        = delta(utime + stime) of /proc/<pid>/stat, clock ticks -> ms, / polls
#                           (resolution: one tick = 10 ms over the whole run, so +-10/N ms per poll; the
#                           sum of the threads' /proc/<pid>/task/*/schedstat run time is shown beside it);
#     RSS                 = VmRSS of /proc/<pid>/status after the N polls, and its anonymous part (RssAnon:
#                           heap and stacks; the rest is file-backed, mostly the binary's own code);
#     series              = lines of /metrics that are not comments; "db series" leaves out the runtime's own
#                           (go_, process_, promhttp_) and each tool's self metrics (dbwatch_; pg_exporter_,
#                           pg_scrape_, pg_up, pg_static, postgres_exporter_).
#   * polls of dbwatch are counted with dbwatch_polls_total. The window opens and closes at the same point
#     between two polls (~0.3 s after a poll started), so the count is exact.
#
# Each tool logs in as its own role (pg_monitor only, created here by fleet_admin when missing, password = name):
# bench_dbwatch and bench_pg_exporter, so their statements are separable from each other and from the tests
# and agents that use the fleet's `dbwatch` role. Anything else that logs in as a bench role during a run is
# counted too: the script warns when it sees more sessions than the tool keeps.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH=pg_compare
EXPORTER_NAME=pg_exporter
EXPORTER_BIN=${EXPORTER_BIN:-/usr/bin/prometheus-postgres-exporter}
EXPORTER_ADDRESS=${EXPORTER_ADDRESS:-127.0.0.1:19187}
DBWATCH_ADDRESS=${DBWATCH_ADDRESS:-127.0.0.1:19630}
DBWATCH_ROLE=${DBWATCH_ROLE:-bench_dbwatch}
EXPORTER_ROLE=${EXPORTER_ROLE:-bench_pg_exporter}
# shellcheck source=deploy/bench/lib.sh
source "$ROOT/deploy/bench/lib.sh"

command -v psql >/dev/null || die "psql is missing (apt-get install postgresql-client)"

if [[ -z ${DBWATCH_PG_PRIMARY_URL:-} || -z ${DBWATCH_PG_ADMIN_URL:-} ]]; then
  eval "$("$ROOT/deploy/local/fleet" env postgres)"
fi

# postgres://user:password@host:port/database
url_re='^postgres(ql)?://([^:]+):([^@]+)@([^:/]+):([0-9]+)/(.+)$'
[[ $DBWATCH_PG_PRIMARY_URL =~ $url_re ]] || die "cannot parse DBWATCH_PG_PRIMARY_URL"
PG_HOST=${BASH_REMATCH[4]}
PG_PORT=${BASH_REMATCH[5]}
PG_DATABASE=${BASH_REMATCH[6]}
# The admin URL points at the shop database; pg_stat_statements is installed in postgres.
ADMIN_URL="${DBWATCH_PG_ADMIN_URL%/*}/postgres"

# psql as fleet_admin; SQL comes on stdin (psql interpolates :'role' there, not in -c). ROLE is the role of
# the tool being measured.
ROLE=$DBWATCH_ROLE
admin() { psql "$ADMIN_URL" -X -q -At -v ON_ERROR_STOP=1 -v role="$ROLE" "$@"; }

admin -c 'SELECT 1' >/dev/null 2>&1 ||
  die "cannot reach the fleet primary as fleet_admin: run deploy/local/fleet up postgres"
[[ $(admin -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") == 1 ]] ||
  die "pg_stat_statements is not installed in database postgres"
[[ $(admin -c "SHOW pg_stat_statements.track") == all ]] ||
  say "warning: pg_stat_statements.track is not 'all'"

# The bench roles: pg_monitor only, like the fleet's dbwatch role; planning tracked for their sessions only.
ensure_role() {
  ROLE=$1 admin >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'role') \gexec
SELECT format('GRANT pg_monitor TO %I', :'role') \gexec
SELECT format('ALTER ROLE %I SET pg_stat_statements.track_planning = on', :'role') \gexec
SQL
}
ensure_role "$DBWATCH_ROLE"
ensure_role "$EXPORTER_ROLE"

install_exporter prometheus-postgres-exporter "$EXPORTER_BIN"
EXPORTER_VERSION=$("$EXPORTER_BIN" --version 2>&1 | sed -n 's/.*version \([^ ]*\).*/\1/p' | head -1)
build_dbwatch

reset_statements() {
  admin >/dev/null <<<"SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles WHERE rolname = :'role'))"
}
# "calls db_ms plan_ms" of the role's top-level statements since the reset.
STATEMENT_TOTALS=""
statement_totals() {
  STATEMENT_TOTALS=$(
    admin -F ' ' <<'SQL'
SELECT COALESCE(sum(s.calls), 0), COALESCE(round(sum(s.total_exec_time + s.total_plan_time)::numeric, 3), 0),
       COALESCE(round(sum(s.total_plan_time)::numeric, 3), 0)
FROM pg_stat_statements(true) AS s JOIN pg_roles AS r ON r.oid = s.userid
WHERE r.rolname = :'role' AND s.toplevel
SQL
  )
}
# The role's statements by database time, per poll.
statement_breakdown() {
  admin -v polls="$1" -F ' | ' <<'SQL'
SELECT to_char(sum(s.total_exec_time + s.total_plan_time) / :polls, 'FM990.000') || ' ms',
       to_char(sum(s.calls)::numeric / :polls, 'FM990.0') || ' calls',
       left(regexp_replace(min(s.query), '\s+', ' ', 'g'), 90)
FROM pg_stat_statements(true) AS s JOIN pg_roles AS r ON r.oid = s.userid
WHERE r.rolname = :'role' AND s.toplevel
GROUP BY s.queryid
ORDER BY sum(s.total_exec_time + s.total_plan_time) DESC
LIMIT 12
SQL
}
# Sessions of the role: more than the tool keeps means someone else was logged in as it.
role_sessions() {
  admin <<<"SELECT count(*) FROM pg_stat_activity WHERE usename = :'role' AND backend_type = 'client backend'"
}

record() { # tool self-metric-prefixes
  local tool=$1 calls db_ms plan_ms
  read -r calls db_ms plan_ms <<<"$STATEMENT_TOTALS"
  record_window "$tool" "$2"
  RESULT[$tool.db_ms]=$(per_poll "$db_ms" 3)
  RESULT[$tool.plan_ms]=$(per_poll "$plan_ms" 3)
  RESULT[$tool.stmts]=$(per_poll "$calls" 1)
  RESULT[$tool.sessions]=$W_MID
  say "--- $tool: where the DB time goes (per poll, top-level statements of role $ROLE)"
  statement_breakdown "$W_POLLS" >&2
}

run_dbwatch() {
  ROLE=$DBWATCH_ROLE
  say "=== dbwatch: $N polls at a 1 s interval, role $ROLE"
  start_dbwatch "$ROLE" <<EOF
  - name: pg-primary
    type: postgres
    connection: {host: $PG_HOST, port: $PG_PORT, user: $ROLE, database: $PG_DATABASE, password: '\${BENCH_PASSWORD}', tls: {mode: disable}}
EOF
  dbwatch_window pg-primary "$DBWATCH_ADDRESS" reset_statements role_sessions statement_totals
  stop_daemon
  record dbwatch dbwatch_
}

run_exporter() {
  ROLE=$EXPORTER_ROLE
  say "=== postgres_exporter $EXPORTER_VERSION: $N scrapes 1 s apart, role $ROLE, default collectors"
  start_exporter "postgresql://$ROLE:$ROLE@$PG_HOST:$PG_PORT/$PG_DATABASE?sslmode=disable"
  exporter_window "http://$EXPORTER_ADDRESS/metrics" '^pg_up 1' reset_statements role_sessions statement_totals
  stop_daemon
  record exporter 'pg_exporter_|postgres_exporter_|pg_scrape_|pg_up|pg_static'
}

run_tools

# Sessions of the role seen mid-run, against what the tool itself keeps open.
declare -A OWN_SESSIONS=([dbwatch]=1 [exporter]=${EXPORTER_SESSIONS:-2})
declare -A ROLE_OF=([dbwatch]=$DBWATCH_ROLE [exporter]=$EXPORTER_ROLE)
for tool in dbwatch exporter; do
  [[ -n ${RESULT[$tool.polls]:-} ]] || continue
  seen=${RESULT[$tool.sessions]}
  if ((seen > OWN_SESSIONS[$tool])); then
    say "warning: $seen sessions of role ${ROLE_OF[$tool]} during the $tool run (it keeps ${OWN_SESSIONS[$tool]}): someone else was logged in as it and may be counted"
  fi
done

printf '\npg_compare: %s, N=%s, PostgreSQL %s on %s:%s, postgres_exporter %s, roles %s/%s, %s cores, load %s\n' \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$N" "$(admin -c 'SHOW server_version')" "$PG_HOST" "$PG_PORT" \
  "$EXPORTER_VERSION" "$DBWATCH_ROLE" "$EXPORTER_ROLE" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
table_header
row "polls measured" polls ""
row "DB time ms/poll" db_ms "<= 0.33"
row "  of which planning" plan_ms ""
row "statements/poll" stmts ""
row "CPU ms/poll (stat)" cpu_ms "<= 0.33"
row "CPU ms/poll (sched)" sched_ms ""
row "RSS MB after N" rss_mb "<= 1.00"
row "  of which anonymous" anon_mb ""
row "series" series ""
row "db series" db_series ""
row "role sessions mid-run" sessions ""
printf 'goals:\n'
check "DB time" db_ms 0.3334 le
check "CPU" cpu_ms 0.3334 le
check "memory" rss_mb 1.0 le
