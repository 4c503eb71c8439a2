#!/usr/bin/env bash
# Answer quality per generator: `ragd eval rag --squad` against a release
# `ragd serve` for each generator in turn (one server at a time), all on
# one collection of SQuAD v1.1 dev paragraphs (loaded by the first run into
# a data folder, reused by the next), then one table of exact match and F1.
#
#   benches/eval_rag_generators.sh [GENERATOR...]
#       (default: smollm2-135m-instruct-q4_1 qwen2.5-coder-0.5b-instruct-q4_k_m
#        qwen2.5-coder-1.5b-instruct-q4_k_m)
#
# Environment: SQUAD (../shared/data/squaddev_v1.1.json), ANSWERS (200
# answered questions), RETRIEVAL (2000 retrieval questions), MODES (the
# retrieval modes; default dense,lexical,hybrid), THREADS (2), DATA_DIR (a
# fresh folder under OUT_DIR: its collection is reused across runs when it
# is given again), EVAL_ARGS (more `ragd eval rag` flags), RAGD_SERVE_ARGS
# (more `ragd serve` flags), OUT_DIR (bench-results), RAGD_BIN (a ragd
# binary to run instead of building one: a long run then survives edits
# to the working tree). Each generator's report is
# OUT_DIR/eval_rag_GENERATOR.json.
set -euo pipefail
cd "$(dirname "$0")/.."
squad="${SQUAD:-../shared/data/squaddev_v1.1.json}"
models="${RAGD_MODELS_DIR:-models/cache}"
threads="${THREADS:-2}"
out="${OUT_DIR:-bench-results}"
data="${DATA_DIR:-$out/eval_rag_data}"
mkdir -p "$out" "$data"
if [ $# -eq 0 ]; then
    set -- smollm2-135m-instruct-q4_1 qwen2.5-coder-0.5b-instruct-q4_k_m qwen2.5-coder-1.5b-instruct-q4_k_m
fi

# shellcheck source=benches/lib.sh
source benches/lib.sh

if [ -n "${RAGD_BIN:-}" ]; then
    ragd="$RAGD_BIN"
else
    # OUT_DIR would reach build scripts and rebuild crates: keep it from cargo.
    env -u OUT_DIR cargo build --release --bin ragd -q
    ragd="${CARGO_TARGET_DIR:-target}/release/ragd"
fi

for gen in "$@"; do
    [ -e "$models/$gen" ] || models/fetch --only "$gen" >/dev/null
    port="$(free_port)"
    # shellcheck disable=SC2086
    RAYON_NUM_THREADS="$threads" "$ragd" serve --host 127.0.0.1 --port "$port" --models-dir "$models" \
        --data-dir "$data" --generator "$gen" --guard none --no-auth ${RAGD_SERVE_ARGS:-} \
        >"$out/eval_rag_${gen}_server.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_http "http://127.0.0.1:$port/ready" "$pid"
    # shellcheck disable=SC2086
    "$ragd" eval rag --url "http://127.0.0.1:$port" --squad "$squad" --reuse \
        --retrieval-questions "${RETRIEVAL:-2000}" --modes "${MODES:-dense,lexical,hybrid}" \
        --answer-questions "${ANSWERS:-200}" --json "$out/eval_rag_$gen.json" ${EVAL_ARGS:-}
    stop "$pid"
done

python3 - "$out" "$@" <<'PY'
import json, sys
out, gens = sys.argv[1], sys.argv[2:]
print(f"\n{'generator':<38} {'answers':>7} {'EM':>6} {'F1':>6} {'gold in sources':>15} {'p50 s':>7}")
for g in gens:
    a = json.load(open(f"{out}/eval_rag_{g}.json"))["answers"]
    p50 = a["latency_ms_p50"] / 1e3 if a["latency_ms_p50"] is not None else float("nan")
    print(f"{g:<38} {a['questions']:>7} {a['exact_match']:>6.3f} {a['f1']:>6.3f}"
          f" {a['gold_paragraph_in_sources']:>15.3f} {p50:>7.1f}")
PY
