#!/usr/bin/env bash
# Run a real single-node Apache Kafka (KRaft, broker+controller) without Docker.
#
# The broker jars come from Maven Central (infra/kafka/pom.xml) into
# <repo>/.cache/kafka/<version>/libs, once. Each data dir holds one broker: its
# server.properties, KRaft storage, cluster id, pid file and logs/server.log.
#
# Usage: infra/kafka.sh {fetch|start|stop|status|help} [--port N] [--data-dir D]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"
LOG4J_CONFIG="$SCRIPT_DIR/kafka/log4j2.properties"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_ROOT/.data/kafka}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_CACHE_DIR="$REPO_ROOT/.cache/kafka/$KAFKA_VERSION"
LIBS_DIR="$KAFKA_CACHE_DIR/libs"
LIBS_MARKER="$KAFKA_CACHE_DIR/.complete"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="java"
fi

log() { printf '[kafka.sh] %s\n' "$*"; }
die() { printf '[kafka.sh] error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<EOF
Usage: infra/kafka.sh COMMAND [--port N] [--data-dir DIR]

Run a single-node Apache Kafka $KAFKA_VERSION broker (KRaft, no ZooKeeper, no Docker).

Commands:
  fetch    download the broker jars from Maven Central into
           .cache/kafka/<version>/libs (once; skipped when already complete)
  start    fetch if needed, format storage on first start, start the broker in the
           background and wait until it answers API requests (no-op if running)
  stop     stop the broker (SIGTERM, then SIGKILL after ~20 s)
  status   print running/stopped; exit 0 if running, 3 if stopped
  help     this text

Options (after the command) and environment variables:
  --port N         KAFKA_PORT           PLAINTEXT port on 127.0.0.1 (default 9092);
                                        the KRaft controller listens on N+1
  --data-dir DIR   KAFKA_DATA_DIR       broker state, config, logs (default <repo>/.data/kafka)
                   KAFKA_VERSION        broker version (default 4.4.0, pinned)
                   KAFKA_HEAP_OPTS      JVM heap flags (default "-Xms256m -Xmx512m")
                   KAFKA_START_TIMEOUT  seconds to wait for readiness (default 60)

Files in DIR: server.properties, cluster.id, kafka.pid, logs/server.log,
kraft-combined-logs/ (topic data and KRaft metadata).
EOF
}

# ---------------------------------------------------------------- arguments
COMMAND="${1:-help}"
[[ $# -gt 0 ]] && shift
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) [[ $# -ge 2 ]] || die "--port needs a value"; KAFKA_PORT="$2"; shift 2 ;;
    --port=*) KAFKA_PORT="${1#*=}"; shift ;;
    --data-dir) [[ $# -ge 2 ]] || die "--data-dir needs a value"; KAFKA_DATA_DIR="$2"; shift 2 ;;
    --data-dir=*) KAFKA_DATA_DIR="${1#*=}"; shift ;;
    -h|--help) COMMAND=help; shift ;;
    *) die "unknown argument: $1 (see infra/kafka.sh help)" ;;
  esac
done
if ! [[ "$KAFKA_PORT" =~ ^[0-9]+$ ]] || (( KAFKA_PORT < 1 || KAFKA_PORT > 65534 )); then
  die "invalid port: $KAFKA_PORT"
fi
[[ "$KAFKA_START_TIMEOUT" =~ ^[0-9]+$ ]] || die "invalid KAFKA_START_TIMEOUT: $KAFKA_START_TIMEOUT"
CONTROLLER_PORT=$((KAFKA_PORT + 1))

# absolute, normalised: the broker's command line is matched against this path
DATA_DIR="$(realpath -m -- "$KAFKA_DATA_DIR")"
SERVER_PROPS="$DATA_DIR/server.properties"
PID_FILE="$DATA_DIR/kafka.pid"
LOG_DIR="$DATA_DIR/logs"
SERVER_LOG="$LOG_DIR/server.log"
STDOUT_LOG="$LOG_DIR/kafkaServer.out"
STORAGE_DIR="$DATA_DIR/kraft-combined-logs"
CLUSTER_ID_FILE="$DATA_DIR/cluster.id"

# ---------------------------------------------------------------- fetch
pom_digest() { sha256sum "$POM" | cut -d' ' -f1; }

libs_complete() {
  [[ -f "$LIBS_MARKER" && -d "$LIBS_DIR" ]] && [[ "$(cat "$LIBS_MARKER")" == "$(pom_digest)" ]]
}

