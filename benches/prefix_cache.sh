#!/usr/bin/env bash
# Automatic prefix caching on RAG-shaped load: `ragd serve` with the prefix
# cache (the default) and then with `--no-prefix-cache`, one after the
# other on the same release build, model and thread count, each driven by
# `ragd bench generate --shared-prefix-tokens`: 16 clients (and a lone
# one) send streaming /v1/completions whose prompts share ~1,000 tokens of
# sources and end in
# a short question of their own (~24 tokens), 64 new tokens each
# (ignore_eos). Prints both runs and the ratios cached / uncached (TTFT:
# lower is better; tok/s: higher is), and writes them with the cache's own
# counters (/metrics) to one JSON file. With ROUNDS=N the pair runs N
# times in ABBA order (on, off, off, on, ...: a load that drifts during
# the run weighs on both alike) and the ratios are the medians over rounds.
#
#   benches/prefix_cache.sh [THREADS]     (default 2)
#
# Environment: ROUNDS (1), CONCURRENCY (1,16), REQUESTS_PER_CLIENT (4),
# SHARED_PREFIX_TOKENS (1000), PROMPT_TOKENS (24: the question),
# MAX_TOKENS (64), KV_CACHE_MB (512), RAGD_SERVE_ARGS (default: the
# generator alone, `--embedder none --guard none --no-auth`), OUT_DIR
# (bench-results), OUT_JSON ($OUT_DIR/prefix_cache.json). The binary is
# built in CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
conc="${CONCURRENCY:-1,16}"
per_client="${REQUESTS_PER_CLIENT:-4}"
shared_tokens="${SHARED_PREFIX_TOKENS:-1000}"
prompt_tokens="${PROMPT_TOKENS:-24}"
max_tokens="${MAX_TOKENS:-64}"
kv_mb="${KV_CACHE_MB:-512}"
models="${RAGD_MODELS_DIR:-models/cache}"
out="${OUT_DIR:-bench-results}"
out_json="${OUT_JSON:-$out/prefix_cache.json}"
rounds="${ROUNDS:-1}"
ragd="${CARGO_TARGET_DIR:-target}/release/ragd"
mkdir -p "$out"

# shellcheck source=benches/lib.sh
source benches/lib.sh

[ -d "$models/smollm2-135m-instruct-q4_1" ] || models/fetch --only smollm2-135m-instruct-q4_1 >/dev/null
# OUT_DIR would reach build scripts and rebuild crates: keep it from cargo.
env -u OUT_DIR cargo build --release --bin ragd -q

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

for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="cached uncached"; else order="uncached cached"; fi
    for label in $order; do
        if [ "$label" = cached ]; then flag=--prefix-cache; else flag=--no-prefix-cache; fi
        run "${label}_r$r" "$flag"
    done
done

python3 - "$out" "$rounds" "$threads" "$out_json" <<'PY'
import json, platform, statistics, subprocess, sys
out, rounds, threads, out_json = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def ratio(a, b):
    return a / b if a is not None and b else None
def metrics_of(path):
    m = {}
    for line in open(path):
        m[line.split()[0].split("{")[0]] = float(line.split()[-1])
    return m
runs = []
print(f"\n{'round':>5} {'conc':>4} | {'ttft_p50 on':>11} {'off':>8} {'ratio':>6} | {'tok/s on':>8} {'off':>7} {'ratio':>6}"
      f" | {'e2e_p50 on':>10} {'off':>8} | {'cached/prompt':>13} | errors")
for r in range(1, rounds + 1):
    on, off = (json.load(open(f"{out}/prefix_cache_{k}_r{r}.json")) for k in ("cached", "uncached"))
    levels = []
    for a, b in zip(on["levels"], off["levels"]):
        x = {
            "concurrency": a["concurrency"],
            "ttft_p50_ratio": ratio(a["ttft_p50_ms"], b["ttft_p50_ms"]),
            "ttft_p99_ratio": ratio(a["ttft_p99_ms"], b["ttft_p99_ms"]),
            "throughput_ratio": ratio(a["output_tokens_per_s"], b["output_tokens_per_s"]),
            "e2e_p50_ratio": ratio(a["e2e_p50_ms"], b["e2e_p50_ms"]),
        }
        levels.append(x)
        print(f"{r:>5} {a['concurrency']:>4} | {a['ttft_p50_ms']:>11.0f} {b['ttft_p50_ms']:>8.0f} {x['ttft_p50_ratio']:>6.2f}"
              f" | {a['output_tokens_per_s']:>8.1f} {b['output_tokens_per_s']:>7.1f} {x['throughput_ratio']:>6.2f}"
              f" | {a['e2e_p50_ms']:>10.0f} {b['e2e_p50_ms']:>8.0f}"
              f" | {a.get('cached_tokens_mean') or 0:>6.0f}/{a.get('prompt_tokens_mean') or 0:<6.0f}"
              f" | {a['errors']}/{b['errors']}")
    runs.append({"round": r, "cached": on, "uncached": off,
                 "cached_metrics": metrics_of(f"{out}/prefix_cache_cached_r{r}_metrics.txt"), "ratios": levels})
print("ratio = with the prefix cache / without (ttft, e2e: < 1 is better; tok/s: > 1 is better)")
medians = []
for i, level in enumerate(runs[0]["ratios"]):
    med = {"concurrency": level["concurrency"]}
    for k in ("ttft_p50_ratio", "ttft_p99_ratio", "throughput_ratio", "e2e_p50_ratio"):
        xs = [run["ratios"][i][k] for run in runs if run["ratios"][i][k] is not None]
        med[k] = statistics.median(xs) if xs else None
    medians.append(med)
    if rounds > 1:
        print(f"median of {rounds} rounds, {med['concurrency']} clients: TTFT p50 {med['ttft_p50_ratio']:.2f}x,"
              f" throughput {med['throughput_ratio']:.2f}x")
for run in runs:
    m = run["cached_metrics"]
    hit, queried = m.get("ragd_prefix_cache_hit_tokens_total"), m.get("ragd_prefix_cache_queried_tokens_total")
    if hit is not None and queried:
        print(f"prefix cache, round {run['round']} (warm-up included): {hit:.0f} of {queried:.0f} prompt tokens hit ({hit / queried:.1%})")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
json.dump({
    "bench": "prefix_cache",
    "threads": threads,
    "cpu": cpu or platform.processor(),
    "load_average_at_end": [float(x) for x in load],
    "rounds": runs,
    "median_ratios": medians,
}, open(out_json, "w"), indent=2)
print(f"wrote {out_json}")
PY
