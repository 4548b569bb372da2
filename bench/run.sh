#!/usr/bin/env bash
# Measures sslify against a bare tokio + tokio-openssl server and nginx (stream module) on
# loopback: server CPU per full TLS handshake, handshake rate, handshake latency with
# stalled connections open, memory per idle connection and echo throughput. The server is
# pinned to core 0 and the load client to core 1. Prints a Markdown table of the medians of
# interleaved rounds, with each figure as a ratio against bare and nginx.
#
# usage: bench/run.sh [--quick] [--vendored] [--rounds N] [--no-nginx]
set -uo pipefail

usage() {
    cat <<'EOF'
usage: bench/run.sh [options]

  --quick       one short round (a smoke check; figures are rough)
  --vendored    build both Rust servers with OpenSSL built from source (feature `vendored`)
  --rounds N    number of interleaved rounds (default 3, 1 with --quick)
  --no-nginx    leave nginx out
  -h, --help    this text

Installs nginx and its stream module with apt-get when missing (as root). Raw results,
server logs and the table go to bench/target/runs/<date>/.
EOF
}

COMMAND_LINE="bench/run.sh${*:+ $*}"
QUICK=0
VENDORED=0
ROUNDS=""
WANT_NGINX=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --vendored) VENDORED=1 ;;
        --rounds)
            ROUNDS="${2:-}"
            shift
            ;;
        --rounds=*) ROUNDS="${1#--rounds=}" ;;
        --no-nginx) WANT_NGINX=0 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "run.sh: unknown option $1" >&2
            usage >&2
            exit 2
            ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    ROUNDS="${ROUNDS:-1}"
    HS_SECS=1        # each handshake-rate measurement
    PROBE_SECS=1     # each probe (unloaded, then with stalled connections)
    ECHO_SECS=1      # each echo measurement
    WARM_SECS=0.3    # warm-up before each measured interval
    IDLE_CONNS=500
else
    ROUNDS="${ROUNDS:-3}"
    HS_SECS=4
    PROBE_SECS=3
    ECHO_SECS=3
    WARM_SECS=0.5
    IDLE_CONNS=5000
fi
case "$ROUNDS" in
    '' | *[!0-9]* | 0)
        echo "run.sh: --rounds needs a positive number" >&2
        exit 2
        ;;
esac
WORKERS=32       # concurrent handshakes of the load client
SILENT=1000      # TCP-only connections open during the loaded probe
STALLED=200      # connections stalled after their ClientHello during the loaded probe
PORT=18443
BACKEND_PORT=18444
SERVER_CORE=0
CLIENT_CORE=1
CLK_TCK=$(getconf CLK_TCK)

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
CERTS="$ROOT/certs"

if [ "$(nproc)" -lt 2 ]; then
    echo "run.sh: only $(nproc) core: server and client share core 0, figures are not comparable"
    CLIENT_CORE=0
fi

# ---------------------------------------------------------------------------- build
TARGET_DIR="$BENCH/target"
FEATURES=()
if [ "$VENDORED" = 1 ]; then
    # A target directory of its own, so that switching back and forth rebuilds nothing.
    TARGET_DIR="$BENCH/target/vendored"
    FEATURES=(--features vendored)
fi
echo "building (release${FEATURES:+, vendored OpenSSL})..."
if ! nice cargo build --release --quiet --manifest-path "$BENCH/Cargo.toml" \
    --target-dir "$TARGET_DIR" "${FEATURES[@]}"; then
    echo "run.sh: build failed" >&2
    exit 1
fi
BIN="$TARGET_DIR/release"
LOADGEN=(taskset -c "$CLIENT_CORE" "$BIN/loadgen")
CLIENT_OPTIONS=(--connect "127.0.0.1:$PORT" --ca "$CERTS/ca.pem" --cert "$CERTS/client-valid.pem"
    --key "$CERTS/client-valid.key")

RUN="$BENCH/target/runs/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN"
RESULTS="$RUN/results.tsv"
: >"$RESULTS"

