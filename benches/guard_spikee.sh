#!/usr/bin/env bash
# How often the guard (default: NanoGuard, threshold 0.5) flags benign
# questions and catches attacks, on spikee 0.9.2's seed datasets (PyPI),
# through `ragd serve`'s /v1/moderations. Prints the rates and writes
# $OUT_DIR/guard_spikee.json. About 16 minutes on 2 cores (4,700 texts).
#
#   benches/guard_spikee.sh            (RAGD_SERVE_ARGS for other guards)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT_DIR:-bench-results}"
mkdir -p "$out"
wheels="${RAGD_WHEEL_CACHE:-$HOME/.cache/ragd/wheels}"
mkdir -p "$wheels"
wheel="$wheels/spikee-0.9.2-py3-none-any.whl"
[ -f "$wheel" ] || pip download --no-deps -q -d "$wheels" spikee==0.9.2
data="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT INT TERM
python3 -m zipfile -e "$wheel" "$data"

cargo build --release --bin ragd -q
target/release/ragd serve --no-auth --port 0 --data-dir "$data/ragd" --embedder none --generator none \
    ${RAGD_SERVE_ARGS:-} >"$out/guard_spikee_server.log" 2>&1 &
server=$!
base=""
for _ in $(seq 300); do
    base="$(grep -o 'http://127.0.0.1:[0-9]*' "$out/guard_spikee_server.log" | head -1 || true)"
    [ -n "$base" ] && curl -sf -o /dev/null "$base/ready" && break
    kill -0 "$server" 2>/dev/null || { cat "$out/guard_spikee_server.log" >&2; exit 1; }
    sleep 1
done
python3 benches/guard_spikee.py "$base" "$data/spikee/data/workspace/datasets" "$out/guard_spikee.json"
