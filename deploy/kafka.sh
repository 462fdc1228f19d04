#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, no ZooKeeper) for trying ragline
# and for its integration tests.  The broker runs from jars fetched from
# Maven Central by deploy/kafka/pom.xml, so nothing but Java and Maven is
# needed.  Every broker lives in its own directory and listens on ports
# picked free at start, so several can run side by side.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=4.1.2
CACHE=${RAGLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ragline}
LIBS=${RAGLINE_BROKER_LIBS:-$CACHE/kafka-$KAFKA_VERSION/libs}
JAVA_OPTS=${RAGLINE_BROKER_JAVA_OPTS:--Xmx512m -Xms128m}
START_TIMEOUT=${RAGLINE_BROKER_START_TIMEOUT:-90}
STOP_TIMEOUT=${RAGLINE_BROKER_STOP_TIMEOUT:-30}

usage() {
    cat <<EOF
usage: deploy/kafka.sh COMMAND [ARGS]

Runs a throwaway single-node Kafka $KAFKA_VERSION broker (KRaft mode) whose
state, configuration and logs all live in one directory DIR.

commands:
  start DIR         fetch the broker jars if needed, format DIR (or reuse
                    the data already there), start the broker in the
                    background on free ports of 127.0.0.1 and wait until it
                    answers a metadata request; writes DIR/bootstrap
                    (host:port for bootstrap.servers) and DIR/pid
  stop DIR          stop the broker: SIGTERM, then SIGKILL after
                    ${STOP_TIMEOUT}s
  kill DIR          SIGKILL the broker at once (to test crash recovery)
  status DIR        print the bootstrap address and exit 0 if the broker
                    of DIR is running, exit 1 otherwise
  create-topic DIR NAME PARTITIONS [compact]
                    create a topic (replication factor 1); "compact" makes
                    it a compacted topic such as ragline's evidence topic
  fetch             only fetch the jars; prints their directory

files in DIR: server.properties, data/ (the log), broker.log (the broker's
own log), broker.out (JVM stdout/stderr), bootstrap, pid.

environment:
  RAGLINE_CACHE                  cache root (default ~/.cache/ragline); the
                                 jars go to kafka-$KAFKA_VERSION/libs in it
  RAGLINE_BROKER_LIBS            use the jars in this directory instead
  RAGLINE_BROKER_JAVA_OPTS       JVM options (default: -Xmx512m -Xms128m)
  RAGLINE_BROKER_START_TIMEOUT   seconds to wait for the broker (default 90)
  RAGLINE_BROKER_STOP_TIMEOUT    seconds before stop uses SIGKILL (default 30)

Auto-creation of topics is off, as it should be in production: create
ragline's topics first, e.g.
  deploy/kafka.sh start /tmp/kafka
  deploy/kafka.sh create-topic /tmp/kafka ragline.queries 4
  deploy/kafka.sh create-topic /tmp/kafka ragline.answers 4
  deploy/kafka.sh create-topic /tmp/kafka ragline.dlq 1
  deploy/kafka.sh create-topic /tmp/kafka ragline.evidence 1 compact
  RAGLINE_KAFKA_BOOTSTRAP_SERVERS=\$(cat /tmp/kafka/bootstrap) ragline serve ...
  deploy/kafka.sh stop /tmp/kafka
EOF
}

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 ||
        die "$1 not found: $2 (Debian: deploy/install-deps.sh)"
}

# The jars are cached because Maven resolves them in seconds from its local
# repository but a first fetch takes a minute; a partial fetch is never
# mistaken for a complete one because the directory is renamed into place.
fetch_libs() {
    if [ -f "$LIBS/.complete" ]; then
        return 0
    fi
    need mvn "Maven fetches the broker jars from Maven Central"
    local tmp="$LIBS.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    echo "kafka.sh: fetching Kafka $KAFKA_VERSION jars into $LIBS" >&2
    if ! mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >&2; then
        rm -rf "$tmp"
        die "Maven could not fetch the broker jars (see above)"
    fi
    touch "$tmp/.complete"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
}

