# Shared by deploy/local/components/cassandra.sh and the small tools beside this file (node, nodetool, cql).
# Sourced, never run. Needs FLEET_ROOT, FLEET_DIR, FLEET_LOG_DIR and deploy/local/lib.sh's helpers.
#
# Layout: jars in $FLEET_DIR/cassandra/lib-<version>/ (from Maven Central), cqlsh in $FLEET_DIR/cassandra/venv/,
# node N (1 or 2) in $FLEET_DIR/cassandra/nodeN/ (conf, data, commitlog, hints, saved_caches, pid file),
# its logs in $FLEET_LOG_DIR/cassandra-nodeN/ (system.log from logback, stdout.log from the JVM).
# Node N listens on 127.0.0.N: CQL 19042, storage 17000, JMX (local only, 127.0.0.1) 17N99.

CASS_VERSION=5.0.9
CASS_SRC=$FLEET_ROOT/deploy/local/cassandra
CASS_DIR=$FLEET_DIR/cassandra
CASS_LIB=$CASS_DIR/lib-$CASS_VERSION
CASS_VENV=$CASS_DIR/venv
CASS_CQLSH_VERSION=6.2.2
CASS_NODES=(1 2)
CASS_CQL_PORT=19042
CASS_HEAP=${DBWATCH_CASSANDRA_HEAP:-512M}
# Client-to-node TLS on the CQL port, beside plaintext (client_encryption_options.optional): a test CA, one node
# certificate for both nodes (IP SANs 127.0.0.1 and 127.0.0.2, DNS localhost), a client certificate the nodes
# require from TLS clients, and an unrelated CA for tests that must see verification fail.
CASS_TLS_DIR=$CASS_DIR/tls
CASS_TLS_PASSWORD=dbwatch-local

cass_addr() { printf '127.0.0.%s' "$1"; }
cass_jmx_port() { printf '17%s99' "$1"; }
cass_node_dir() { printf '%s/node%s' "$CASS_DIR" "$1"; }
cass_log_dir() { printf '%s/cassandra-node%s' "$FLEET_LOG_DIR" "$1"; }
cass_pidfile() { printf '%s/node%s/cassandra.pid' "$CASS_DIR" "$1"; }

cass_check_node() {
  [[ "$1" == 1 || "$1" == 2 ]] || die "cassandra: no node '$1' (nodes are 1 and 2)"
}

# Java major version of the binary $1, e.g. 17.
cass_java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | sed 's/^1\.//'
}

# Prints the path of a Java 17 (or 11) runtime: Cassandra 5.0 runs on those two only.
cass_java() {
  if [[ -n "${CASS_JAVA_BIN:-}" ]]; then printf '%s' "$CASS_JAVA_BIN"; return 0; fi
  local candidate major
  for candidate in "${DBWATCH_CASSANDRA_JAVA:-}" /usr/lib/jvm/java-17-openjdk-*/bin/java "$(command -v java || true)" \
                   /usr/lib/jvm/java-11-openjdk-*/bin/java; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    major=$(cass_java_major "$candidate")
    if [[ "$major" == 17 || "$major" == 11 ]]; then CASS_JAVA_BIN=$candidate; printf '%s' "$candidate"; return 0; fi
  done
  return 1
}

cass_installed() {
  [[ -f "$CASS_LIB/.complete" && -x "$CASS_VENV/bin/cqlsh" && -f "$CASS_VENV/.cqlsh-$CASS_CQLSH_VERSION" ]] && cass_java >/dev/null
}

# Java 17 module flags, as Cassandra's own conf/jvm17-server.options has them.
CASS_JPMS_OPTS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens java.base/java.math=ALL-UNNAMED
  --add-opens java.base/java.net=ALL-UNNAMED
)

