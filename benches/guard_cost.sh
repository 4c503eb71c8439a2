#!/usr/bin/env bash
# What the guard costs on the RAG path: `ragd serve` with the embedder,
# the guard and the generator, once with `--guard-chat` (the guard scores
# the question while retrieval runs, then every retrieved chunk before it
# goes into the prompt) and once without, the same models loaded both
# times, one after the other on the same release build. Each run is
# driven by `ragd bench generate --rag-collection`: 16 clients send
# streaming RAG chat requests (a numbered question about ragd, top_k chunks
# of ragd's own docs, 64 new tokens, ignore_eos). Prints both runs and the
# ratios on / off of the end-to-end p50 (the issue's figure), TTFT p50 and
# throughput, and writes them to one JSON file. With ROUNDS=N the pair
# runs N times in ABBA order and the ratios are the medians over rounds.
#
#   benches/guard_cost.sh [GUARD] [THREADS]     (default nanoguard, 2)
#
# GUARD may be several, comma-separated (`nanoguard,trained-guard`).
# Environment: ROUNDS (1), CONCURRENCY (16), REQUESTS_PER_CLIENT (4),
# MAX_TOKENS (64), TOP_K (3), GUARD_THRESHOLD (0.5; `fpr:0.01` for a
# trained guard),
# OUT_DIR (bench-results), OUT_JSON ($OUT_DIR/guard_cost.json). The binary
# is built in CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."
guard="${1:-nanoguard}"
threads="${2:-2}"
conc="${CONCURRENCY:-16}"
per_client="${REQUESTS_PER_CLIENT:-4}"
max_tokens="${MAX_TOKENS:-64}"
top_k="${TOP_K:-3}"
threshold="${GUARD_THRESHOLD:-0.5}"
models="${RAGD_MODELS_DIR:-models/cache}"
out="${OUT_DIR:-bench-results}"
out_json="${OUT_JSON:-$out/guard_cost.json}"
rounds="${ROUNDS:-1}"
ragd="${CARGO_TARGET_DIR:-target}/release/ragd"
mkdir -p "$out"
# shellcheck source=benches/lib.sh
source benches/lib.sh

models/fetch --dir "$models" >/dev/null
# OUT_DIR would reach build scripts and rebuild crates: keep it from cargo.
env -u OUT_DIR cargo build --release --bin ragd -q

# run LABEL [FLAGS...]: one server with a fresh collection of ragd's docs, one bench.
run() {
    local label="$1"
    shift
    local port pid data base
    port="$(free_port)"
    data="$(mktemp -d)"
    RAYON_NUM_THREADS="$threads" "$ragd" serve --host 127.0.0.1 --port "$port" --models-dir "$models" \
        --no-auth --data-dir "$data" --guard "$guard" --guard-threshold "$threshold" \
        --response-cache-mb 0 "$@" >"$out/guard_cost_${label}_server.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    base="http://127.0.0.1:$port"
    wait_http "$base/ready" "$pid"
    curl -sf "$base/v1/collections" -H 'content-type: application/json' -d '{"name": "docs"}' >/dev/null
    curl -sf "$base/v1/collections/docs/files" -F file=@README.md -F file=@ARCHITECTURE.md \
        -F "file=@benches/README.md;filename=benches-README.md" >/dev/null
    "$ragd" bench generate --url "$base" --label "guard $label" --concurrency "$conc" \
        --requests-per-client "$per_client" --max-tokens "$max_tokens" \
        --rag-collection docs --rag-top-k "$top_k" --json "$out/guard_cost_${label}.json"
    curl -sf "$base/metrics" | grep -E '^ragd_guard_|^ragd_batch_' >"$out/guard_cost_${label}_metrics.txt" || true
    stop "$pid"
    rm -rf "$data"
}

for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
    for label in $order; do
        if [ "$label" = on ]; then run "on_r$r" --guard-chat; else run "off_r$r"; fi
    done
done

python3 - "$out" "$rounds" "$threads" "$out_json" "$guard" "$top_k" <<'PY'
import json, platform, statistics, sys
out, rounds, threads, out_json, guard, top_k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
keys = {"e2e_p50": "e2e_p50_ms", "ttft_p50": "ttft_p50_ms", "throughput": "output_tokens_per_s"}
runs = []
print(f"\n{'round':>5} | {'e2e_p50 on':>10} {'off':>8} {'ratio':>6} | {'ttft_p50 on':>11} {'off':>8} {'ratio':>6}"
      f" | {'tok/s on':>8} {'off':>7} {'ratio':>6} | errors")
for r in range(1, rounds + 1):
    on, off = (json.load(open(f"{out}/guard_cost_{k}_r{r}.json"))["levels"][0] for k in ("on", "off"))
    for name, run in (("on", on), ("off", off)):
        if run["errors"]:
            print(f"round {r}, guard {name}: {run['errors']} requests refused or failed: {run['first_error']}")
    ratios = {k: on[v] / off[v] for k, v in keys.items()}
    print(f"{r:>5} | {on['e2e_p50_ms']:>10.0f} {off['e2e_p50_ms']:>8.0f} {ratios['e2e_p50']:>6.3f}"
          f" | {on['ttft_p50_ms']:>11.0f} {off['ttft_p50_ms']:>8.0f} {ratios['ttft_p50']:>6.3f}"
          f" | {on['output_tokens_per_s']:>8.1f} {off['output_tokens_per_s']:>7.1f} {ratios['throughput']:>6.3f}"
          f" | {on['errors']}/{off['errors']}")
    metrics = open(f"{out}/guard_cost_on_r{r}_metrics.txt").read()
    runs.append({"round": r, "on": on, "off": off, "ratios": ratios, "on_metrics": metrics})
medians = {k: statistics.median(run["ratios"][k] for run in runs) for k in keys}
print(f"guard {guard} on / off, {runs[0]['on']['concurrency']} clients, top_k {top_k}: "
      f"e2e p50 {medians['e2e_p50']:.3f}x, TTFT p50 {medians['ttft_p50']:.3f}x, throughput {medians['throughput']:.3f}x"
      f" (median of {rounds} round(s))")
json.dump({"bench": "guard_cost", "guard": guard, "top_k": top_k, "threads": threads, "rounds": runs,
           "median_ratios": medians, "machine": platform.platform(), "cpus": __import__("os").cpu_count()},
          open(out_json, "w"), indent=1)
print(f"wrote {out_json}")
PY