cmd_fetch() {
  if libs_complete; then
    log "Kafka $KAFKA_VERSION jars already cached at $LIBS_DIR"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn (Maven) is required to fetch the Kafka jars"
  command -v "$JAVA" >/dev/null 2>&1 || die "java (17+) is required"
  # one fetch at a time (parallel test sessions share the cache and ~/.m2)
  mkdir -p "$KAFKA_CACHE_DIR"
  exec 9>"$KAFKA_CACHE_DIR/.lock"
  flock 9
  if libs_complete; then
    exec 9>&-
    log "Kafka $KAFKA_VERSION jars cached at $LIBS_DIR (fetched by another run)"
    return 0
  fi
  log "downloading Kafka $KAFKA_VERSION jars from Maven Central ..."
  local t0=$SECONDS tmp
  tmp="$(mktemp -d "$KAFKA_CACHE_DIR/libs.tmp.XXXXXX")"
  # -q: Maven prints only errors; the sed drops the bare colour resets Maven 3.8 still emits
  if ! mvn -B -q -Dstyle.color=never -f "$POM" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" </dev/null 2>&1 \
      | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d'; then
    rm -rf "$tmp"
    die "Maven could not fetch the Kafka $KAFKA_VERSION jars"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" && -f "$tmp/kafka-tools-$KAFKA_VERSION.jar" ]] \
    || { rm -rf "$tmp"; die "fetched jars lack kafka_2.13/kafka-tools $KAFKA_VERSION"; }
  chmod 755 "$tmp"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  pom_digest >"$LIBS_MARKER"
  exec 9>&-
  log "cached at $LIBS_DIR ($(find "$LIBS_DIR" -name '*.jar' | wc -l) jars, $((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------- process helpers
classpath() { printf '%s/*' "$LIBS_DIR"; }

# Run a Kafka command-line tool (storage formatter, admin tools) on the cached classpath.
run_tool() {
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$LOG_DIR/tools" \
    -cp "$(classpath)" "$@"
}

# pid of the live broker process for this data dir: the pid file's, else one found in /proc
broker_pid() {
  local pid=""
  [[ -f "$PID_FILE" ]] && pid="$(tr -dc '0-9' <"$PID_FILE")"
  if [[ -n "$pid" ]] && is_our_broker "$pid"; then
    printf '%s\n' "$pid"
    return 0
  fi
  pid="$(all_broker_pids | head -n 1 || true)"
  [[ -n "$pid" ]] || return 1
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$pid"
}

# true if pid is alive and is kafka.Kafka running this data dir's server.properties
is_our_broker() {
  local pid="$1" cmdline
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *" kafka.Kafka $SERVER_PROPS "* ]]
}

