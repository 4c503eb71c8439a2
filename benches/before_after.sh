#!/usr/bin/env bash
# Throughput of two ragd binaries in one run, alternating (A B A B ...) so
# that drift of a noisy machine hits both: generation (`ragd bench
# generate` against each one's server, 1 and 16 clients, 128 prompt + 128
# output tokens) and embedding (`ragd bench embed`, as in
# benches/embed_throughput.sh). Prints per-round figures and the medians'
# ratios after / before.
#
#   benches/before_after.sh BEFORE_BIN AFTER_BIN [ROUNDS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
before="$1"; after="$2"; rounds="${3:-2}"; threads="${4:-2}"
models="${RAGD_MODELS_DIR:-models/cache}"
squad="${SQUAD:-../shared/data/squaddev_v1.1.json}"
out="${OUT_DIR:-bench-results}/before_after"
mkdir -p "$out"
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

generate() { # BIN LABEL ROUND
    local port pid
    port="$(free_port)"
    "$1" serve --host 127.0.0.1 --port "$port" --models-dir "$models" --embedder none --guard none --no-auth \
        >"$out/server_$2_$3.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/ready" && break; sleep 0.5; done
    # One client binary for both, so only the server differs.
    "$after" bench generate --url "http://127.0.0.1:$port" --label "$2" --concurrency 1,16 \
        --requests-per-client 4 --prompt-tokens 128 --max-tokens 128 --json "$out/generate_$2_$3.json" >/dev/null
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

embed() { # BIN LABEL ROUND
    "$1" bench embed --squad "$squad" --models-dir "$models" --json >"$out/embed_$2_$3.json"
}

for r in $(seq "$rounds"); do
    for side in before after; do
        bin="$before"; [ "$side" = after ] && bin="$after"
        generate "$bin" "$side" "$r"
        embed "$bin" "$side" "$r"
    done
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def gen(side, r, c):
    levels = json.load(open(f"{out}/generate_{side}_{r}.json"))["levels"]
    return next(l["output_tokens_per_s"] for l in levels if l["concurrency"] == c)
def emb(side, r, k):
    return json.load(open(f"{out}/embed_{side}_{r}.json"))["results"][k]["sentences_per_second"]
rows = [("generate tok/s, 1 client", lambda s, r: gen(s, r, 1)),
        ("generate tok/s, 16 clients", lambda s, r: gen(s, r, 16)),
        ("embed queries/s", lambda s, r: emb(s, r, "queries")),
        ("embed passages/s", lambda s, r: emb(s, r, "passages"))]
summary = {}
print(f"{'measure':<28} {'before':>20} {'after':>20} {'ratio':>7}")
for name, f in rows:
    b = [f("before", r) for r in range(1, rounds + 1)]
    a = [f("after", r) for r in range(1, rounds + 1)]
    mb, ma = statistics.median(b), statistics.median(a)
    summary[name] = {"before": b, "after": a, "ratio_of_medians": ma / mb}
    fmt = lambda xs: "/".join(f"{x:.1f}" for x in xs)
    print(f"{name:<28} {fmt(b):>20} {fmt(a):>20} {ma / mb:>7.3f}")
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
PY
