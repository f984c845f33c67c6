# Shared helpers for the local fleet scripts. Sourced by deploy/local/fleet, never run.
# Every component script under components/ may use these and nothing else from the caller.

log() { printf '[fleet] %s\n' "$*" >&2; }
die() { printf '[fleet] error: %s\n' "$*" >&2; exit 1; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...
# Polls COMMAND every 0.5 s until it succeeds; dies naming DESCRIPTION when the deadline passes.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then
      die "$what not ready after ${timeout}s"
    fi
    sleep 0.5
  done
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# apt_install PACKAGE...: installs the Debian packages that are missing, updating the lists once per run.
apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  (( ${#missing[@]} == 0 )) && return 0
  if [[ ! -f "$FLEET_DIR/.apt-updated" ]]; then
    log "apt-get update"
    apt-get update -qq >&2
    touch "$FLEET_DIR/.apt-updated"
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# pid_alive PIDFILE: true when the process named in PIDFILE runs. A zombie (killed, not yet reaped by
# PID 1, which can take a while on these machines) counts as dead.
pid_alive() {
  [[ -f "$1" ]] || return 1
  local pid stat state started boot written
  pid=$(cat "$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # A stale file's number may since have gone to a thread of another process (kill -0 and /proc/PID accept a
  # thread id, and a signal to it reaches that whole process) or to a later process: neither is ours.
  [[ $(awk '/^Tgid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == "$pid" ]] || return 1
  stat=$(<"/proc/$pid/stat") || return 1
  stat=${stat##*) }
  read -r state started <<<"$(awk '{ print $1, $20 }' <<<"$stat")"
  [[ "$state" != Z ]] || return 1
  boot=$(awk '/^btime/ { print $2 }' /proc/stat)
  written=$(stat -c %Y "$1")
  (( boot + started / $(getconf CLK_TCK) <= written + 1 ))
}

# stop_pidfile NAME PIDFILE: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pidfile() {
  local name=$1 pidfile=$2
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# status_line NAME ADDRESS CHECK...: prints one status line, returns the check's result.
status_line() {
  local name=$1 addr=$2; shift 2
  if "$@" >/dev/null 2>&1; then printf '%-22s %-24s up\n' "$name" "$addr"; return 0; fi
  printf '%-22s %-24s DOWN\n' "$name" "$addr"; return 1
}