# Asks the kernel for an unused port.  Another process may take it before
# the broker binds it; start retries on that.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# A KRaft cluster id is 16 random bytes in URL-safe base64 without padding;
# Kafka itself never hands out one that starts with "-" (it would read as
# an option), so neither do we.
cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        case "$id" in
        -*) ;;
        *)
            echo "$id"
            return 0
            ;;
        esac
    done
}

write_config() {
    local dir=$1 port=$2 cport=$3
    cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka.sh: a single node that is both broker and
# controller, on 127.0.0.1 only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.backoff.ms=1000
EOF
    cat >"$dir/log4j2.properties" <<EOF
# The broker's own log, kept for debugging a failed test.
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
    cat >"$dir/log4j2-tools.properties" <<EOF
# Command-line tools (topic creation) report warnings only, on stderr.
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
}

# Prints the pid of the broker of DIR if it runs.  The command line must
# name DIR's config, so a recycled pid is never taken for the broker.
running_pid() {
    local dir=$1 pid
    [ -f "$dir/pid" ] || return 1
    pid=$(cat "$dir/pid")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" |
        grep -qF "kafka.Kafka $dir/server.properties" || return 1
    echo "$pid"
}

format() {
    local dir=$1
    java -cp "$LIBS/*" \
        -Dlog4j2.configurationFile="$dir/log4j2-tools.properties" \
        kafka.tools.StorageTool format -t "$(cluster_id)" \
        -c "$dir/server.properties" >"$dir/format.out" 2>&1 ||
        die "formatting $dir/data failed: $(cat "$dir/format.out")"
}

# Prints what the broker logged since byte $2 of its log: broker.log is
# appended to by every start, and only this start's lines count.
log_since() {
    tail -c "+$(($2 + 1))" "$1/broker.log" 2>/dev/null || true
}

# A broker is ready when it answers a metadata request with itself in it.
# Without kcat, the broker's own "started" line has to do.
answers() {
    local dir=$1 bootstrap=$2 since=$3
    if command -v kcat >/dev/null 2>&1; then
        kcat -L -b "$bootstrap" -m 5 2>/dev/null | grep -q ' 1 brokers:'
    else
        log_since "$dir" "$since" | grep -q 'Kafka Server started'
    fi
}

