# shellcheck shell=bash disable=SC2034 # the W_* results are read by the scripts that source this file
# What pg_compare.sh and mysql_compare.sh share: starting and stopping the daemon under test, reading its CPU
# and memory from /proc, the measurement windows of dbwatch and of an exporter, and the results table.
# Sourced, never run. The caller sets BENCH (its name, for messages) and ROOT; the settings below can be
# overridden from the environment.

N=${N:-30}                          # polls (scrapes) measured per tool
ORDER=${ORDER:-"dbwatch exporter"}  # which tools run, in that order
OUT=${OUT:-}                        # when set, a folder that receives each tool's last /metrics body and log
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DBWATCH_BIN=${DBWATCH_BIN:-$CARGO_TARGET_DIR/release/dbwatch}
WORK=$(mktemp -d "/tmp/$BENCH.XXXXXX")

say() { printf '%s\n' "$*" >&2; }
die() { say "$BENCH: $*"; exit 1; }

# install_exporter PACKAGE BINARY: Debian's package when the binary is missing. Its service is stopped and
# disabled at once: the scripts run the binary themselves, on their own port.
install_exporter() {
  local package=$1 binary=$2
  [[ -x $binary ]] && return 0
  say "installing $package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  service "$package" stop >/dev/null 2>&1 || invoke-rc.d "$package" stop >/dev/null 2>&1 || true
  systemctl disable --now "$package" >/dev/null 2>&1 || true
  [[ -x $binary ]] || die "$package installed no $binary"
}

# build_dbwatch: the release binary, with the flags every build on the project uses (shared target dir).
build_dbwatch() {
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "building dbwatch (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --all-features --locked -p dbwatch --quiet)
  fi
  [[ -x $DBWATCH_BIN ]] || die "no dbwatch binary at $DBWATCH_BIN"
}

DAEMON_PID=""
stop_daemon() {
  if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  DAEMON_PID=""
}
cleanup() { stop_daemon; rm -rf "$WORK"; }

# start_dbwatch PASSWORD: dbwatch at DBWATCH_ADDRESS, polling once a second the one target whose YAML list item
# comes on stdin (its password: '${BENCH_PASSWORD}', so the secret stays out of the file).
start_dbwatch() {
  {
    printf 'global:\n  interval: 1s\n  timeout: 900ms\ntargets:\n'
    cat
  } >"$WORK/dbwatch.yml"
  BENCH_PASSWORD=$1 "$DBWATCH_BIN" --config.file "$WORK/dbwatch.yml" \
    --web.listen-address "$DBWATCH_ADDRESS" --log.level warn >"$WORK/dbwatch.log" 2>&1 &
  DAEMON_PID=$!
}

# start_exporter DATA_SOURCE_NAME: the exporter at EXPORTER_ADDRESS, in an empty environment but for its DSN.
start_exporter() {
  env -i PATH=/usr/bin:/bin DATA_SOURCE_NAME="$1" \
    "$EXPORTER_BIN" --web.listen-address="$EXPORTER_ADDRESS" --log.level=warn >"$WORK/exporter.log" 2>&1 &
  DAEMON_PID=$!
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TICK_HZ=$(getconf CLK_TCK)
now_ns() { date +%s%N; }
# Sleeps until the given time in nanoseconds since the epoch.
sleep_until() {
  local remaining=$(($1 - $(now_ns)))
  ((remaining > 0)) && sleep "$(printf '%d.%09d' $((remaining / 1000000000)) $((remaining % 1000000000)))"
  return 0
}
# utime + stime of the whole process (dead threads included), in clock ticks.
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }
  # After "pid (comm) ": state is field 1, utime field 12, stime field 13.
  awk '{ print $12 + $13 }' <<<"$stat"
}
# Run time of the live threads in ns (finer than clock ticks; misses threads that exited).
sched_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
# rss_kb PID: "resident anonymous" in kB; the rest of the resident set is file-backed, mostly the binary's code.
rss_kb() { awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } END { print r, a }' "/proc/$1/status"; }

