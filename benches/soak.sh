#!/usr/bin/env bash
# Soak test: `ragd serve` (release, real models, API keys) under mixed
# traffic from many clients with slow clients and disconnects, on loopback,
# for a bounded time. Reports RSS and open files over time, requests by
# kind and status, 5xx (none expected) and panics found in the server log.
#
#   benches/soak.sh [SECONDS] [CLIENTS]        (default 300 s, 64 clients)
#
# Environment: OUT_DIR (bench-results), RAGD_SERVE_ARGS (extra serve flags),
# RAGD_MODELS_DIR. Exit status 1 on any 5xx or panic.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
clients="${2:-64}"
out="${OUT_DIR:-bench-results}"
models="${RAGD_MODELS_DIR:-models/cache}"
mkdir -p "$out"
cargo build --release --bin ragd -q
ragd="${CARGO_TARGET_DIR:-target}/release/ragd"

work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

admin="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
echo "$admin" > "$work/admin.key"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# shellcheck disable=SC2086
"$ragd" serve --host 127.0.0.1 --port "$port" --models-dir "$models" \
    --data-dir "$work/data" --admin-key-file "$work/admin.key" \
    --semantic-cache-threshold 0.9 ${RAGD_SERVE_ARGS:-} > "$work/server.log" 2>&1 &
pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 600); do
    curl -sf -o /dev/null "$url/ready" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.5
done
key="$(curl -sf -X POST "$url/admin/keys" -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' -d '{"tenant": "soak"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')"

status=0
python3 benches/soak.py --url "$url" --pid "$pid" --key "$key" --clients "$clients" \
    --seconds "$seconds" --out "$out/soak.json" || status=$?
panics="$(grep -c -i 'panicked' "$work/server.log" || true)"
echo "panics in the server log: $panics"
kill -0 "$pid" 2>/dev/null || { echo "the server died"; status=1; }
cp "$work/server.log" "$out/soak-server.log"
[ "$panics" = "0" ] || status=1
exit "$status"
