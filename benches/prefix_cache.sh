#!/usr/bin/env bash
# Automatic prefix caching on RAG-shaped load: `ragd serve` with the prefix
# cache (the default) and then with `--no-prefix-cache`, one after the
# other on the same release build, model and thread count, each driven by
# `ragd bench generate --shared-prefix-tokens`: 16 clients send streaming
# /v1/completions whose prompts share ~1,000 tokens of sources and end in
# a short question of their own (~24 tokens), 64 new tokens each
# (ignore_eos). Prints both runs and the ratios cached / uncached (TTFT:
# lower is better; tok/s: higher is), and writes them with the cache's own
# counters (/metrics) to one JSON file.
#
#   benches/prefix_cache.sh [THREADS]     (default 2)
#
# Environment: CONCURRENCY (16), REQUESTS_PER_CLIENT (4),
# SHARED_PREFIX_TOKENS (1000), PROMPT_TOKENS (24: the question),
# MAX_TOKENS (64), KV_CACHE_MB (512), RAGD_SERVE_ARGS (default: the
# generator alone, `--embedder none --guard none --no-auth`), OUT_DIR
# (bench-results), OUT_JSON ($OUT_DIR/prefix_cache.json). The binary is
# built in CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
conc="${CONCURRENCY:-16}"
per_client="${REQUESTS_PER_CLIENT:-4}"
shared_tokens="${SHARED_PREFIX_TOKENS:-1000}"
prompt_tokens="${PROMPT_TOKENS:-24}"
max_tokens="${MAX_TOKENS:-64}"
kv_mb="${KV_CACHE_MB:-512}"
models="${RAGD_MODELS_DIR:-models/cache}"
out="${OUT_DIR:-bench-results}"
out_json="${OUT_JSON:-$out/prefix_cache.json}"
ragd="${CARGO_TARGET_DIR:-target}/release/ragd"
mkdir -p "$out"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

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

[ -d "$models/smollm2-135m-instruct-q4_1" ] || models/fetch --only smollm2-135m-instruct-q4_1 >/dev/null
cargo build --release --bin ragd -q

serve_args="${RAGD_SERVE_ARGS:---embedder none --guard none --no-auth}"

# run LABEL [FLAGS...]: one server, one bench, its /metrics kept.
run() {
    local label="$1"
    shift
    local port pid
    port="$(free_port)"
    # shellcheck disable=SC2086
    RAYON_NUM_THREADS="$threads" "$ragd" serve --host 127.0.0.1 --port "$port" --models-dir "$models" \
        --kv-cache-mb "$kv_mb" $serve_args "$@" >"$out/prefix_cache_${label}_server.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_http "http://127.0.0.1:$port/ready" "$pid"
    "$ragd" bench generate --url "http://127.0.0.1:$port" --label "ragd $label" --concurrency "$conc" \
        --requests-per-client "$per_client" --shared-prefix-tokens "$shared_tokens" \
        --prompt-tokens "$prompt_tokens" --max-tokens "$max_tokens" --json "$out/prefix_cache_${label}.json"
    curl -sf "http://127.0.0.1:$port/metrics" | grep '^ragd_prefix_cache_' >"$out/prefix_cache_${label}_metrics.txt" || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

run cached --prefix-cache
run uncached --no-prefix-cache

python3 - "$out/prefix_cache_cached.json" "$out/prefix_cache_uncached.json" \
    "$out/prefix_cache_cached_metrics.txt" "$threads" "$out_json" <<'PY'
import json, platform, subprocess, sys
on, off = (json.load(open(p)) for p in sys.argv[1:3])
metrics = {}
for line in open(sys.argv[3]):
    name, value = line.split()[0], float(line.split()[-1])
    metrics[name.split("{")[0]] = value
def ratio(a, b):
    return a / b if a is not None and b else None
levels = []
print(f"\n{'conc':>4} | {'ttft_p50 on':>11} {'off':>8} {'ratio':>6} | {'tok/s on':>8} {'off':>7} {'ratio':>6}"
      f" | {'e2e_p50 on':>10} {'off':>8} | {'cached/prompt':>13} | errors")
for a, b in zip(on["levels"], off["levels"]):
    r = {
        "concurrency": a["concurrency"],
        "ttft_p50_ratio": ratio(a["ttft_p50_ms"], b["ttft_p50_ms"]),
        "ttft_p99_ratio": ratio(a["ttft_p99_ms"], b["ttft_p99_ms"]),
        "throughput_ratio": ratio(a["output_tokens_per_s"], b["output_tokens_per_s"]),
        "e2e_p50_ratio": ratio(a["e2e_p50_ms"], b["e2e_p50_ms"]),
    }
    levels.append(r)
    print(f"{a['concurrency']:>4} | {a['ttft_p50_ms']:>11.0f} {b['ttft_p50_ms']:>8.0f} {r['ttft_p50_ratio']:>6.2f}"
          f" | {a['output_tokens_per_s']:>8.1f} {b['output_tokens_per_s']:>7.1f} {r['throughput_ratio']:>6.2f}"
          f" | {a['e2e_p50_ms']:>10.0f} {b['e2e_p50_ms']:>8.0f}"
          f" | {a.get('cached_tokens_mean') or 0:>6.0f}/{a.get('prompt_tokens_mean') or 0:<6.0f}"
          f" | {a['errors']}/{b['errors']}")
print("ratio = with the prefix cache / without (ttft, e2e: < 1 is better; tok/s: > 1 is better)")
hit, queried = metrics.get("ragd_prefix_cache_hit_tokens_total"), metrics.get("ragd_prefix_cache_queried_tokens_total")
if hit is not None and queried:
    print(f"prefix cache (cached run, warm-up included): {hit:.0f} of {queried:.0f} prompt tokens hit ({hit / queried:.1%})")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
json.dump({
    "bench": "prefix_cache",
    "threads": int(sys.argv[4]),
    "cpu": cpu or platform.processor(),
    "cached": on,
    "uncached": off,
    "cached_metrics": metrics,
    "ratios": levels,
}, open(sys.argv[5], "w"), indent=2)
print(f"wrote {sys.argv[5]}")
PY
