#!/usr/bin/env bash
# One dbwatch with many real targets against the local fleet (issue: 1,000 targets on one instance). Not a test:
# a benchmark that prints its figures. Needs `deploy/local/fleet up` (PostgreSQL, PgBouncer, MySQL).
#
#   deploy/bench/scale.sh                 1,000 targets at a 15 s interval, 60 s warm-up, 300 s measured
#   TARGETS=200 DURATION=120 deploy/bench/scale.sh
#
# The targets: PG_TARGETS PostgreSQL targets (half on the primary, half on the replica), MYSQL_TARGETS MySQL
# targets on the primary, and the rest PgBouncer targets on a PgBouncer of the bench's own (same binary and
# credentials as the fleet's, max_client_conn raised, on BENCH_PGBOUNCER_PORT), so that no fleet server's
# connection limit is changed. Every target is a real connection and a real poll.
#
# Printed: CPU (% of one core, and per poll), RSS (and per target), the scrape's duration and size, the poll-start
# delay against the schedule (p50/p99 from dbwatch_poll_start_delay_seconds over the window), polls skipped
# because a previous one overran (dbwatch_polls_skipped_total), and failed polls.
set -euo pipefail
BENCH=scale
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=deploy/bench/lib.sh
source "$ROOT/deploy/bench/lib.sh"

TARGETS=${TARGETS:-1000}
PG_TARGETS=${PG_TARGETS:-20}
MYSQL_TARGETS=${MYSQL_TARGETS:-30}
INTERVAL=${INTERVAL:-15}
WARMUP=${WARMUP:-60}
DURATION=${DURATION:-300}
BENCH_PGBOUNCER_PORT=${BENCH_PGBOUNCER_PORT:-16499}
DBWATCH_ADDRESS=${DBWATCH_ADDRESS:-127.0.0.1:19630}
PGBOUNCER_TARGETS=$((TARGETS - PG_TARGETS - MYSQL_TARGETS))
((PGBOUNCER_TARGETS >= 0)) || die "TARGETS must be at least PG_TARGETS + MYSQL_TARGETS"

