# FerretDB 1.24 (MongoDB wire protocol) on 127.0.0.1:27117, SQLite backend. Sourced by deploy/local/fleet.
#
#   $FLEET_DIR/ferretdb/bin/ferretdb   built from the module source (go mod download + go build; default GOMODCACHE)
#   $FLEET_DIR/ferretdb/data/          SQLite backend: one <database>.sqlite file per MongoDB database
#   $FLEET_DIR/ferretdb/state/         FerretDB's state.json (instance UUID, telemetry choice)
#   $FLEET_DIR/ferretdb/venv/          python venv with pymongo: the readiness check and the seed script
#   $FLEET_DIR/ferretdb/ferretdb.pid   pid file; log: $FLEET_LOG_DIR/ferretdb.log
#
# No authentication (FerretDB 1.x with the SQLite handler accepts any client). The debug HTTP handler
# (Prometheus text at /debug/metrics, also /debug/livez, /debug/readyz) listens on 127.0.0.1:18088.
# `up` seeds database `catalog`, collection `products` (deploy/local/ferretdb/seed.py, idempotent).

FERRETDB_VERSION=v1.24.2
FERRETDB_PYMONGO='pymongo==4.20.0'
FERRETDB_DIR=$FLEET_DIR/ferretdb
FERRETDB_SRC=$FLEET_ROOT/deploy/local/ferretdb
FERRETDB_BIN=$FERRETDB_DIR/bin/ferretdb
FERRETDB_PY=$FERRETDB_DIR/venv/bin/python
FERRETDB_PIDFILE=$FERRETDB_DIR/ferretdb.pid
FERRETDB_LOG=$FLEET_LOG_DIR/ferretdb.log
FERRETDB_ADDR=127.0.0.1:27117
FERRETDB_DEBUG_ADDR=127.0.0.1:18088
FERRETDB_URL=mongodb://$FERRETDB_ADDR/

# _ferretdb_go ARGS...: go from PATH or /usr/local/go; never downloads another toolchain.
_ferretdb_go() {
  local -x GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
  if command -v go >/dev/null 2>&1; then go "$@"; return; fi
  [[ -x /usr/local/go/bin/go ]] || die "ferretdb: no Go toolchain (go not on PATH, no /usr/local/go/bin/go)"
  /usr/local/go/bin/go "$@"
}

# _ferretdb_build: FerretDB's module source from the Go module proxy, built with build/version/version.txt filled in.
# A plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@VERSION` builds, but the binary panics at start
# ("Invalid build/version/version.txt file content"): that generated file is not part of the module zip.
_ferretdb_build() {
  local dir src=$FERRETDB_DIR/src
  log "ferretdb: building FerretDB $FERRETDB_VERSION from the Go module proxy (a few minutes from a clean module cache)"
  dir=$(_ferretdb_go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p') || true
  [[ -n "$dir" && -f "$dir/go.mod" ]] || die "ferretdb: go mod download github.com/FerretDB/FerretDB@$FERRETDB_VERSION failed"
  rm -rf "$src"; mkdir -p "$src"
  cp -R "$dir/." "$src/"; chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  echo "dbwatch-fleet" >"$src/build/version/package.txt"
  ( cd "$src" && _ferretdb_go build -trimpath -o "$FERRETDB_BIN.tmp" ./cmd/ferretdb ) >&2 \
    || die "ferretdb: go build failed"
  mv -f "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
  rm -rf "$src"
}

ferretdb_install() {
  mkdir -p "$FERRETDB_DIR/bin" "$FERRETDB_DIR/data" "$FERRETDB_DIR/state"
  local have=""
  if [[ -x "$FERRETDB_BIN" ]]; then have=$("$FERRETDB_BIN" --version 2>/dev/null | sed -n 's/^version: //p') || true; fi
  [[ "$have" == "$FERRETDB_VERSION" ]] || _ferretdb_build
  if [[ ! -x "$FERRETDB_PY" ]] || ! "$FERRETDB_PY" -c 'import pymongo' >/dev/null 2>&1; then
    log "ferretdb: python venv with $FERRETDB_PYMONGO"
    rm -rf "$FERRETDB_DIR/venv"
    python3 -m venv "$FERRETDB_DIR/venv" >&2 || { apt_install python3-venv; /usr/bin/python3 -m venv "$FERRETDB_DIR/venv" >&2; }
    "$FERRETDB_DIR/venv/bin/pip" install -q --disable-pip-version-check "$FERRETDB_PYMONGO" >&2 \
      || die "ferretdb: pip install $FERRETDB_PYMONGO failed"
  fi
}

# _ferretdb_answers: a real `ping` and `hello` over the wire protocol.
_ferretdb_answers() {
  "$FERRETDB_PY" - "$FERRETDB_URL" <<'EOF' >/dev/null 2>&1
import sys, pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=2000, connectTimeoutMS=2000)
c.admin.command("ping")
assert c.admin.command("hello")["isWritablePrimary"]
EOF
}

_ferretdb_answers_or_gone() { _ferretdb_answers || ! kill -0 "$1" 2>/dev/null; }

_ferretdb_fail() {
  log "last lines of $FERRETDB_LOG:"
  tail -n 40 "$FERRETDB_LOG" >&2 2>/dev/null || true
  die "ferretdb: $*"
}

ferretdb_up() {
  mkdir -p "$FERRETDB_DIR/data" "$FERRETDB_DIR/state" "$FLEET_LOG_DIR"
  if pid_alive "$FERRETDB_PIDFILE"; then
    ( wait_for "ferretdb" 60 _ferretdb_answers ) || _ferretdb_fail "running but not answering"
  else
    rm -f "$FERRETDB_PIDFILE"
    port_open 127.0.0.1 27117 && die "ferretdb: port 27117 is taken by another process"
    log "ferretdb: starting on $FERRETDB_ADDR (sqlite backend, data in $FERRETDB_DIR/data)"
    setsid nohup "$FERRETDB_BIN" \
      --handler=sqlite --sqlite-url="file:$FERRETDB_DIR/data/" \
      --listen-addr="$FERRETDB_ADDR" --debug-addr="$FERRETDB_DEBUG_ADDR" \
      --state-dir="$FERRETDB_DIR/state" --telemetry=disable --log-level=info \
      </dev/null >>"$FERRETDB_LOG" 2>&1 &
    local pid=$!
    echo "$pid" >"$FERRETDB_PIDFILE"
    ( wait_for "ferretdb" 60 _ferretdb_answers_or_gone "$pid" ) || true
    kill -0 "$pid" 2>/dev/null || { rm -f "$FERRETDB_PIDFILE"; _ferretdb_fail "exited during start"; }
    _ferretdb_answers || _ferretdb_fail "not answering after 60s"
  fi
  "$FERRETDB_PY" "$FERRETDB_SRC/seed.py" "$FERRETDB_URL" >&2 || _ferretdb_fail "seeding catalog.products failed"
}

ferretdb_down() { stop_pidfile ferretdb "$FERRETDB_PIDFILE"; }

ferretdb_status() { status_line ferretdb "$FERRETDB_ADDR" _ferretdb_answers; }

ferretdb_env() {
  echo "export DBWATCH_MONGODB_URL=$FERRETDB_URL"
  echo "export DBWATCH_MONGODB_BACKEND=sqlite"
}