count_series() { grep -cv -e '^#' -e '^$' "$1" || true; }
# Series per group of families (the name's first two words), largest first.
series_groups() {
  grep -v -e '^#' -e '^$' "$1" | sed -E 's/[{ ].*//; s/^([a-z]+_[a-z]+).*/\1/' | sort | uniq -c | sort -rn |
    awk '{ printf "%s %s, ", $2, $1 } END { print "" }' | sed 's/, $//'
}
# count_db_series FILE SELF_PREFIXES: series about the database, without the runtime's and the tool's own.
count_db_series() { grep -v -e '^#' -e '^$' "$1" | grep -cv -E "^(go_|process_|promhttp_|$2)" || true; }

wait_http() {
  local url=$1 what=$2
  for _ in $(seq 200); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "$DAEMON_PID" 2>/dev/null || die "$what exited: $(tail -5 "$WORK/$what.log")"
    sleep 0.1
  done
  die "$what did not answer at $url"
}

polls_of() { awk -v t="target=\"$2\"" '/^dbwatch_polls_total\{/ && index($0, t) { print $NF }' "$1"; }

# A measurement window leaves: W_POLLS, W_TICKS (utime+stime), W_SCHED_NS, W_RSS_KB (rss_kb after it), W_MID
# (what MID_HOOK printed) and the last /metrics body in $WORK/<tool>.prom. OPEN_HOOK runs right before the
# window opens, CLOSE_HOOK right after it closes (the daemon still running), MID_HOOK halfway through.

W_POLLS=0 W_TICKS=0 W_SCHED_NS=0 W_RSS_KB="0 0" W_MID=""

# dbwatch_window TARGET ADDRESS OPEN_HOOK MID_HOOK CLOSE_HOOK: dbwatch polls on its own 1 s ticker and is
# scraped once a second, as Prometheus would. The window opens and closes 0.3 s after a poll started (a poll
# takes milliseconds), so it holds exactly W_POLLS = delta(dbwatch_polls_total) polls.
dbwatch_window() {
  local target=$1 base="http://$2" open_hook=$3 mid_hook=$4 close_hook=$5
  local prom="$WORK/dbwatch.prom"
  wait_http "$base/-/healthy" dbwatch
  # Warm up: a few polls, so that the connection is open and the statements are prepared.
  local polls=0
  for _ in $(seq 100); do
    curl -fsS -o "$prom" "$base/metrics"
    polls=$(polls_of "$prom" "$target")
    ((${polls:-0} >= 3)) && break
    sleep 0.5
  done
  ((${polls:-0} >= 3)) || die "dbwatch does not poll: $(tail -5 "$WORK/dbwatch.log")"
  # Find the phase of its 1 s ticker: the counter goes up when a poll starts.
  local before=$polls
  while ((polls == before)); do
    sleep 0.02
    curl -fsS -o "$prom" "$base/metrics"
    polls=$(polls_of "$prom" "$target")
  done
  local phase
  phase=$(now_ns)
  sleep_until $((phase + 300000000))
  "$open_hook"
  curl -fsS -o "$prom" "$base/metrics"
  local p0 c0 s0 k
  p0=$(polls_of "$prom" "$target")
  c0=$(cpu_ticks "$DAEMON_PID")
  s0=$(sched_ns "$DAEMON_PID")
  for k in $(seq "$N"); do
    sleep_until $((phase + 300000000 + k * 1000000000))
    curl -fsS -o "$prom" "$base/metrics"
    if ((k == N / 2)); then W_MID=$("$mid_hook"); fi
  done
  W_TICKS=$(($(cpu_ticks "$DAEMON_PID") - c0))
  W_SCHED_NS=$(($(sched_ns "$DAEMON_PID") - s0))
  W_POLLS=$(($(polls_of "$prom" "$target") - p0))
  "$close_hook"
  W_RSS_KB=$(rss_kb "$DAEMON_PID")
}

