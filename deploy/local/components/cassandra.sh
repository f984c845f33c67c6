# Apache Cassandra 5.0, two nodes on 127.0.0.1 and 127.0.0.2 (CQL 19042 plaintext and TLS, storage 17000,
# JMX 17199/17299).
# No tarball: the server jars come from Maven Central (deploy/local/cassandra/pom.xml) and CassandraDaemon is started
# directly on Java 17 with the JVM options of Cassandra's own launcher. cqlsh comes from PyPI, into a venv.
# Helpers and layout: deploy/local/cassandra/common.sh. Per-node control for tests: deploy/local/cassandra/node.

# shellcheck source=../cassandra/common.sh
source "$FLEET_ROOT/deploy/local/cassandra/common.sh"

cassandra_install() {
  cass_installed && return 0
  cass_java >/dev/null || apt_install openjdk-17-jre-headless
  cass_java >/dev/null || die "cassandra: no Java 17 runtime found"
  command -v mvn >/dev/null || apt_install maven
  mkdir -p "$CASS_DIR"
  if [[ ! -f "$CASS_LIB/.complete" ]]; then
    log "cassandra: fetching cassandra-all $CASS_VERSION and its dependencies from Maven Central"
    local tmp=$CASS_LIB.partial
    rm -rf "$tmp"
    local start=$SECONDS
    local mvnlog=$FLEET_LOG_DIR/cassandra-mvn.log
    if ! mvn -B -Dstyle.color=never -f "$CASS_SRC/pom.xml" "-Dcassandra.version=$CASS_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$tmp" > "$mvnlog" 2>&1; then
      tail -n 30 "$mvnlog" >&2
      die "cassandra: mvn dependency:copy-dependencies failed (log: $mvnlog)"
    fi
    [[ -f "$tmp/cassandra-all-$CASS_VERSION.jar" ]] || die "cassandra: cassandra-all-$CASS_VERSION.jar missing after mvn"
    touch "$tmp/.complete"
    rm -rf "$CASS_LIB"; mv "$tmp" "$CASS_LIB"
    log "cassandra: $(ls "$CASS_LIB" | wc -l) jars, $(du -sh "$CASS_LIB" | cut -f1), in $(( SECONDS - start ))s"
  fi
  if [[ ! -f "$CASS_VENV/.cqlsh-$CASS_CQLSH_VERSION" ]]; then
    log "cassandra: installing cqlsh $CASS_CQLSH_VERSION from PyPI into $CASS_VENV"
    [[ -x "$CASS_VENV/bin/pip" ]] || python3 -m venv "$CASS_VENV" || { apt_install python3-venv; python3 -m venv "$CASS_VENV"; }
    "$CASS_VENV/bin/pip" install -q --disable-pip-version-check "cqlsh==$CASS_CQLSH_VERSION" >&2
    touch "$CASS_VENV/.cqlsh-$CASS_CQLSH_VERSION"
  fi
}

cassandra_up() {
  local n started=0
  # node1 is the seed: it comes first, alone.
  for n in "${CASS_NODES[@]}"; do
    if ! cass_running "$n"; then
      local t0=$SECONDS
      cass_start "$n"; started=1
      cass_wait "$n" 240
      log "cassandra: node$n answers CQL after $(( SECONDS - t0 ))s"
    else
      cass_wait "$n" 240
    fi
  done
  cass_wait_both_un 120
  if [[ ! -f "$CASS_DIR/.schema-applied" ]]; then
    log "cassandra: applying deploy/local/cassandra/schema.cql"
    cass_cql 1 -f "$CASS_SRC/schema.cql" >/dev/null || die "cassandra: schema.cql failed"
    touch "$CASS_DIR/.schema-applied"
  fi
  (( started == 0 )) || log "cassandra: 2 nodes up ($CASS_VERSION)"
}

cassandra_down() {
  local i
  for (( i=${#CASS_NODES[@]}-1; i>=0; i-- )); do cass_stop "${CASS_NODES[$i]}"; done
}

cassandra_status() {
  local n rc=0
  for n in "${CASS_NODES[@]}"; do
    status_line "cassandra node$n" "$(cass_addr "$n"):$CASS_CQL_PORT" \
      eval "cass_running $n && cass_cql_ready $n" || rc=1
  done
  return "$rc"
}

cassandra_env() {
  local tools=$FLEET_ROOT/deploy/local/cassandra
  echo "export DBWATCH_CASSANDRA_CONTACT_POINTS=127.0.0.1:$CASS_CQL_PORT,127.0.0.2:$CASS_CQL_PORT"
  echo "export DBWATCH_CASSANDRA_VERSION=$CASS_VERSION"
  echo "export DBWATCH_CASSANDRA_DATACENTER=datacenter1"
  echo "export DBWATCH_CASSANDRA_JMX_PORTS=$(cass_jmx_port 1),$(cass_jmx_port 2)"
  echo "export DBWATCH_CASSANDRA_NODE_CTL=$tools/node"
  echo "export DBWATCH_CASSANDRA_NODETOOL=$tools/nodetool"
  echo "export DBWATCH_CASSANDRA_CQLSH=$tools/cql"
  # TLS on the same port (see deploy/local/cassandra/cassandra.yaml.tmpl): the CA, a client certificate the
  # nodes require from TLS clients, and a CA that signed nothing there.
  echo "export DBWATCH_CASSANDRA_CA_FILE=$CASS_TLS_DIR/ca.pem"
  echo "export DBWATCH_CASSANDRA_CLIENT_CERT_FILE=$CASS_TLS_DIR/client.pem"
  echo "export DBWATCH_CASSANDRA_CLIENT_KEY_FILE=$CASS_TLS_DIR/client-key.pem"
  echo "export DBWATCH_CASSANDRA_OTHER_CA_FILE=$CASS_TLS_DIR/other-ca.pem"
}