# cass_tls_files: creates $CASS_TLS_DIR once (PEM files for clients, PKCS12 key and trust stores for the nodes).
# Built in a temporary folder and renamed, so an interrupted run leaves nothing half made.
cass_tls_files() {
  [[ -f "$CASS_TLS_DIR/.complete" ]] && return 0
  command -v openssl >/dev/null || apt_install openssl
  local java keytool tmp=$CASS_TLS_DIR.partial
  java=$(cass_java) || die "cassandra: no Java 17 runtime for keytool"
  keytool=$(dirname "$(readlink -f "$java")")/keytool
  [[ -x "$keytool" ]] || die "cassandra: no keytool beside $java"
  log "cassandra: test CA, node and client certificates in $CASS_TLS_DIR"
  rm -rf "$tmp"; mkdir -p "$tmp"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=dbwatch-cassandra-test-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=dbwatch-unrelated-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$tmp/other-ca-key.pem" -out "$tmp/other-ca.pem" &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=dbwatch-local-cassandra \
      -keyout "$tmp/node-key.pem" -out "$tmp/node.csr" &&
    printf 'subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$tmp/node.ext" &&
    openssl x509 -req -in "$tmp/node.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial \
      -days 3650 -extfile "$tmp/node.ext" -out "$tmp/node.pem" &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=dbwatch -keyout "$tmp/client-key.pem" -out "$tmp/client.csr" &&
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$tmp/client.ext" &&
    openssl x509 -req -in "$tmp/client.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial \
      -days 3650 -extfile "$tmp/client.ext" -out "$tmp/client.pem" &&
    openssl pkcs12 -export -name node -inkey "$tmp/node-key.pem" -in "$tmp/node.pem" -certfile "$tmp/ca.pem" \
      -passout "pass:$CASS_TLS_PASSWORD" -out "$tmp/keystore.p12" &&
    "$keytool" -importcert -noprompt -alias dbwatch-test-ca -file "$tmp/ca.pem" -storetype PKCS12 \
      -keystore "$tmp/truststore.p12" -storepass "$CASS_TLS_PASSWORD"
  } >"$FLEET_LOG_DIR/cassandra-tls.log" 2>&1 || { tail -n 20 "$FLEET_LOG_DIR/cassandra-tls.log" >&2; die "cassandra: could not create the TLS files"; }
  rm -f "$tmp"/*.csr "$tmp"/*.ext "$tmp"/*.srl
  chmod 600 "$tmp"/*-key.pem "$tmp"/*.p12
  touch "$tmp/.complete"
  rm -rf "$CASS_TLS_DIR"; mv "$tmp" "$CASS_TLS_DIR"
}

# cass_render_conf N: writes nodeN/conf/cassandra.yaml from the template.
cass_render_conf() {
  local n=$1 dir; dir=$(cass_node_dir "$n")
  mkdir -p "$dir/conf" "$dir/data" "$dir/commitlog" "$dir/saved_caches" "$dir/hints" "$dir/cdc_raw" "$dir/tmp" \
           "$(cass_log_dir "$n")"
  cass_tls_files
  sed -e "s|@NODE_ADDR@|$(cass_addr "$n")|g" -e "s|@NODE_DIR@|$dir|g" \
      -e "s|@TLS_DIR@|$CASS_TLS_DIR|g" -e "s|@TLS_PASSWORD@|$CASS_TLS_PASSWORD|g" \
    "$CASS_SRC/cassandra.yaml.tmpl" > "$dir/conf/cassandra.yaml.new"
  mv "$dir/conf/cassandra.yaml.new" "$dir/conf/cassandra.yaml"
}

# True when node N's pid file names a live CassandraDaemon (not a recycled pid).
cass_running() {
  local pidfile; pidfile=$(cass_pidfile "$1")
  pid_alive "$pidfile" && grep -q 'CassandraDaemon' "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null
}

# cass_start N: starts node N in the background unless it runs already. Does not wait.
cass_start() {
  local n=$1; cass_check_node "$n"
  cass_running "$n" && return 0
  cass_installed || die "cassandra is not installed: run deploy/local/fleet up cassandra"
  local java dir logdir jamm
  java=$(cass_java); dir=$(cass_node_dir "$n"); logdir=$(cass_log_dir "$n")
  cass_render_conf "$n"
  local jamm_jars=("$CASS_LIB"/jamm-*.jar); jamm=${jamm_jars[0]}
  local opts=(
    # conf/jvm-server.options (less -XX:+AlwaysPreTouch, which would make each node's whole heap resident at once)
    -ea -da:net.openhft... -XX:+UseThreadPriorities -XX:+HeapDumpOnOutOfMemoryError "-XX:HeapDumpPath=$dir"
    -Xss256k -XX:+UseTLAB -XX:+ResizeTLAB -XX:+UseNUMA -XX:+PerfDisableSharedMem -Djava.net.preferIPv4Stack=true
    # conf/jvm17-server.options (G1HeapRegionSize scaled down for a small heap)
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=4m
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
    "${CASS_JPMS_OPTS[@]}"
    -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    # what conf/cassandra-env.sh adds
    "-Xms$CASS_HEAP" "-Xmx$CASS_HEAP" -XX:+CrashOnOutOfMemoryError "-javaagent:$jamm"
    "-Dcassandra.jmx.local.port=$(cass_jmx_port "$n")"
    "-Dcassandra.config=file://$dir/conf/cassandra.yaml"
    "-Dcassandra.storagedir=$dir" "-Dcassandra.logdir=$logdir"
    "-Dlogback.configurationFile=file://$CASS_SRC/logback.xml"
    "-Djava.io.tmpdir=$dir/tmp" "-Djna.tmpdir=$dir/tmp"
    -Dcassandra-foreground=yes
    # a local cluster on one machine: no need to wait for gossip to settle
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=5000
  )
  log "starting cassandra node$n ($(cass_addr "$n"):$CASS_CQL_PORT, JMX $(cass_jmx_port "$n"))"
  printf '\n==== %s starting node%s\n' "$(date -Is)" "$n" >> "$logdir/stdout.log"
  # -cp: the node's conf folder first, as bin/cassandra does, then every jar.
  (cd "$dir" && exec setsid nohup "$java" "${opts[@]}" -cp "$dir/conf:$CASS_LIB/*" \
     org.apache.cassandra.service.CassandraDaemon >> "$logdir/stdout.log" 2>&1 < /dev/null) &
  echo $! > "$(cass_pidfile "$n")"
}

# cass_cql N CQLSH_ARGS...: runs cqlsh against node N.
cass_cql() {
  local n=$1; shift
  "$CASS_VENV/bin/cqlsh" --connect-timeout=5 --request-timeout=30 "$(cass_addr "$n")" "$CASS_CQL_PORT" "$@"
}

# True when node N answers a CQL query (output captured first: `| grep -q` would break the pipe under pipefail).
cass_cql_ready() {
  local out
  out=$(cass_cql "$1" --connect-timeout=2 -e 'SELECT release_version FROM system.local' 2>/dev/null) || return 1
  [[ "$out" == *"$CASS_VERSION"* ]]
}

cass_log_tail() {
  local n=$1 logdir; logdir=$(cass_log_dir "$n")
  printf '[fleet] ---- tail of %s/system.log\n' "$logdir" >&2
  tail -n 40 "$logdir/system.log" >&2 2>/dev/null || true
  printf '[fleet] ---- tail of %s/stdout.log\n' "$logdir" >&2
  tail -n 20 "$logdir/stdout.log" >&2 2>/dev/null || true
}

# cass_wait N TIMEOUT: polls until node N answers a CQL query; dies with its log tail when it exits or times out.
cass_wait() {
  local n=$1 timeout=$2
  local deadline=$(( $(date +%s) + timeout ))
  until cass_cql_ready "$n"; do
    if ! cass_running "$n"; then cass_log_tail "$n"; die "cassandra node$n exited during start-up"; fi
    if (( $(date +%s) >= deadline )); then cass_log_tail "$n"; die "cassandra node$n: no CQL answer after ${timeout}s"; fi
    sleep 0.5
  done
}

# cass_stop N: SIGTERM (Cassandra's shutdown hook flushes and closes cleanly), SIGKILL after 30 s.
cass_stop() {
  cass_check_node "$1"
  cass_running "$1" || { rm -f "$(cass_pidfile "$1")"; return 0; }
  stop_pidfile "cassandra node$1" "$(cass_pidfile "$1")"
}

# cass_nodetool N ARGS...: Cassandra's own nodetool, from the same jars, over node N's JMX port.
cass_nodetool() {
  local n=$1; shift; cass_check_node "$n"
  cass_java >/dev/null || die "no Java 17 for nodetool"; local java=$CASS_JAVA_BIN
  "$java" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+PerfDisableSharedMem "${CASS_JPMS_OPTS[@]}" \
    "-Dlogback.configurationFile=file://$CASS_SRC/logback-tools.xml" "-Dcassandra.storagedir=$(cass_node_dir "$n")" \
    -cp "$CASS_LIB/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$(cass_jmx_port "$n")" "$@"
}

# cass_both_un [N]: true when node N (default 1) sees both nodes Up/Normal.
cass_both_un() {
  local out
  out=$(cass_nodetool "${1:-1}" status 2>/dev/null) || return 1
  [[ $(grep -c '^UN ' <<<"$out") == 2 ]]
}

# cass_wait_both_un TIMEOUT: when both nodes run, polls until each sees the other Up/Normal.
cass_wait_both_un() {
  local timeout=$1 n
  local deadline=$(( $(date +%s) + timeout ))
  cass_running 1 && cass_running 2 || return 0
  for n in 1 2; do
    until cass_both_un "$n"; do
      if (( $(date +%s) >= deadline )); then
        cass_nodetool "$n" status >&2 || true
        cass_log_tail 1; cass_log_tail 2
        die "cassandra: node$n does not see both nodes Up/Normal after ${timeout}s"
      fi
      sleep 1
    done
  done
}