# Starts the JVM and waits.  Returns 0 when ready, 2 when the ports were
# taken (the caller retries with others), exits on any other failure.
launch() {
    local dir=$1 port=$2 deadline pid since
    since=$(stat -c %s "$dir/broker.log" 2>/dev/null || echo 0)
    # setsid: the broker must not get the terminal's Ctrl-C meant for a
    # test run that started it; the harness stops it itself.
    # shellcheck disable=SC2086 # JAVA_OPTS is a list of options
    setsid java $JAVA_OPTS -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        </dev/null >"$dir/broker.out" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    deadline=$((SECONDS + START_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$dir/pid"
            if { log_since "$dir" "$since" && cat "$dir/broker.out"; } |
                grep -q 'Address already in use'; then
                return 2
            fi
            tail -n 30 "$dir/broker.out" "$dir/broker.log" >&2 || true
            die "the broker exited during start; see $dir/broker.log"
        fi
        if answers "$dir" "127.0.0.1:$port" "$since"; then
            echo "127.0.0.1:$port" >"$dir/bootstrap"
            return 0
        fi
        sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
    die "the broker did not answer within ${START_TIMEOUT}s; see $dir/broker.log"
}

cmd_start() {
    local dir attempt port cport rc pid
    [ $# -eq 1 ] || die "usage: kafka.sh start DIR"
    need java "the broker is a Java program (openjdk-17-jre-headless)"
    need python3 "it picks free ports"
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    if pid=$(running_pid "$dir"); then
        die "a broker already runs from $dir (pid $pid)"
    fi
    fetch_libs
    rm -f "$dir/bootstrap" "$dir/pid"

    # Data kept from an earlier run is reused on the same ports, since its
    # metadata names them; a fresh directory may retry on other ports.
    if [ -f "$dir/data/meta.properties" ] && [ -f "$dir/ports" ]; then
        read -r port cport <"$dir/ports"
        write_config "$dir" "$port" "$cport"
        rc=0
        launch "$dir" "$port" || rc=$?
        [ $rc -eq 0 ] || die "ports $port/$cport of $dir are taken"
    else
        for attempt in 1 2 3; do
            port=$(free_port)
            cport=$(free_port)
            [ "$port" != "$cport" ] || continue
            rm -rf "$dir/data"
            write_config "$dir" "$port" "$cport"
            echo "$port $cport" >"$dir/ports"
            format "$dir"
            rc=0
            launch "$dir" "$port" || rc=$?
            [ $rc -ne 0 ] || break
            echo "kafka.sh: port taken, retrying ($attempt)" >&2
        done
        [ $rc -eq 0 ] || die "no free ports found after 3 attempts"
    fi
    echo "kafka.sh: broker $(cat "$dir/bootstrap") (pid $(cat "$dir/pid")," \
        "log $dir/broker.log)" >&2
    cat "$dir/bootstrap"
}

# Waits up to $2 seconds for pid $1 to go away.
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

cmd_stop() {
    local dir pid
    [ $# -eq 1 ] || die "usage: kafka.sh stop DIR"
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no directory $1"
    if ! pid=$(running_pid "$dir"); then
        rm -f "$dir/pid" "$dir/bootstrap"
        echo "kafka.sh: no broker runs from $dir" >&2
        return 0
    fi
    kill -TERM "$pid"
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        echo "kafka.sh: broker $pid ignored SIGTERM for" \
            "${STOP_TIMEOUT}s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "broker $pid survived SIGKILL"
    fi
    rm -f "$dir/pid" "$dir/bootstrap"
}

cmd_kill() {
    local dir pid
    [ $# -eq 1 ] || die "usage: kafka.sh kill DIR"
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no directory $1"
    if pid=$(running_pid "$dir"); then
        kill -KILL "$pid"
        wait_gone "$pid" 10 || die "broker $pid survived SIGKILL"
    fi
    rm -f "$dir/pid" "$dir/bootstrap"
}

cmd_status() {
    local dir pid
    [ $# -eq 1 ] || die "usage: kafka.sh status DIR"
    dir=$(cd "$1" 2>/dev/null && pwd) || return 1
    pid=$(running_pid "$dir") || return 1
    echo "$(cat "$dir/bootstrap" 2>/dev/null || echo starting) (pid $pid)"
}

cmd_create_topic() {
    local dir config=()
    [ $# -eq 3 ] || [ $# -eq 4 ] ||
        die "usage: kafka.sh create-topic DIR NAME PARTITIONS [compact]"
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no directory $1"
    [ -f "$dir/bootstrap" ] || die "no broker runs from $dir"
    case "${4:-}" in
    "") ;;
    compact) config=(--config cleanup.policy=compact) ;;
    *) die "the fourth argument can only be \"compact\"" ;;
    esac
    java -cp "$LIBS/*" \
        -Dlog4j2.configurationFile="$dir/log4j2-tools.properties" \
        org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$(cat "$dir/bootstrap")" --create \
        --topic "$2" --partitions "$3" --replication-factor 1 \
        "${config[@]}"
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    status) cmd_status "$@" ;;
    create-topic) cmd_create_topic "$@" ;;
    fetch)
        fetch_libs
        echo "$LIBS"
        ;;
    -h | --help | help) usage ;;
    "")
        usage >&2
        exit 2
        ;;
    *) die "unknown command \"$cmd\" (try --help)" ;;
    esac
}

main "$@"