# every broker process whose command line references this data dir's server.properties
all_broker_pids() {
  local d pid
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    [[ "$pid" == "$$" ]] && continue
    is_our_broker "$pid" && printf '%s\n' "$pid"
  done
  return 0
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

configured_port() {
  local line
  line="$(grep -E '^advertised\.listeners=' "$SERVER_PROPS" 2>/dev/null || true)"
  line="${line##*:}"
  [[ -n "$line" ]] && printf '%s\n' "$line" || printf '%s\n' "$KAFKA_PORT"
}

# true if the broker answers an ApiVersions/metadata round trip
broker_answers() {
  local port="$1"
  port_open "$port" || return 1
  timeout 30 "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -cp "$(classpath)" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1 </dev/null
}

show_log_tail() {
  local f
  for f in "$SERVER_LOG" "$STDOUT_LOG"; do
    if [[ -s "$f" ]]; then
      printf -- '----- last 40 lines of %s -----\n' "$f" >&2
      tail -n 40 "$f" >&2
    fi
  done
}

# ---------------------------------------------------------------- start
write_server_properties() {
  cat >"$SERVER_PROPS" <<EOF
# Written by infra/kafka.sh on every start; edits are overwritten.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT

listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$STORAGE_DIR
num.partitions=1
auto.create.topics.enable=true
num.network.threads=3
num.io.threads=4
num.recovery.threads.per.data.dir=1

# Internal topics: one replica on one node; fewer partitions than the default 50 so the
# first consumer group / transaction starts quickly.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000

# No initial rebalance delay: consumer groups (and tests) start at once.
group.initial.rebalance.delay.ms=0
EOF
}

format_storage_if_needed() {
  if [[ -f "$STORAGE_DIR/meta.properties" ]]; then
    return 0
  fi
  local cluster_id
  if [[ -s "$CLUSTER_ID_FILE" ]]; then
    cluster_id="$(tr -d '[:space:]' <"$CLUSTER_ID_FILE")"
  else
    cluster_id="$(run_tool kafka.tools.StorageTool random-uuid </dev/null | tail -n 1 | tr -d '[:space:]')"
    [[ -n "$cluster_id" ]] || die "could not generate a cluster id"
    printf '%s\n' "$cluster_id" >"$CLUSTER_ID_FILE"
  fi
  log "formatting KRaft storage in $STORAGE_DIR (cluster id $cluster_id)"
  if ! run_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" \
        -c "$SERVER_PROPS" >"$LOG_DIR/format.log" 2>&1 </dev/null; then
    cat "$LOG_DIR/format.log" >&2
    die "formatting the storage failed"
  fi
}

# wait_until_ready PID PORT OWNED: OWNED=1 if this invocation launched PID (stopped on timeout)
wait_until_ready() {
  local pid="$1" port="$2" owned="$3" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  log "waiting for broker on 127.0.0.1:$port ..."
  while (( SECONDS < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      printf '[kafka.sh] error: the broker (pid %s) exited during startup\n' "$pid" >&2
      show_log_tail
      rm -f "$PID_FILE"
      exit 1
    fi
    if port_open "$port" && broker_answers "$port"; then
      return 0
    fi
    sleep 0.5
  done
  printf '[kafka.sh] error: broker not ready on 127.0.0.1:%s after %s s\n' "$port" "$KAFKA_START_TIMEOUT" >&2
  show_log_tail
  if [[ "$owned" == 1 ]]; then
    log "stopping the broker that did not become ready (pid $pid)" >&2
    stop_pids "$pid" >&2
    rm -f "$PID_FILE"
  fi
  exit 1
}

cmd_start() {
  local t0=$SECONDS pid port
  cmd_fetch
  mkdir -p "$DATA_DIR" "$LOG_DIR"

  if pid="$(broker_pid)"; then
    port="$(configured_port)"
    if [[ "$port" != "$KAFKA_PORT" ]]; then
      log "note: the broker for $DATA_DIR runs on port $port (not $KAFKA_PORT); stop it to change the port"
    fi
    if broker_answers "$port"; then
      log "already running (pid $pid) on 127.0.0.1:$port and answering"
      return 0
    fi
    log "already started (pid $pid) but not answering yet"
    wait_until_ready "$pid" "$port" 0
    log "ready (pid $pid) on 127.0.0.1:$port"
    return 0
  fi
  rm -f "$PID_FILE"  # stale: its process is gone
  if port_open "$KAFKA_PORT"; then
    die "port $KAFKA_PORT on 127.0.0.1 is taken by another process (try --port or KAFKA_PORT)"
  fi
  if port_open "$CONTROLLER_PORT"; then
    die "controller port $CONTROLLER_PORT on 127.0.0.1 is taken by another process"
  fi

  write_server_properties
  format_storage_if_needed

  log "starting Kafka $KAFKA_VERSION (data dir $DATA_DIR, log $SERVER_LOG)"
  # a marker line, so that a log tail after a failure shows where this start begins
  printf '===== infra/kafka.sh start %s, port %s =====\n' "$(date -u +%FT%TZ)" "$KAFKA_PORT" >>"$SERVER_LOG"
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS holds several flags
  setsid "$JAVA" $KAFKA_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
    -cp "$(classpath)" kafka.Kafka "$SERVER_PROPS" \
    >"$STDOUT_LOG" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  wait_until_ready "$pid" "$KAFKA_PORT" 1
  log "ready (pid $pid) on 127.0.0.1:$KAFKA_PORT after $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- stop
stop_pids() {
  local pid waited=0 alive
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  while :; do
    alive=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [[ ${#alive[@]} -eq 0 ]] && return 0
    if (( waited >= 40 )); then  # 40 x 0.5 s
      log "still running after 20 s, sending SIGKILL to ${alive[*]}"
      for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
      sleep 0.5
      return 0
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
}

cmd_stop() {
  local pids=() pid
  if [[ -f "$PID_FILE" ]]; then
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] && is_our_broker "$pid" && pids+=("$pid")
  fi
  for pid in $(all_broker_pids); do
    [[ " ${pids[*]} " == *" $pid "* ]] || pids+=("$pid")
  done
  if [[ ${#pids[@]} -eq 0 ]]; then
    rm -f "$PID_FILE"
    log "not running (data dir $DATA_DIR)"
    return 0
  fi
  log "stopping broker (pid ${pids[*]}) ..."
  stop_pids "${pids[@]}"
  rm -f "$PID_FILE"
  if [[ -n "$(all_broker_pids)" ]]; then
    die "a broker process for $DATA_DIR is still running"
  fi
  log "stopped"
}

# ---------------------------------------------------------------- status
cmd_status() {
  local pid port
  if pid="$(broker_pid)"; then
    port="$(configured_port)"
    if port_open "$port"; then
      echo "running (pid $pid, port $port, data dir $DATA_DIR)"
    else
      echo "running (pid $pid, port $port not open yet, data dir $DATA_DIR)"
    fi
    return 0
  fi
  echo "stopped (port $KAFKA_PORT, data dir $DATA_DIR)"
  return 3
}

case "$COMMAND" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) rc=0; cmd_status || rc=$?; exit "$rc" ;;
  help|-h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
