# Notification receivers for the notifier's tests. Sourced by deploy/local/fleet.
#
#   127.0.0.1:18790   HTTP stand-ins for Slack, PagerDuty Events v2, Alertmanager webhooks, Discord, Telegram,
#                     Webex, Opsgenie, Pushover, VictorOps and Teams that validate every payload and answer what a
#                     test scripts (deploy/local/receivers/http_receivers.py; notify/tests/receivers.rs runs its
#                     own copy on a free port, so a fleet started before an endpoint was added still serves it)
#   127.0.0.1:18725   SMTP with STARTTLS required, AUTH over TLS        } aiosmtpd (deploy/local/receivers/
#   127.0.0.1:18765   SMTP over implicit TLS, AUTH                       }  smtp_server.py), messages stored as JSON
#
#   $FLEET_DIR/receivers/venv/        python venv with aiosmtpd
#   $FLEET_DIR/receivers/tls/         a test CA (ca.pem) and the server's certificate for localhost/127.0.0.1
#   $FLEET_DIR/receivers/mail/        one JSON file per accepted message
#   $FLEET_DIR/receivers/*.pid        pid files; logs: $FLEET_LOG_DIR/receivers-{http,smtp}.log

RECEIVERS_PACKAGES=('aiosmtpd==1.4.6')
RECEIVERS_DIR=$FLEET_DIR/receivers
RECEIVERS_SRC=$FLEET_ROOT/deploy/local/receivers
RECEIVERS_PY=$RECEIVERS_DIR/venv/bin/python
RECEIVERS_HTTP_PORT=18790
RECEIVERS_SMTP_PORT=18725
RECEIVERS_SMTPS_PORT=18765
RECEIVERS_SMTP_USER=dbwatch
RECEIVERS_SMTP_PASSWORD=dbwatch-smtp

receivers_install() {
  mkdir -p "$RECEIVERS_DIR/tls" "$RECEIVERS_DIR/mail"
  if [[ ! -x "$RECEIVERS_PY" ]] || ! "$RECEIVERS_PY" -c 'import aiosmtpd' >/dev/null 2>&1; then
    log "receivers: python venv with ${RECEIVERS_PACKAGES[*]}"
    rm -rf "$RECEIVERS_DIR/venv"
    python3 -m venv "$RECEIVERS_DIR/venv" >&2 || { apt_install python3-venv; /usr/bin/python3 -m venv "$RECEIVERS_DIR/venv" >&2; }
    "$RECEIVERS_DIR/venv/bin/pip" install -q --disable-pip-version-check "${RECEIVERS_PACKAGES[@]}" >&2 \
      || die "receivers: pip install ${RECEIVERS_PACKAGES[*]} failed"
  fi
  if [[ ! -s "$RECEIVERS_DIR/tls/ca.pem" ]]; then
    command -v openssl >/dev/null || apt_install openssl
    # A CA and a server certificate it signs: rustls refuses a CA certificate used as the server's own.
    log "receivers: test CA and server certificate for localhost"
    local tls=$RECEIVERS_DIR/tls
    {
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=dbwatch-test-ca \
        -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" &&
      openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$tls/key.pem" -out "$tls/server.csr" &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext" &&
      openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
        -days 3650 -extfile "$tls/server.ext" -out "$tls/cert.pem"
    } >/dev/null 2>&1 || die "receivers: openssl could not create the certificates"
  fi
}

_receivers_http_answers() { curl -fsS -m 2 "http://127.0.0.1:$RECEIVERS_HTTP_PORT/_health" >/dev/null 2>&1; }
_receivers_smtp_answers() { port_open 127.0.0.1 "$RECEIVERS_SMTP_PORT" && port_open 127.0.0.1 "$RECEIVERS_SMTPS_PORT"; }

# _receivers_start NAME PIDFILE CHECK COMMAND...: starts COMMAND unless running, waits for CHECK.
_receivers_start() {
  local name=$1 pidfile=$2 check=$3; shift 3
  local logfile=$FLEET_LOG_DIR/receivers-$name.log
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    "$check" && die "receivers: the $name port is taken by another process"
    log "receivers: starting $name"
    setsid nohup "$@" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
  fi
  ( wait_for "receivers $name" 30 "$check" ) || { tail -n 30 "$logfile" >&2; die "receivers: $name not answering"; }
}

receivers_up() {
  mkdir -p "$RECEIVERS_DIR/mail" "$FLEET_LOG_DIR"
  _receivers_start http "$RECEIVERS_DIR/http.pid" _receivers_http_answers \
    "$RECEIVERS_PY" "$RECEIVERS_SRC/http_receivers.py" --port "$RECEIVERS_HTTP_PORT"
  _receivers_start smtp "$RECEIVERS_DIR/smtp.pid" _receivers_smtp_answers \
    "$RECEIVERS_PY" "$RECEIVERS_SRC/smtp_server.py" --starttls-port "$RECEIVERS_SMTP_PORT" \
    --tls-port "$RECEIVERS_SMTPS_PORT" --cert "$RECEIVERS_DIR/tls/cert.pem" --key "$RECEIVERS_DIR/tls/key.pem" \
    --maildir "$RECEIVERS_DIR/mail" --user "$RECEIVERS_SMTP_USER" --password "$RECEIVERS_SMTP_PASSWORD"
}

receivers_down() {
  stop_pidfile receivers-smtp "$RECEIVERS_DIR/smtp.pid"
  stop_pidfile receivers-http "$RECEIVERS_DIR/http.pid"
}

receivers_status() {
  local rc=0
  status_line receivers-http "127.0.0.1:$RECEIVERS_HTTP_PORT" _receivers_http_answers || rc=1
  status_line receivers-smtp "127.0.0.1:$RECEIVERS_SMTP_PORT,$RECEIVERS_SMTPS_PORT" _receivers_smtp_answers || rc=1
  return "$rc"
}

receivers_env() {
  echo "export DBWATCH_RECEIVERS_URL=http://127.0.0.1:$RECEIVERS_HTTP_PORT"
  echo "export DBWATCH_SMTP_STARTTLS=127.0.0.1:$RECEIVERS_SMTP_PORT"
  echo "export DBWATCH_SMTP_TLS=127.0.0.1:$RECEIVERS_SMTPS_PORT"
  echo "export DBWATCH_SMTP_CA=$RECEIVERS_DIR/tls/ca.pem"
  echo "export DBWATCH_SMTP_MAILDIR=$RECEIVERS_DIR/mail"
  echo "export DBWATCH_SMTP_USER=$RECEIVERS_SMTP_USER"
  echo "export DBWATCH_SMTP_PASSWORD=$RECEIVERS_SMTP_PASSWORD"
}