# exporter_window URL SUCCESS_REGEX OPEN_HOOK MID_HOOK CLOSE_HOOK: an exporter polls when scraped; N scrapes
# 1 s apart after 3 warm-up scrapes (connections open, version and settings read).
exporter_window() {
  local url=$1 success=$2 open_hook=$3 mid_hook=$4 close_hook=$5
  local prom="$WORK/exporter.prom"
  wait_http "$url" exporter
  local k
  for k in 1 2 3; do
    sleep 1
    curl -fsS -o "$prom" "$url"
  done
  grep -Eq "$success" "$prom" || die "the exporter cannot read the server: $(tail -5 "$WORK/exporter.log")"
  sleep 0.3
  "$open_hook"
  local c0 s0 start
  c0=$(cpu_ticks "$DAEMON_PID")
  s0=$(sched_ns "$DAEMON_PID")
  start=$(now_ns)
  for k in $(seq "$N"); do
    sleep_until $((start + k * 1000000000))
    curl -fsS -o "$prom" "$url"
    if ((k == N / 2)); then W_MID=$("$mid_hook"); fi
  done
  W_TICKS=$(($(cpu_ticks "$DAEMON_PID") - c0))
  W_SCHED_NS=$(($(sched_ns "$DAEMON_PID") - s0))
  W_POLLS=$N
  "$close_hook"
  W_RSS_KB=$(rss_kb "$DAEMON_PID")
}

command -v curl >/dev/null || die "curl is missing"

# run_tools: run_dbwatch and run_exporter (the caller's), in ORDER.
run_tools() {
  local tool
  for tool in $ORDER; do
    case $tool in
      dbwatch) run_dbwatch ;;
      exporter) run_exporter ;;
      *) die "unknown tool in ORDER: $tool" ;;
    esac
  done
}

declare -A RESULT

# record_window TOOL SELF_PREFIXES: the window's process figures per poll, into RESULT[TOOL.*].
record_window() {
  local tool=$1 self=$2 prom="$WORK/$1.prom"
  RESULT[$tool.polls]=$W_POLLS
  RESULT[$tool.cpu_ms]=$(per_poll "$W_TICKS * 1000 / $TICK_HZ" 2)
  RESULT[$tool.sched_ms]=$(per_poll "$W_SCHED_NS / 1e6" 2)
  local rss anon
  read -r rss anon <<<"$W_RSS_KB"
  RESULT[$tool.rss_mb]=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
  RESULT[$tool.anon_mb]=$(awk -v k="$anon" 'BEGIN { printf "%.1f", k / 1024 }')
  RESULT[$tool.series]=$(count_series "$prom")
  RESULT[$tool.db_series]=$(count_db_series "$prom" "$self")
  say "--- $tool: series by family group: $(series_groups "$prom")"
  if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    cp "$prom" "$OUT/$tool.prom"
    cp "$WORK/$tool.log" "$OUT/$tool.log"
  fi
}

# per_poll EXPRESSION DECIMALS: an awk expression divided by the window's polls.
per_poll() { awk -v n="$W_POLLS" "BEGIN { printf \"%.$2f\", ($1) / n }"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# row LABEL KEY GOAL: one line of the table, dbwatch against the exporter (EXPORTER_NAME heads the column).
row() {
  local d=${RESULT[dbwatch.$2]:-} e=${RESULT[exporter.$2]:-} r=-
  [[ -n $d && -n $e ]] && r=$(ratio "$d" "$e")
  printf '%-26s %12s %12s %14s %10s\n' "$1" "${d:--}" "${e:--}" "$r" "$3"
}
table_header() { printf '%-26s %12s %12s %14s %10s\n' "" dbwatch "$EXPORTER_NAME" "dbwatch/exp" goal; }

# check LABEL KEY LIMIT le|ge: whether dbwatch's figure is within LIMIT times the exporter's.
check() {
  [[ -n ${RESULT[dbwatch.$2]:-} && -n ${RESULT[exporter.$2]:-} ]] || return 0
  local r
  r=$(ratio "${RESULT[dbwatch.$2]}" "${RESULT[exporter.$2]}")
  if awk -v r="$r" -v l="$3" -v op="$4" 'BEGIN { exit !((op == "le" && r <= l) || (op == "ge" && r >= l)) }'; then
    printf '  %-12s met    (%s x %s)\n' "$1" "$r" "$EXPORTER_NAME"
  else
    printf '  %-12s MISSED (%s x %s)\n' "$1" "$r" "$EXPORTER_NAME"
  fi
}
