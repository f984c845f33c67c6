#!/usr/bin/env bash
# The rules engine beside Prometheus, in one sitting: the same 500 rules over the same 100 000 series
# (rules/benches/fleet: 1000 targets × 50 families × 2 series, quiet thresholds). Not a test: a benchmark that
# prints its figures. Needs no fleet.
#
#   deploy/bench/rules_compare.sh                  330 s warm-up (the rules' [5m] ranges full), 180 s measured
#   WARMUP=60 DURATION=60 deploy/bench/rules_compare.sh
#
# Prometheus (Debian's 2.42, installed when missing) scrapes the series as one static exposition every 15 s
# (honor_labels, so its series carry dbwatch's labels plus job and instance) and evaluates the rule file every
# 15 s; its evaluation time per cycle is the sum over the 10 groups of prometheus_rule_group_last_duration_seconds,
# read every 15 s. Then, with Prometheus stopped, the dbwatch engine runs the same rules over the same values
# (rules/benches/side_by_side.rs): CYCLES cycles, each reading 1000 freshly published snapshots, evaluating
# every group and trimming the history. Both sides' alerts pending or firing are printed: they must agree.
set -euo pipefail
BENCH=rules_compare
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=deploy/bench/lib.sh
source "$ROOT/deploy/bench/lib.sh"

WARMUP=${WARMUP:-330}
DURATION=${DURATION:-180}
CYCLES=${CYCLES:-40}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
PROMETHEUS_ADDRESS=${PROMETHEUS_ADDRESS:-127.0.0.1:19690}
SERIES_ADDRESS=${SERIES_ADDRESS:-127.0.0.1:19691}
command -v python3 >/dev/null || die "python3 is missing (it serves the static exposition)"

install_exporter prometheus "$PROMETHEUS_BIN"
side_by_side() {
  (cd "$ROOT" && cargo bench --locked --quiet -p dbwatch-rules --bench side_by_side -- "$@")
}
say "building the dbwatch side (cargo bench -p dbwatch-rules --bench side_by_side)"
(cd "$ROOT" && cargo bench --locked --quiet -p dbwatch-rules --bench side_by_side --no-run)
side_by_side --emit "$WORK/data"
promtool check rules "$WORK/data/rules.yml" >/dev/null || die "promtool refuses the bench's rule file"

