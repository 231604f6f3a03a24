#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft) broker on loopback, from jars fetched off Maven Central.
#
#   kafka.sh fetch       fill deploy/kafka/libs/ (mvn dependency:copy-dependencies; cached in ~/.m2)
#   kafka.sh start DIR   configure, format and start a broker in DIR; prints
#                        TP_TEST_KAFKA_BOOTSTRAP=127.0.0.1:PORT (also written to DIR/env)
#   kafka.sh stop DIR    SIGTERM the broker, SIGKILL after 20 s
#
# The broker listens on 127.0.0.1 only (a free port, plus one for the KRaft controller).
# DIR holds server.properties, data/, kafka.log, kafka.pid and env. Starting a DIR that was
# started before restarts the same broker on the same ports with its data kept.
#
# Environment: PYTHON (a Python with aiokafka: readiness is then checked with a real
# metadata request), KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m), KAFKA_START_TIMEOUT_S
# (default 90).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIBS="$HERE/libs"
KAFKA_VERSION="4.1.1"
START_TIMEOUT_S="${KAFKA_START_TIMEOUT_S:-90}"
STOP_TIMEOUT_S=20

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

libs_complete() {
    # The marker is written only after a successful copy, so a half-finished fetch is redone.
    [[ -f "$LIBS/.complete-$KAFKA_VERSION" && -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

ensure_tools() {
    local missing=()
    command -v java >/dev/null 2>&1 || missing+=("java (openjdk-17-jre-headless)")
    command -v mvn >/dev/null 2>&1 || missing+=("mvn (maven)")
    ((${#missing[@]} == 0)) && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "kafka.sh: installing openjdk-17-jre-headless maven" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y openjdk-17-jre-headless maven >&2 \
            || die "apt-get install failed; missing: ${missing[*]}"
        return 0
    fi
    die "missing: ${missing[*]}. Install them (Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven) and retry."
}

cmd_fetch() {
    if libs_complete; then
        return 0
    fi
    ensure_tools
    rm -rf "$LIBS"
    local out
    if ! out="$(cd "$HERE" && mvn -B -q dependency:copy-dependencies -DoutputDirectory=libs 2>&1)"; then
        echo "$out" >&2
        die "mvn dependency:copy-dependencies failed (is Maven Central reachable?)"
    fi
    touch "$LIBS/.complete-$KAFKA_VERSION"
    echo "kafka.sh: $(find "$LIBS" -name '*.jar' | wc -l) jars in $LIBS" >&2
}

python_bin() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
    elif command -v python3 >/dev/null 2>&1; then
        echo python3
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_ports() {
    # Two distinct free loopback ports. Binding port 0 asks the kernel; the ports are released
    # before Kafka binds them, so another process could take one in between (the start then
    # fails loudly with "Address already in use" in the log).
    local py
    py="$(python_bin)"
    if [[ -n "$py" ]]; then
        "$py" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
'
        return
    fi
    local ports=() p
    while ((${#ports[@]} < 2)); do
        p=$((20000 + RANDOM % 30000))
        if ! port_in_use "$p" && [[ " ${ports[*]} " != *" $p "* ]]; then
            ports+=("$p")
        fi
    done
    echo "${ports[*]}"
}

random_cluster_id() {
    # A Kafka Uuid: 16 random bytes, base64url without padding (22 characters). One that
    # starts with '-' would be read as an option by kafka-storage's argument parser.
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id == -* ]] || break
    done
    printf '%s\n' "$id"
}

write_config() {
    local dir="$1" port="$2" cport="$3"
    cat >"$dir/server.properties" <<EOF
# Single-node KRaft broker for tickerplant development and tests (written by kafka.sh).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
delete.topic.enable=true
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# No 3 s wait for more members before the first rebalance of a group.
group.initial.rebalance.delay.ms=0
# Two cores: keep the thread pools small.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
EOF
    cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

pid_alive() {
    # The pid is ours only while its command line still names this DIR's server.properties
    # (guards against pid reuse after the broker died).
    local dir="$1" pid
    [[ -f "$dir/kafka.pid" ]] || return 1
    pid="$(cat "$dir/kafka.pid")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/server.properties"
}

broker_ready() {
    # Port answers, the broker logged that it started, and (with a Python that has aiokafka)
    # a client gets metadata naming this broker.
    local dir="$1" port="$2" py
    port_in_use "$port" || return 1
    grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null || return 1
    py="$(python_bin)"
    if [[ -n "$py" ]] && "$py" -c 'import aiokafka' 2>/dev/null; then
        "$py" - "127.0.0.1:$port" <<'EOF' >/dev/null 2>&1 || return 1
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        await asyncio.wait_for(admin.list_topics(), 10)
    finally:
        await admin.close()

asyncio.run(main())
EOF
    fi
    return 0
}

fail_start() {
    local dir="$1" why="$2"
    echo "kafka.sh: $why; errors in $dir/kafka.log:" >&2
    grep -E "ERROR|FATAL|Caused by" "$dir/kafka.log" 2>/dev/null | tail -n 8 >&2 || true
    echo "kafka.sh: last lines of $dir/kafka.log:" >&2
    tail -n 25 "$dir/kafka.log" >&2 2>/dev/null || true
    cmd_stop "$dir" >/dev/null 2>&1 || true
    exit 1
}

cmd_start() {
    local dir="${1:-}"
    [[ -n "$dir" ]] || usage
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    cmd_fetch
    command -v java >/dev/null 2>&1 || ensure_tools

    if pid_alive "$dir"; then
        [[ -f "$dir/env" ]] || die "a broker is running in $dir (pid $(cat "$dir/kafka.pid")) but $dir/env is missing"
        echo "kafka.sh: already running in $dir (pid $(cat "$dir/kafka.pid"))" >&2
        cat "$dir/env"
        return 0
    fi

    local port cport
    if [[ -f "$dir/server.properties" && -f "$dir/data/meta.properties" ]]; then
        # Restart: same ports, same cluster, data kept.
        port="$(sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/server.properties")"
        [[ -n "$port" ]] || die "cannot read the port from $dir/server.properties"
    else
        rm -rf "$dir/data"
        read -r port cport < <(free_ports)
        write_config "$dir" "$port" "$cport"
        local cluster_id
        cluster_id="$(random_cluster_id)"
        # A short-lived JVM: C1 only and the serial GC start faster.
        java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$LIBS/*" \
            -Dlog4j2.configurationFile="$dir/log4j2.properties" \
            kafka.tools.StorageTool format --ignore-formatted \
            --cluster-id "$cluster_id" --config "$dir/server.properties" >"$dir/format.log" 2>&1 \
            || { cat "$dir/format.log" >&2; die "kafka-storage format failed"; }
    fi

    : >"$dir/kafka.log"
    rm -f "$dir/env"
    local started_ns
    started_ns="$(date +%s%N)"
    # setsid: the broker outlives this script and the caller's terminal/process group; the
    # inner shell writes its own pid and execs java, so kafka.pid is the JVM's pid.
    # shellcheck disable=SC2086
    setsid bash -c 'echo $$ >"$0/kafka.pid"; exec "$@"' "$dir" \
        java ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >>"$dir/kafka.log" 2>&1 </dev/null &
    # Wait for the pid file, then for readiness, bounded by START_TIMEOUT_S.
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until [[ -s "$dir/kafka.pid" ]]; do
        ((SECONDS < deadline)) || fail_start "$dir" "no pid file after ${START_TIMEOUT_S}s"
        sleep 0.05
    done
    until broker_ready "$dir" "$port"; do
        pid_alive "$dir" || fail_start "$dir" "the broker exited during start-up"
        ((SECONDS < deadline)) || fail_start "$dir" "not ready after ${START_TIMEOUT_S}s"
        sleep 0.2
    done
    local elapsed_ms=$((($(date +%s%N) - started_ns) / 1000000))
    echo "TP_TEST_KAFKA_BOOTSTRAP=127.0.0.1:$port" >"$dir/env"
    echo "kafka.sh: broker ready in ${elapsed_ms} ms (pid $(cat "$dir/kafka.pid"), log $dir/kafka.log)" >&2
    cat "$dir/env"
}

cmd_stop() {
    local dir="${1:-}"
    [[ -n "$dir" ]] || usage
    [[ -d "$dir" ]] || die "no such directory: $dir"
    dir="$(cd "$dir" && pwd)"
    if ! pid_alive "$dir"; then
        rm -f "$dir/kafka.pid"
        echo "kafka.sh: no broker running in $dir" >&2
        return 0
    fi
    local pid
    pid="$(cat "$dir/kafka.pid")"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "kafka.sh: broker (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s; SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    rm -f "$dir/kafka.pid"
    echo "kafka.sh: stopped broker in $dir (pid $pid)" >&2
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start "${2:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    *) usage ;;
esac
