# moto server (DynamoDB + CloudWatch, and every other AWS API moto mocks: the notifier's test publishes to SNS and
# reads the message back from SQS, both in moto's core install) on 127.0.0.1:15000. Sourced by deploy/local/fleet.
#
#   $FLEET_DIR/moto/venv/          python venv: moto (dynamodb, cloudwatch) + flask + boto3
#   $FLEET_DIR/moto/moto.pid       pid file; log: $FLEET_LOG_DIR/moto.log
#
# Credentials are fixed fake ones (testing/testing, us-east-1); moto accepts any signature.
# moto keeps all state in memory: `down` loses items and metric data. `up` (re)creates the seed's DynamoDB tables
# UserSessions, ShoppingCart, Notifications (deploy/local/moto/seed.py, idempotent), so tables always exist after `up`.

# moto's `server` extra means every service's dependencies (cfn-lint, ...): 3-4 min of pip. The server needs only
# flask + flask-cors next to the extras of the services used; moto_server loads service backends on first request.
MOTO_PACKAGES=('moto[dynamodb,cloudwatch]==5.2.5' 'flask==3.1.3' 'flask-cors==6.0.5' 'boto3==1.44.8')
MOTO_DIR=$FLEET_DIR/moto
MOTO_SRC=$FLEET_ROOT/deploy/local/moto
MOTO_PY=$MOTO_DIR/venv/bin/python
MOTO_PIDFILE=$MOTO_DIR/moto.pid
MOTO_LOG=$FLEET_LOG_DIR/moto.log
MOTO_PORT=15000
MOTO_URL=http://127.0.0.1:$MOTO_PORT

moto_install() {
  mkdir -p "$MOTO_DIR"
  if [[ ! -x "$MOTO_DIR/venv/bin/moto_server" ]] || ! "$MOTO_PY" -c 'import moto, boto3, flask' >/dev/null 2>&1; then
    log "moto: python venv with ${MOTO_PACKAGES[*]}"
    rm -rf "$MOTO_DIR/venv"
    python3 -m venv "$MOTO_DIR/venv" >&2 || { apt_install python3-venv; /usr/bin/python3 -m venv "$MOTO_DIR/venv" >&2; }
    "$MOTO_DIR/venv/bin/pip" install -q --disable-pip-version-check "${MOTO_PACKAGES[@]}" >&2 \
      || die "moto: pip install ${MOTO_PACKAGES[*]} failed"
  fi
}

# _moto_py ARGS...: the venv's python with the fleet's fake credentials.
_moto_py() {
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    "$MOTO_PY" "$@"
}

# _moto_answers: a real DynamoDB ListTables call.
_moto_answers() {
  _moto_py - "$MOTO_URL" <<'EOF' >/dev/null 2>&1
import sys, boto3
from botocore.config import Config
cfg = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
boto3.client("dynamodb", endpoint_url=sys.argv[1], config=cfg).list_tables(Limit=1)
EOF
}

_moto_answers_or_gone() { _moto_answers || ! kill -0 "$1" 2>/dev/null; }

_moto_fail() {
  log "last lines of $MOTO_LOG:"
  tail -n 40 "$MOTO_LOG" >&2 2>/dev/null || true
  die "moto: $*"
}

moto_up() {
  mkdir -p "$MOTO_DIR" "$FLEET_LOG_DIR"
  if pid_alive "$MOTO_PIDFILE"; then
    ( wait_for "moto" 60 _moto_answers ) || _moto_fail "running but not answering"
  else
    rm -f "$MOTO_PIDFILE"
    port_open 127.0.0.1 "$MOTO_PORT" && die "moto: port $MOTO_PORT is taken by another process"
    log "moto: starting moto (with the CBOR front, see moto_cbor_server.py) on 127.0.0.1:$MOTO_PORT"
    # Current AWS SDKs speak Smithy RPC v2 CBOR to CloudWatch, which moto 5.2 does not parse yet; the front
    # translates it to the JSON protocol moto understands and leaves every other request untouched.
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
      setsid nohup "$MOTO_PY" "$MOTO_SRC/moto_cbor_server.py" -H 127.0.0.1 -p "$MOTO_PORT" \
      </dev/null >>"$MOTO_LOG" 2>&1 &
    local pid=$!
    echo "$pid" >"$MOTO_PIDFILE"
    ( wait_for "moto" 60 _moto_answers_or_gone "$pid" ) || true
    kill -0 "$pid" 2>/dev/null || { rm -f "$MOTO_PIDFILE"; _moto_fail "exited during start"; }
    _moto_answers || _moto_fail "not answering after 60s"
  fi
  _moto_py "$MOTO_SRC/seed.py" "$MOTO_URL" >&2 || _moto_fail "seeding the DynamoDB tables failed"
}

moto_down() { stop_pidfile moto "$MOTO_PIDFILE"; }

moto_status() { status_line moto "127.0.0.1:$MOTO_PORT" _moto_answers; }

moto_env() {
  echo "export DBWATCH_AWS_ENDPOINT_URL=$MOTO_URL"
  echo "export AWS_ACCESS_KEY_ID=testing"
  echo "export AWS_SECRET_ACCESS_KEY=testing"
  echo "export AWS_REGION=us-east-1"
  echo "export AWS_DEFAULT_REGION=us-east-1"
}