SERVER_PID=""
stop_server() { [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; }
trap 'stop_daemon; stop_server; rm -rf "$WORK"' EXIT
python3 -m http.server --bind "${SERIES_ADDRESS%:*}" --directory "$WORK/data" "${SERIES_ADDRESS##*:}" \
  >"$WORK/series.log" 2>&1 &
SERVER_PID=$!

cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 15s
  scrape_timeout: 10s
  evaluation_interval: 15s
rule_files: ["$WORK/data/rules.yml"]
scrape_configs:
  - job_name: bench
    honor_labels: true
    metrics_path: /series.prom
    static_configs: [{targets: ["$SERIES_ADDRESS"]}]
YAML
"$PROMETHEUS_BIN" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="$PROMETHEUS_ADDRESS" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
DAEMON_PID=$!
base="http://$PROMETHEUS_ADDRESS"
wait_http "$base/-/ready" prometheus
say "Prometheus $("$PROMETHEUS_BIN" --version 2>&1 | awk 'NR == 1 { print $3 }') scrapes 100 000 series and evaluates 500 rules every 15 s; warm-up ${WARMUP}s"
sleep "$WARMUP"

# query EXPR: the first value of an instant query, or "none".
query() {
  curl -fsS --get --data-urlencode "query=$1" "$base/api/v1/query" |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
scraped=$(query 'scrape_samples_scraped{job="bench"}')
[[ $scraped == 100000 ]] || die "Prometheus scraped $scraped samples, not 100000: $(tail -5 "$WORK/prometheus.log")"
# The sum over the groups of their last evaluation's duration, in ms.
group_sum_ms() {
  curl -fsS "$base/metrics" |
    awk '/^prometheus_rule_group_last_duration_seconds\{/ { s += $NF; n++ } END { printf "%.1f %d", 1000 * s, n }'
}
c0=$(cpu_ticks "$DAEMON_PID")
t0=$(now_ns)
sums=""
for k in $(seq 1 $((DURATION / 15))); do
  sleep_until $((t0 + k * 15000000000))
  read -r ms groups <<<"$(group_sum_ms)"
  ((groups == 10)) || die "Prometheus reports $groups rule groups, not 10"
  sums+="$ms"$'\n'
done
c1=$(cpu_ticks "$DAEMON_PID")
t1=$(now_ns)
read -r prom_rss _ <<<"$(rss_kb "$DAEMON_PID")"
prom_hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
prom_alerts=$(query 'count(ALERTS)')
prom_failures=$(query 'sum(prometheus_rule_evaluation_failures_total)')
prom_missed=$(query 'sum(prometheus_rule_group_iterations_missed_total)')
prom_scrape_ms=$(query 'scrape_duration_seconds{job="bench"} * 1000')
prom_heap=$(query 'go_memstats_heap_inuse_bytes')
samples=$(grep -c . <<<"$sums")
prom_p50=$(sort -n <<<"$sums" | awk -v n="$samples" 'NR == int((n + 1) / 2)')
prom_p90=$(sort -n <<<"$sums" | awk -v n="$samples" 'NR == int(n * 0.9 + 0.5)')
prom_cpu=$(awk -v t=$((c1 - c0)) -v hz="$TICK_HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", 100 * t / hz / ((b - a) / 1e9) }')
stop_daemon
stop_server

say "Prometheus stopped; the dbwatch engine runs $CYCLES cycles over the same rules and values"
side_by_side --cycles "$CYCLES" >"$WORK/dbwatch.txt"
get() { awk -F= -v k="$1" '$1 == k { print $2 }' "$WORK/dbwatch.txt"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2f×" : "-"), a / b }'; }
dw_p50=$(get cycle_ms_p50) dw_p90=$(get cycle_ms_p90) dw_cpu=$(get cpu_ms_per_cycle)
dw_rss=$(get rss_kb) dw_hwm=$(get hwm_kb)
dw_cpu_pct=$(awk -v c="$dw_cpu" 'BEGIN { printf "%.1f", 100 * c / 15000 }')

cat <<REPORT
500 rules over 100 000 series, every 15 s; Prometheus measured over $samples evaluations, dbwatch over $CYCLES cycles
| figure | Prometheus | dbwatch | dbwatch / Prometheus | goal |
|---|---|---|---|---|
| evaluation per cycle, median | ${prom_p50} ms | ${dw_p50} ms | $(ratio "$dw_p50" "$prom_p50") | ≤ 0.33× |
| evaluation per cycle, p90 | ${prom_p90} ms | ${dw_p90} ms | $(ratio "$dw_p90" "$prom_p90") | |
| CPU, % of one core | ${prom_cpu} % (whole process: scrape, TSDB, rules) | ${dw_cpu_pct} % (${dw_cpu} ms of CPU per cycle) | $(ratio "$dw_cpu_pct" "$prom_cpu") | |
| RSS at the end (peak) | $((prom_rss / 1024)) MB ($((prom_hwm / 1024)) MB) | $((dw_rss / 1024)) MB ($((dw_hwm / 1024)) MB) | $(ratio "$dw_rss" "$prom_rss") | ≤ 0.33× |
| alerts pending or firing | $prom_alerts | $(get alerts) | | equal |
Prometheus: scrape of the exposition ${prom_scrape_ms} ms, Go heap in use $(awk -v b="$prom_heap" 'BEGIN { printf "%d", b / 1048576 }') MB, rule evaluation failures $prom_failures, missed iterations $prom_missed. dbwatch history: $(get series) series, $(get points) points.
REPORT
