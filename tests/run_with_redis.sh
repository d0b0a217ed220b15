#!/bin/sh
# run_with_redis.sh -- runs a command against a Redis server of its own: starts redis-server on a
# free loopback port (no persistence, a temporary directory), waits until it answers, runs the
# command with TH_TEST_REDIS_URL=redis://127.0.0.1:PORT/0 and stops the server however the
# command ends. Exits with the command's status; 77 (ctest: skipped) without redis-server.
# Usage: run_with_redis.sh COMMAND [ARG...]
set -eu
if [ $# -eq 0 ]; then
    echo "usage: run_with_redis.sh COMMAND [ARG...]" >&2
    exit 2
fi
for tool in redis-server redis-cli; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run_with_redis.sh: $tool is not installed (Debian: redis-server); skipping" >&2
        exit 77
    fi
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/th_redis_XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# The server answering on the port must be ours (another may hold a port we picked): INFO says
# its process id.
ours() {
    redis-cli -h 127.0.0.1 -p "$1" info server 2>/dev/null | tr -d '\r' |
        grep -qx "process_id:$pid"
}

port=""
attempt=0
while [ -z "$port" ] && [ "$attempt" -lt 20 ]; do
    attempt=$((attempt + 1))
    candidate=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
    redis-server --port "$candidate" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$dir" --logfile "$dir/redis.log" &
    pid=$!
    tries=0
    while [ "$tries" -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
        if ours "$candidate"; then
            port=$candidate
            break
        fi
        tries=$((tries + 1))
        sleep 0.1
    done
    if [ -z "$port" ]; then
        # Port taken (the server exited) or no answer in 10 s: try another port.
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
done
if [ -z "$port" ]; then
    echo "run_with_redis.sh: could not start redis-server; its log:" >&2
    cat "$dir/redis.log" >&2 2>/dev/null || true
    exit 1
fi

echo "run_with_redis.sh: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$port"
status=0
TH_TEST_REDIS_URL="redis://127.0.0.1:$port/0" "$@" || status=$?
exit "$status"