eval "$("$ROOT/deploy/local/fleet" env)"
FLEET_PGBOUNCER_DIR=${DBWATCH_FLEET_DIR:-$ROOT/.fleet}/postgres/pgbouncer
[[ -f $FLEET_PGBOUNCER_DIR/userlist.txt ]] || die "no fleet PgBouncer: run deploy/local/fleet up"
host_port() { local rest=${1##*@}; rest=${rest%%/*}; echo "${rest%:*} ${rest##*:}"; }
read -r PG_HOST PG_PORT <<<"$(host_port "$DBWATCH_PG_PRIMARY_URL")"
read -r REPLICA_HOST REPLICA_PORT <<<"$(host_port "$DBWATCH_PG_REPLICA_URL")"
read -r MYSQL_HOST MYSQL_PORT <<<"$(host_port "$DBWATCH_MYSQL_PRIMARY_URL")"

build_dbwatch

BOUNCER_PID=""
stop_bouncer() { [[ -n $BOUNCER_PID ]] && kill "$BOUNCER_PID" 2>/dev/null; wait "$BOUNCER_PID" 2>/dev/null || true; }
trap 'stop_daemon; stop_bouncer; rm -rf "$WORK"' EXIT

# The bench's PgBouncer: what its targets read is its admin console, so it needs no server behind it. It refuses
# to run as root, so it runs as the fleet's does (user postgres), from a folder of its own that user can read.
BOUNCER_DIR=$WORK/pgbouncer
mkdir -p "$BOUNCER_DIR"
cp "$FLEET_PGBOUNCER_DIR/userlist.txt" "$BOUNCER_DIR/userlist.txt"
cat >"$BOUNCER_DIR/pgbouncer.ini" <<INI
[databases]
postgres = host=$PG_HOST port=$PG_PORT dbname=postgres pool_size=2
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BENCH_PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $BOUNCER_DIR/userlist.txt
stats_users = dbwatch
pool_mode = transaction
max_client_conn = $((PGBOUNCER_TARGETS + 50))
ignore_startup_parameters = extra_float_digits,options,statement_timeout,lock_timeout
INI
chmod 711 "$WORK"  # postgres may enter it to reach its own folder, not list or read the rest
chown -R postgres "$BOUNCER_DIR"
ulimit -n "$(( $(ulimit -Hn) < 65536 ? $(ulimit -Hn) : 65536 ))"
runuser -u postgres -- pgbouncer "$BOUNCER_DIR/pgbouncer.ini" >"$WORK/pgbouncer.log" 2>&1 &
BOUNCER_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$BENCH_PGBOUNCER_PORT") 2>/dev/null && break
  kill -0 "$BOUNCER_PID" 2>/dev/null || die "the bench's PgBouncer exited: $(tail -3 "$WORK/pgbouncer.log")"
  sleep 0.1
done

{
  printf 'global:\n  interval: %ss\n  timeout: 10s\ntargets:\n' "$INTERVAL"
  for i in $(seq 1 "$PG_TARGETS"); do
    if ((i % 2)); then host=$PG_HOST port=$PG_PORT; else host=$REPLICA_HOST port=$REPLICA_PORT; fi
    printf '  - {name: pg-%04d, type: postgres, connection: {host: %s, port: %s, user: dbwatch, password: dbwatch}}\n' \
      "$i" "$host" "$port"
  done
  for i in $(seq 1 "$MYSQL_TARGETS"); do
    printf '  - {name: mysql-%04d, type: mysql, connection: {host: %s, port: %s, user: dbwatch, password: dbwatch}}\n' \
      "$i" "$MYSQL_HOST" "$MYSQL_PORT"
  done
  for i in $(seq 1 "$PGBOUNCER_TARGETS"); do
    printf '  - {name: bouncer-%04d, type: pgbouncer, connection: {host: 127.0.0.1, port: %s, user: dbwatch, password: dbwatch}}\n' \
      "$i" "$BENCH_PGBOUNCER_PORT"
  done
} >"$WORK/dbwatch.yml"
"$DBWATCH_BIN" check-config --config.file "$WORK/dbwatch.yml" >/dev/null || die "dbwatch refuses the bench's config"
"$DBWATCH_BIN" --config.file "$WORK/dbwatch.yml" --web.listen-address "$DBWATCH_ADDRESS" \
  --storage.path "$WORK/state" --log.level warn >"$WORK/dbwatch.log" 2>&1 &
DAEMON_PID=$!
base="http://$DBWATCH_ADDRESS"
wait_http "$base/-/healthy" dbwatch
say "$TARGETS targets ($PG_TARGETS PostgreSQL, $MYSQL_TARGETS MySQL, $PGBOUNCER_TARGETS PgBouncer) every ${INTERVAL}s; warm-up ${WARMUP}s"
sleep "$WARMUP"

# sums NAME FILE: the sum over all series of a metric family member (e.g. dbwatch_polls_total).
sums() { awk -v n="$1" '$1 ~ "^"n"([{]|$)" { s += $NF } END { printf "%d", s }' "$2"; }
buckets() { grep '^dbwatch_poll_start_delay_seconds_bucket' "$1" | sed -E 's/.*le="([^"]+)"\} (.*)/\1 \2/'; }

curl -fsS -o "$WORK/before.prom" "$base/metrics"
c0=$(cpu_ticks "$DAEMON_PID")
t0=$(now_ns)
sleep "$DURATION"
curl -fsS -o "$WORK/after.prom" "$base/metrics"
c1=$(cpu_ticks "$DAEMON_PID")
t1=$(now_ns)
read -r rss anon <<<"$(rss_kb "$DAEMON_PID")"

scrapes=""
for _ in 1 2 3 4 5; do
  scrapes+="$(curl -fsS -o "$WORK/scrape.prom" -w '%{time_total} %{size_download}' "$base/metrics")"$'\n'
done
read -r scrape_s scrape_bytes <<<"$(sort -n <<<"$scrapes" | sed -n 3p)"
series=$(count_series "$WORK/scrape.prom")

polls=$(($(sums dbwatch_polls_total "$WORK/after.prom") - $(sums dbwatch_polls_total "$WORK/before.prom")))
errors=$(($(sums dbwatch_poll_errors_total "$WORK/after.prom") - $(sums dbwatch_poll_errors_total "$WORK/before.prom")))
skipped=$(($(sums dbwatch_polls_skipped_total "$WORK/after.prom") - $(sums dbwatch_polls_skipped_total "$WORK/before.prom")))
up=$(awk '/^db_up\{/ && $NF == 1 { n++ } END { printf "%d", n }' "$WORK/after.prom")
# The window's own histogram: after minus before, bucket by bucket; a quantile is the first bound that holds it.
quantiles=$(paste <(buckets "$WORK/before.prom") <(buckets "$WORK/after.prom") | awk '
  { le[NR] = $1; n[NR] = $4 - $2 } END {
    total = n[NR]
    for (q = 1; q <= 2; q++) {
      want = (q == 1 ? 0.5 : 0.99) * total; bound = "none"
      for (i = 1; i <= NR; i++) if (n[i] >= want) { bound = le[i]; break }
      printf "%s ", bound
    }
    printf "%d", total
  }')
read -r p50 p99 starts <<<"$quantiles"

elapsed_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
cpu_pct=$(awk -v t=$((c1 - c0)) -v hz="$TICK_HZ" -v s="$elapsed_s" 'BEGIN { printf "%.1f", 100 * t / hz / s }')
cpu_per_poll=$(awk -v t=$((c1 - c0)) -v hz="$TICK_HZ" -v p="$polls" 'BEGIN { printf "%.2f", p ? 1000 * t / hz / p : 0 }')

cat <<REPORT
dbwatch $("$DBWATCH_BIN" --version 2>/dev/null | head -1) with $TARGETS targets every ${INTERVAL}s, measured over ${elapsed_s}s
| figure | value | goal |
|---|---|---|
| targets up at the end (db_up 1) | $up of $TARGETS | all |
| polls in the window (failed) | $polls ($errors) | $TARGETS × window / interval |
| CPU | ${cpu_pct} % of one core, ${cpu_per_poll} ms per poll | < 20 % |
| RSS (anonymous) | $((rss / 1024)) MB ($((anon / 1024)) MB), $((rss / TARGETS)) kB per target | ≤ 100 MB |
| scrape of /metrics | ${scrape_s} s, $((scrape_bytes / 1024)) KiB, $series series | |
| poll start delay against the schedule, p50 / p99 ($starts starts) | ≤ ${p50} s / ≤ ${p99} s | p99 ≤ 0.1 s |
| polls skipped because the previous one overran | $skipped | 0 |
REPORT