# ---------------------------------------------------------------------------- file limit
NEED_FILES=$((2 * IDLE_CONNS + SILENT + STALLED + 1000))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$NEED_FILES" ]; then
    ulimit -Hn 65536 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FILES_LIMIT=$(ulimit -n)
[ "$FILES_LIMIT" = unlimited ] && FILES_LIMIT=65536
if [ "$FILES_LIMIT" -lt "$NEED_FILES" ]; then
    IDLE_CONNS=$(((FILES_LIMIT - SILENT - STALLED - 1000) / 2))
    echo "run.sh: open-file limit $FILES_LIMIT: idle connections lowered to $IDLE_CONNS"
fi

# ---------------------------------------------------------------------------- processes
# Every process this script starts is remembered by PID and stopped by PID.
STARTED=()

forget() {
    local pid=$1 kept=() p
    for p in "${STARTED[@]}"; do
        [ "$p" = "$pid" ] || kept+=("$p")
    done
    STARTED=("${kept[@]}")
}

stop_pid() {
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    forget "$pid"
}

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null
    done
    STARTED=()
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted"; exit 130' INT TERM

# utime + stime of a process, in clock ticks.
cpu_ticks() {
    local stat
    read -r stat <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086 # splitting the fields is the point
    set -- $stat
    echo $((${12} + ${13}))
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Waits until something listens on 127.0.0.1:PORT (read from /proc, no connection made).
wait_listening() {
    local port=$1 pid=$2 hex i
    hex=$(printf '0100007F:%04X 00000000:0000 0A' "$port")
    for ((i = 0; i < 200; i++)); do
        grep -q "$hex" /proc/net/tcp && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Waits until FILE has a line starting with PREFIX, while PID lives; at most SECONDS.
wait_for_line() {
    local file=$1 prefix=$2 pid=$3 seconds=$4 i
    for ((i = 0; i < seconds * 10; i++)); do
        grep -q "^$prefix" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# A key=value field of the RESULT (or READY) line of a load client's output.
field() {
    sed -n "s/^\(RESULT\|READY\) .* $2=\([^ ]*\).*/\2/p" "$1" | tail -n 1
}

record() { # round metric kind value
    [ -n "$4" ] && [ "$4" != NA ] && printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}

# The load client, in the foreground. Background ones are started with "${LOADGEN[@]}"
# directly, so that $! is the load client's own PID (taskset execs it).
client() {
    "${LOADGEN[@]}" "$@" "${CLIENT_OPTIONS[@]}"
}

# ---------------------------------------------------------------------------- nginx
NGINX_OK=0
NGINX_WHY=""
NGINX_MODULE=""
prepare_nginx() {
    if [ "$WANT_NGINX" = 0 ]; then
        NGINX_WHY="--no-nginx was given"
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        NGINX_WHY="nginx runs as root here and this script is not root"
        return
    fi
    if ! dpkg -s nginx libnginx-mod-stream >/dev/null 2>&1; then
        echo "installing nginx and its stream module..."
        # No service may start during the installation (it would listen on port 80).
        local own_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y nginx libnginx-mod-stream \
            >"$RUN/apt.log" 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get update >>"$RUN/apt.log" 2>&1
            DEBIAN_FRONTEND=noninteractive apt-get install -y nginx libnginx-mod-stream \
                >>"$RUN/apt.log" 2>&1
        fi
        [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
        if ! dpkg -s nginx libnginx-mod-stream >/dev/null 2>&1; then
            NGINX_WHY="apt-get install nginx libnginx-mod-stream failed (see $RUN/apt.log)"
            return
        fi
    fi
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    if [ ! -x "$NGINX_BIN" ]; then
        NGINX_WHY="no nginx binary after installation"
        return
    fi
    if "$NGINX_BIN" -V 2>&1 | grep -q -- '--with-stream=dynamic'; then
        NGINX_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
        if [ ! -e "$NGINX_MODULE" ]; then
            NGINX_WHY="nginx's stream module is not at $NGINX_MODULE"
            return
        fi
    fi
    mkdir -p "$RUN/nginx"
    nginx_config reply ec 0 >"$RUN/nginx/test.conf"
    if ! "$NGINX_BIN" -t -q -e "$RUN/nginx/error.log" -p "$RUN/nginx" \
        -c "$RUN/nginx/test.conf" >"$RUN/nginx/test.log" 2>&1; then
        NGINX_WHY="nginx rejects the generated configuration (see $RUN/nginx/test.log)"
        return
    fi
    NGINX_OK=1
}

nginx_config() { # mode cert tickets
    local mode=$1 cert=$2 tickets=$3
    [ -n "$NGINX_MODULE" ] && echo "load_module $NGINX_MODULE;"
    cat <<EOF
worker_processes 1;
daemon off;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/error.log warn;
worker_rlimit_nofile $FILES_LIMIT;
events {
    worker_connections $((FILES_LIMIT - 64));
}
stream {
    server {
        listen 127.0.0.1:$PORT ssl backlog=4096;
        ssl_certificate $CERTS/server-$cert.pem;
        ssl_certificate_key $CERTS/server-$cert.key;
        ssl_client_certificate $CERTS/client-ca.pem;
        ssl_verify_client on;
        ssl_verify_depth 5;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_handshake_timeout 10s;
EOF
    if [ "$tickets" = 0 ]; then
        echo "        ssl_session_tickets off;"
        echo "        ssl_session_cache off;"
    fi
    if [ "$mode" = echo ]; then
        echo "        proxy_pass 127.0.0.1:$BACKEND_PORT;"
    else
        echo "        return \"[\$connection] Yeah! You're authenticated!\\n\";"
    fi
    echo "    }"
    echo "}"
}

# ---------------------------------------------------------------------------- servers
SERVER_PID=""   # the process whose CPU and memory are measured
SERVER_STOP=()  # the processes to stop afterwards

start_server() { # kind mode cert tickets
    local kind=$1 mode=$2 cert=$3 tickets=$4 args pid
    SERVER_PID=""
    SERVER_STOP=()
    case "$kind" in
        sslify | bare)
            args=(--listen "127.0.0.1:$PORT" --cert "$CERTS/server-$cert.pem"
                --key "$CERTS/server-$cert.key" --client-ca "$CERTS/client-ca.pem")
            args+=(--tickets "$tickets")
            [ "$mode" = echo ] && args+=(--echo)
            taskset -c "$SERVER_CORE" "$BIN/$kind-server" "${args[@]}" \
                >>"$RUN/$kind-server.log" 2>&1 &
            pid=$!
            STARTED+=("$pid")
            SERVER_STOP=("$pid")
            SERVER_PID=$pid
            ;;
        nginx)
            if [ "$mode" = echo ]; then
                taskset -c "$SERVER_CORE" "$BIN/bare-server" --plain \
                    --listen "127.0.0.1:$BACKEND_PORT" >>"$RUN/nginx-backend.log" 2>&1 &
                pid=$!
                STARTED+=("$pid")
                SERVER_STOP=("$pid")
                wait_listening "$BACKEND_PORT" "$pid" || return 1
            fi
            nginx_config "$mode" "$cert" "$tickets" >"$RUN/nginx/nginx.conf"
            taskset -c "$SERVER_CORE" "$NGINX_BIN" -e "$RUN/nginx/error.log" -p "$RUN/nginx" \
                -c "$RUN/nginx/nginx.conf" >>"$RUN/nginx/stdout.log" 2>&1 &
            pid=$!
            STARTED+=("$pid")
            SERVER_STOP=("$pid" "${SERVER_STOP[@]}")
            wait_listening "$PORT" "$pid" || return 1
            SERVER_PID=$(nginx_worker "$pid")
            [ -n "$SERVER_PID" ] || return 1
            return 0
            ;;
    esac
    wait_listening "$PORT" "$SERVER_PID"
}

# The PID of the one worker process of the nginx master MASTER.
nginx_worker() {
    local master=$1 i stat line children
    for ((i = 0; i < 100; i++)); do
        children=$(cat "/proc/$master/task/$master/children" 2>/dev/null)
        if [ -z "$children" ]; then
            for stat in /proc/[0-9]*/stat; do
                read -r line <"$stat" 2>/dev/null || continue
                line=${line##*) }
                # shellcheck disable=SC2086
                set -- $line
                [ "$2" = "$master" ] && children="${stat//[!0-9]/}"
            done
        fi
        if [ -n "$children" ]; then
            echo "${children%% *}"
            return 0
        fi
        sleep 0.05
    done
    return 1
}

stop_server() {
    local pid
    for pid in "${SERVER_STOP[@]}"; do
        stop_pid "$pid"
    done
    SERVER_STOP=()
    SERVER_PID=""
}

note() {
    echo "$*" | tee -a "$RUN/notes.txt"
}

# ---------------------------------------------------------------------------- measurements
# Full handshakes as fast as the server serves them: rate and server CPU per handshake.
measure_handshakes() { # round tag kind cert tickets
    local round=$1 tag=$2 kind=$3 cert=$4 tickets=$5 out c0 c1 ok cpu_us
    out="$RUN/r$round-$tag-$kind.txt"
    if ! start_server "$kind" reply "$cert" "$tickets"; then
        note "round $round $tag $kind: the server did not start (see $RUN)"
        stop_server
        return
    fi
    client handshakes --workers "$WORKERS" --duration "$WARM_SECS" >/dev/null 2>&1
    c0=$(cpu_ticks "$SERVER_PID")
    client handshakes --workers "$WORKERS" --duration "$HS_SECS" >"$out" 2>&1
    c1=$(cpu_ticks "$SERVER_PID")
    stop_server
    ok=$(field "$out" ok)
    if [ -z "$ok" ] || [ "$ok" = 0 ]; then
        note "round $round $tag $kind: no handshake completed (see $out)"
        return
    fi
    cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$ok" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
    record "$round" "$tag.cpu_us" "$kind" "$cpu_us"
    record "$round" "$tag.rate" "$kind" "$(field "$out" rate)"
    record "$round" "$tag.tickets" "$kind" "$(field "$out" tickets)"
    record "$round" "$tag.client_cpu" "$kind" "$(field "$out" client_cpu)"
    record "$round" "$tag.failed" "$kind" "$(field "$out" failed)"
    printf '  %-6s %-7s %8s handshakes/s  %7s µs server CPU each  (failed %s, tickets %s, client CPU %s %%)\n' \
        "$tag" "$kind" "$(field "$out" rate)" "$cpu_us" "$(field "$out" failed)" \
        "$(field "$out" tickets)" "$(field "$out" client_cpu)"
    grep '^WARNING' "$out" | sed 's/^/         /'
}

# Sequential handshake latency, unloaded and then with silent and stalled connections open.
measure_probe() { # round kind
    local round=$1 kind=$2 base="$RUN/r$round-probe-$2" stall_pid
    if ! start_server "$kind" reply ec 0; then
        note "round $round probe $kind: the server did not start"
        stop_server
        return
    fi
    client probe --duration "$WARM_SECS" >/dev/null 2>&1
    client probe --duration "$PROBE_SECS" >"$base-unloaded.txt" 2>&1
    "${LOADGEN[@]}" stall --silent "$SILENT" --stalled "$STALLED" --hold 120 \
        "${CLIENT_OPTIONS[@]}" >"$base-stall.txt" 2>&1 &
    stall_pid=$!
    STARTED+=("$stall_pid")
    if wait_for_line "$base-stall.txt" READY "$stall_pid" 60; then
        client probe --duration "$PROBE_SECS" >"$base-loaded.txt" 2>&1
    else
        note "round $round probe $kind: the stalled connections did not open (see $base-stall.txt)"
    fi
    stop_pid "$stall_pid"
    stop_server
    record "$round" probe.p50_ms "$kind" "$(field "$base-unloaded.txt" p50_ms)"
    record "$round" probe.p99_ms "$kind" "$(field "$base-unloaded.txt" p99_ms)"
    record "$round" probe.failed "$kind" "$(field "$base-unloaded.txt" failed)"
    record "$round" probe.attempts "$kind" "$(field "$base-unloaded.txt" attempts)"
    [ -e "$base-loaded.txt" ] || return
    record "$round" stalled.p50_ms "$kind" "$(field "$base-loaded.txt" p50_ms)"
    record "$round" stalled.p99_ms "$kind" "$(field "$base-loaded.txt" p99_ms)"
    record "$round" stalled.failed "$kind" "$(field "$base-loaded.txt" failed)"
    record "$round" stalled.attempts "$kind" "$(field "$base-loaded.txt" attempts)"
    printf '  probe  %-7s unloaded: p50 %s ms, p99 %s ms, %s of %s failed\n' \
        "$kind" "$(field "$base-unloaded.txt" p50_ms)" "$(field "$base-unloaded.txt" p99_ms)" \
        "$(field "$base-unloaded.txt" failed)" "$(field "$base-unloaded.txt" attempts)"
    printf '  probe  %-7s with %s silent + %s stalled connected (%s still connecting): p50 %s ms, p99 %s ms, %s of %s failed\n' \
        "$kind" "$(field "$base-stall.txt" silent)" "$(field "$base-stall.txt" stalled)" \
        "$(field "$base-stall.txt" pending)" "$(field "$base-loaded.txt" p50_ms)" \
        "$(field "$base-loaded.txt" p99_ms)" "$(field "$base-loaded.txt" failed)" \
        "$(field "$base-loaded.txt" attempts)"
}

# Memory per established idle connection, then echo throughput, on one echo server.
measure_idle_echo() { # round kind
    local round=$1 kind=$2 base="$RUN/r$round-idle-$2" idle_pid r0 r1 up per c out
    if ! start_server "$kind" echo ec 0; then
        note "round $round idle/echo $kind: the server did not start"
        stop_server
        return
    fi
    client echo --connections 1 --duration "$WARM_SECS" >/dev/null 2>&1
    sleep 0.3
    r0=$(rss_kib "$SERVER_PID")
    "${LOADGEN[@]}" idle --connections "$IDLE_CONNS" --hold 600 "${CLIENT_OPTIONS[@]}" \
        >"$base.txt" 2>&1 &
    idle_pid=$!
    STARTED+=("$idle_pid")
    if wait_for_line "$base.txt" READY "$idle_pid" 300; then
        sleep 1
        r1=$(rss_kib "$SERVER_PID")
        up=$(field "$base.txt" up)
        if [ -n "$up" ] && [ "$up" -gt 0 ]; then
            per=$(awk -v a="$r0" -v b="$r1" -v n="$up" 'BEGIN { printf "%.2f", (b - a) / n }')
            record "$round" idle.kib "$kind" "$per"
            printf '  idle   %-7s %s connections: RSS %s -> %s KiB, %s KiB each (failed %s)\n' \
                "$kind" "$up" "$r0" "$r1" "$per" "$(field "$base.txt" failed)"
        fi
    else
        note "round $round idle $kind: the connections did not open (see $base.txt)"
    fi
    stop_pid "$idle_pid"
    sleep 0.5
    for c in 1 16; do
        out="$RUN/r$round-echo$c-$kind.txt"
        client echo --connections "$c" --duration "$ECHO_SECS" >"$out" 2>&1
        record "$round" "echo$c.mib_s" "$kind" "$(field "$out" mib_s)"
        record "$round" "echo$c.client_cpu" "$kind" "$(field "$out" client_cpu)"
        printf '  echo   %-7s %2s connection(s): %s MiB/s (failed %s, client CPU %s %%)\n' \
            "$kind" "$c" "$(field "$out" mib_s)" "$(field "$out" failed)" "$(field "$out" client_cpu)"
        grep '^WARNING' "$out" | sed 's/^/         /'
    done
    stop_server
}

# ---------------------------------------------------------------------------- the run
for port in "$PORT" "$BACKEND_PORT"; do
    if grep -qE "$(printf ':%04X [0-9A-F]+:0000 0A' "$port")" /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
        echo "run.sh: port $port is already in use (a server left from an earlier run?)" >&2
        exit 1
    fi
done
prepare_nginx
KINDS=(sslify bare)
if [ "$NGINX_OK" = 1 ]; then
    KINDS+=(nginx)
else
    note "nginx left out: $NGINX_WHY"
fi

START=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the order each round so that no server always runs first.
    order=()
    for ((i = 0; i < ${#KINDS[@]}; i++)); do
        order+=("${KINDS[$(((i + round - 1) % ${#KINDS[@]}))]}")
    done
    echo "round $round of $ROUNDS (${order[*]})"
    for kind in "${order[@]}"; do measure_handshakes "$round" ec "$kind" ec 0; done
    for kind in "${order[@]}"; do measure_handshakes "$round" ec2 "$kind" ec 2; done
    for kind in "${order[@]}"; do measure_handshakes "$round" rsa "$kind" rsa 0; done
    for kind in "${order[@]}"; do measure_probe "$round" "$kind"; done
    for kind in "${order[@]}"; do measure_idle_echo "$round" "$kind"; done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------------------- the table
median() { # metric kind
    awk -F '\t' -v m="$1" -v k="$2" '$2 == m && $3 == k { print $4 }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) print "";
            else if (NR % 2) print v[(NR + 1) / 2];
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

fmt() { # value printf-format
    [ -z "$1" ] && { echo "—"; return; }
    awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'
}

ratio() { # a b
    if [ -z "$1" ] || [ -z "$2" ]; then
        echo "—"
        return
    fi
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (b == 0 && a == 0) print "=";
        else if (b == 0) print "—";
        else printf "%.2f", a / b }'
}

OPENSSL_SERVERS=$(sed -n 's/.*listening on [^ ]* (\([^;]*\);.*/\1/p' "$RUN/sslify-server.log" 2>/dev/null | head -n 1)
SSLIFY_CAP=$(sed -n 's/.*at most \([0-9]*\) handshakes at once.*/\1/p' "$RUN/sslify-server.log" 2>/dev/null | head -n 1)
NGINX_VERSION="left out: $NGINX_WHY"
if [ "$NGINX_OK" = 1 ]; then
    NGINX_VERSION="$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), $("$NGINX_BIN" -V 2>&1 |
        sed -n 's/^built with //p' | head -n 1)"
fi

SUMMARY="$RUN/summary.md"
{
    echo "## sslify benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "- command: \`$COMMAND_LINE\`"
    echo "- machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(uname -r)"
    echo "- OpenSSL of sslify-server and bare-server: ${OPENSSL_SERVERS:-unknown}; system: $(openssl version 2>/dev/null || echo unknown)"
    echo "- nginx: $NGINX_VERSION"
    echo "- every server: client certificate required, verify depth 5, 10 s handshake deadline, ticket count as each row says; sslify otherwise with its defaults (at most ${SSLIFY_CAP:-?} handshakes in progress)"
    echo "- $ROUNDS round(s), medians shown; handshakes ${HS_SECS} s × $WORKERS workers, probes ${PROBE_SECS} s, echo ${ECHO_SECS} s, $IDLE_CONNS idle connections; run took ${ELAPSED} s"
    echo "- server on core $SERVER_CORE, load client (rustls, TLS 1.3, X25519, client certificate, no resumption) on core $CLIENT_CORE"
    echo
    echo "| figure | better | sslify | bare | nginx | sslify ÷ bare | sslify ÷ nginx |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    while IFS='|' read -r metric label better format; do
        if [ "$format" = of ]; then
            # failures of attempts: "failed/attempts", no ratio
            cells=()
            for kind in sslify bare nginx; do
                f=$(median "$metric.failed" "$kind")
                a=$(median "$metric.attempts" "$kind")
                if [ -n "$f" ] && [ -n "$a" ]; then cells+=("$(fmt "$f" %.0f)/$(fmt "$a" %.0f)"); else cells+=("—"); fi
            done
            echo "| $label | $better | ${cells[0]} | ${cells[1]} | ${cells[2]} | — | — |"
            continue
        fi
        s=$(median "$metric" sslify)
        b=$(median "$metric" bare)
        n=$(median "$metric" nginx)
        echo "| $label | $better | $(fmt "$s" "$format") | $(fmt "$b" "$format") | $(fmt "$n" "$format") | $(ratio "$s" "$b") | $(ratio "$s" "$n") |"
    done <<EOF
ec.cpu_us|server CPU per full handshake, ECDSA P-256, no tickets (µs)|lower|%.0f
ec.rate|handshakes/s, ECDSA P-256, no tickets|higher|%.0f
ec2.cpu_us|server CPU per full handshake, ECDSA P-256, 2 tickets (µs)|lower|%.0f
ec2.rate|handshakes/s, ECDSA P-256, 2 tickets|higher|%.0f
rsa.cpu_us|server CPU per full handshake, RSA-2048, no tickets (µs)|lower|%.0f
rsa.rate|handshakes/s, RSA-2048, no tickets|higher|%.0f
probe.p50_ms|probe handshake latency, unloaded, median (ms)|lower|%.2f
probe.p99_ms|probe handshake latency, unloaded, p99 (ms)|lower|%.2f
probe|probe failures of attempts, unloaded|lower|of
stalled.p50_ms|probe latency, $SILENT silent + $STALLED stalled open, median (ms)|lower|%.2f
stalled.p99_ms|probe latency, $SILENT silent + $STALLED stalled open, p99 (ms)|lower|%.2f
stalled|probe failures of attempts, $SILENT silent + $STALLED stalled open|lower|of
idle.kib|RSS per established idle connection ($IDLE_CONNS) (KiB)|lower|%.1f
echo1.mib_s|echo, 1 connection, 16 KiB messages (MiB/s)|higher|%.0f
echo16.mib_s|echo, 16 connections, 16 KiB messages (MiB/s)|higher|%.0f
EOF
    echo
    echo "Checks (medians): session tickets received per handshake, no tickets / 2 tickets:" \
        "sslify $(fmt "$(median ec.tickets sslify)" %.2f) / $(fmt "$(median ec2.tickets sslify)" %.2f)," \
        "bare $(fmt "$(median ec.tickets bare)" %.2f) / $(fmt "$(median ec2.tickets bare)" %.2f)," \
        "nginx $(fmt "$(median ec.tickets nginx)" %.2f) / $(fmt "$(median ec2.tickets nginx)" %.2f)." \
        "Highest load-client CPU in a handshake-rate or echo measurement:" \
        "$(awk -F '\t' '$2 ~ /client_cpu$/ && $4 > m { m = $4 } END { printf "%.0f %%", m }' "$RESULTS")" \
        "(90 % or more means the client, not the server, may have been the limit)." \
        "Failed handshakes in rate measurements: $(awk -F '\t' '$2 ~ /\.failed$/ && $2 !~ /^(probe|stalled)/ { n += $4 } END { print n + 0 }' "$RESULTS")."
    if [ -n "$(median ec.tickets nginx)" ] && [ "$(median ec.tickets nginx)" != 0.00 ]; then
        echo
        echo "nginx has no setting for the number of TLS 1.3 session tickets: with" \
            "ssl_session_tickets off and ssl_session_cache off it still sent" \
            "$(median ec.tickets nginx) per handshake, so its no-tickets figures include them."
    fi
    if [ "$NGINX_OK" = 1 ]; then
        echo
        echo "nginx echoes by proxying to a plaintext echo server (bare-server --plain) on the" \
            "server core; its idle memory is the nginx worker's alone."
    fi
    if [ -s "$RUN/notes.txt" ]; then
        echo
        echo "Notes:"
        sed 's/^/- /' "$RUN/notes.txt"
    fi
    echo
    echo "Ratios are sslify's median divided by the other server's; \"better\" says which way is good."
} >"$SUMMARY"

echo
cat "$SUMMARY"
echo
echo "raw results and logs: $RUN"
