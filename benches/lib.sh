# Shell helpers the benchmark scripts share: `source benches/lib.sh`.

# Servers started by the script (`pids+=("$!")`), stopped on exit.
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL PID: until URL answers 200, or the server exits, or 300 s.
wait_http() {
    for _ in $(seq 600); do
        if curl -sf -o /dev/null "$1"; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "server exited before $1 answered" >&2; return 1; }
        sleep 0.5
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# stop PID: the server, and wait for it.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
