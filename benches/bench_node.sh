#!/usr/bin/env bash
# `ragd bench node` against a fresh `ragd serve` (release build, the default
# models: SmolLM2 generator, MiniLM embedder, NanoGuard guard), optionally
# comparing its generation sweep with llama.cpp's llama-server on the same
# GGUF and thread count. Writes the Markdown table and the JSON.
#
#   benches/bench_node.sh [THREADS]          (default 2)
#
# Environment: CONCURRENCY (1,4,16), REQUESTS_PER_CLIENT (2), PROMPT_TOKENS
# (128), MAX_TOKENS (128), EMBED_TEXTS (1024), GUARD_TEXTS (256),
# COMPARE=llama-server (also run llama-server, LLAMA_NP slots, default 16,
# with --metrics, LLAMA_THREADS threads, default THREADS: on a machine whose
# cores other work shares, llama.cpp's threads spin at barriers and one
# thread can be much faster than two), RAGD_SERVE_ARGS (extra `ragd serve` flags), OUT
# (bench-results/bench_node: OUT.md and OUT.json).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
models="${RAGD_MODELS_DIR:-models/cache}"
gguf="$models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
out="${OUT:-bench-results/bench_node}"
mkdir -p "$(dirname "$out")"

# shellcheck source=benches/lib.sh
source benches/lib.sh

[ -f "$gguf" ] || models/fetch >/dev/null
env -u OUT_DIR cargo build --release --bin ragd -q
ragd="${CARGO_TARGET_DIR:-target}/release/ragd"

port="$(free_port)"
# shellcheck disable=SC2086
RAYON_NUM_THREADS="$threads" "$ragd" serve --host 127.0.0.1 --port "$port" --models-dir "$models" \
    --no-auth ${RAGD_SERVE_ARGS:-} >"$out.ragd.log" 2>&1 &
pids+=("$!")
wait_http "http://127.0.0.1:$port/ready" "$!"

compare=()
if [ "${COMPARE:-}" = llama-server ]; then
    llama_bin="$(benches/llama_server.sh build)"
    lport="$(free_port)"
    np="${LLAMA_NP:-16}"
    ctx=$((np * (${PROMPT_TOKENS:-128} + ${MAX_TOKENS:-128} + 64)))
    "$llama_bin" -m "$gguf" --host 127.0.0.1 --port "$lport" -np "$np" -c "$ctx" \
        -t "${LLAMA_THREADS:-$threads}" -tb "${LLAMA_THREADS:-$threads}" --cont-batching --no-webui --metrics >"$out.llama_server.log" 2>&1 &
    pids+=("$!")
    wait_http "http://127.0.0.1:$lport/health" "$!"
    compare=(--compare "http://127.0.0.1:$lport" --compare-label llama-server)
fi

"$ragd" bench node --url "http://127.0.0.1:$port" --concurrency "${CONCURRENCY:-1,4,16}" \
    --requests-per-client "${REQUESTS_PER_CLIENT:-2}" --prompt-tokens "${PROMPT_TOKENS:-128}" \
    --max-tokens "${MAX_TOKENS:-128}" --embed-texts "${EMBED_TEXTS:-1024}" \
    --guard-texts "${GUARD_TEXTS:-256}" "${compare[@]}" --json "$out.json" | tee "$out.md"
