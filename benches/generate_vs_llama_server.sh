#!/usr/bin/env bash
# Generation under load: ragd vs llama.cpp's llama-server (continuous
# batching, 16 slots) on the same GGUF and thread count, one server after the
# other (never both at once), driven by `ragd bench generate`: streaming
# /v1/completions, concurrency 1,4,16, 4 requests per client, 128-token
# prompts, 128 new tokens (ignore_eos). Prints both and the ratios
# ragd / llama-server (tok/s: higher is better for ragd; latencies: lower is).
#
#   benches/generate_vs_llama_server.sh [THREADS]     (default 2)
#
# Environment: CONCURRENCY (1,4,16), REQUESTS_PER_CLIENT (4), PROMPT_TOKENS
# (128), MAX_TOKENS (128), GGUF (the default SmolLM2 Q4_1; another GGUF is
# served by ragd as `--generator` its folder, which must hold only that
# GGUF), RAGD_SERVE_ARGS (flags for `ragd serve`; default: the generator
# alone, `--embedder none --guard none`, and `--no-auth` where the binary
# has it), KV_CACHE_MB (512),
# SKIP_RAGD=1 (llama-server only), OUT_DIR (bench-results). llama-server is
# built once by benches/llama_server.sh.
#
# Also reports ragd's peak resident memory (VmHWM) next to its budget: the
# GGUF file plus the configured KV cache.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
conc="${CONCURRENCY:-1,4,16}"
per_client="${REQUESTS_PER_CLIENT:-4}"
prompt_tokens="${PROMPT_TOKENS:-128}"
max_tokens="${MAX_TOKENS:-128}"
models="${RAGD_MODELS_DIR:-models/cache}"
gguf="${GGUF:-$models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf}"
out="${OUT_DIR:-bench-results}"
mkdir -p "$out"

# shellcheck source=benches/lib.sh
source benches/lib.sh

bench() { # URL LABEL OUT.json
    "$ragd" bench generate --url "$1" --label "$2" --concurrency "$conc" \
        --requests-per-client "$per_client" --prompt-tokens "$prompt_tokens" --max-tokens "$max_tokens" \
        --json "$3"
}

[ -f "$gguf" ] || models/fetch --only smollm2-135m-instruct-q4_1 >/dev/null
llama_bin="$(benches/llama_server.sh build)"
# OUT_DIR would reach build scripts and rebuild crates: keep it from cargo.
env -u OUT_DIR cargo build --release --bin ragd -q
ragd="${CARGO_TARGET_DIR:-target}/release/ragd"

kv_mb="${KV_CACHE_MB:-512}"
serve_args="${RAGD_SERVE_ARGS:---embedder none --guard none}"
if [ -n "${GGUF:-}" ]; then
    serve_args="$serve_args --generator $(dirname "$gguf")"
fi
if "$ragd" serve --help | grep -q -- --no-auth; then
    serve_args="$serve_args --no-auth"
fi
if [ "${SKIP_RAGD:-0}" != 1 ]; then
    port="$(free_port)"
    # shellcheck disable=SC2086
    RAYON_NUM_THREADS="$threads" "$ragd" serve --host 127.0.0.1 --port "$port" --models-dir "$models" \
        --kv-cache-mb "$kv_mb" $serve_args >"$out/generate_ragd_server.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_http "http://127.0.0.1:$port/ready" "$pid"
    bench "http://127.0.0.1:$port" ragd "$out/generate_ragd.json"
    peak_kb="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
    stop "$pid"
    weights_mb=$(( $(stat -c %s "$gguf") / 1048576 ))
    echo "ragd peak RSS: $((peak_kb / 1024)) MiB; budget: weights $weights_mb MiB + KV cache $kv_mb MiB = $((weights_mb + kv_mb)) MiB" \
        | tee "$out/generate_ragd_rss.txt"
fi

port="$(free_port)"
np=16
"$llama_bin" -m "$gguf" --host 127.0.0.1 --port "$port" -np "$np" -c $((np * (prompt_tokens + max_tokens + 64))) \
    -t "$threads" -tb "$threads" --cont-batching --no-webui >"$out/generate_llama_server.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_http "http://127.0.0.1:$port/health" "$pid"
bench "http://127.0.0.1:$port" llama-server "$out/generate_llama_server.json"
stop "$pid"

[ "${SKIP_RAGD:-0}" != 1 ] || exit 0
python3 - "$out/generate_ragd.json" "$out/generate_llama_server.json" <<'PY'
import json, sys
r, l = (json.load(open(p)) for p in sys.argv[1:3])
def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"
def f(x, spec):
    return "-" if x is None else format(x, spec)
print(f"\n{'conc':>4} | {'tok/s ragd':>10} {'llama':>8} {'ratio':>6} | {'ttft_p50 ragd':>13} {'llama':>8} {'ratio':>6}"
      f" | {'itl_p50 ragd':>12} {'llama':>7} {'ratio':>6} | errors")
for a, b in zip(r["levels"], l["levels"]):
    ta, tb = a["output_tokens_per_s"], b["output_tokens_per_s"]
    print(f"{a['concurrency']:>4} | {ta:>10.1f} {tb:>8.1f} {ratio(ta, tb):>6}"
          f" | {f(a['ttft_p50_ms'], '.0f'):>13} {f(b['ttft_p50_ms'], '.0f'):>8} {ratio(a['ttft_p50_ms'], b['ttft_p50_ms']):>6}"
          f" | {f(a['itl_p50_ms'], '.1f'):>12} {f(b['itl_p50_ms'], '.1f'):>7} {ratio(a['itl_p50_ms'], b['itl_p50_ms']):>6}"
          f" | {a['errors']}/{b['errors']}")
print("ratio = ragd / llama-server (tok/s: > 1 is better; ttft, itl in ms: < 1 is better)")
PY
