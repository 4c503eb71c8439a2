#!/usr/bin/env bash
# ragd's HNSW shard vs hnswlib on the same real vectors, in the same run:
# recall@10 against exact search, build time (THREADS threads) and
# single-thread queries/s per ef_search, and the ratios ragd / hnswlib
# (build time; queries/s at equal recall). Also PASS/FAIL for recall@10
# >= 0.98 at ragd's default ef_search.
#
#   benches/hnsw_vs_hnswlib.sh [THREADS]      (default 2)
#
# Vectors: ragd's all-MiniLM-L6-v2 embedder on SQuAD v1.1 dev (questions as
# queries; paragraphs, sentences and 32-word windows as the base set), cached
# with the exact top 10 under $RAGD_BENCH_DATA (default ~/.cache/ragd/bench).
# The peer runs in a venv with numpy + hnswlib at $RAGD_BENCH_VENV (default
# ~/.cache/ragd/bench-venv), made on first use. EF overrides the ef list.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
squad="${SQUAD:-../shared/data/squaddev_v1.1.json}"
data="${RAGD_BENCH_DATA:-$HOME/.cache/ragd/bench}"
venv="${RAGD_BENCH_VENV:-$HOME/.cache/ragd/bench-venv}"
efs="${EF:-16,32,64,96,128,256}"
out="${OUT_DIR:-bench-results}"
mkdir -p "$out"

if ! "$venv/bin/python" -c 'import numpy, hnswlib' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy 'hnswlib==0.8.0'
fi
models/fetch --only all-minilm-l6-v2 >/dev/null
cargo build --release -p ragd-index --example hnsw_bench -q
bin="${CARGO_TARGET_DIR:-target}/release/examples/hnsw_bench"
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"

"$bin" embed --data "$data" --squad "$squad"
"$bin" bench --data "$data" --ef "$efs" > "$out/hnsw_ragd.json"
"$venv/bin/python" benches/hnswlib_peer.py --data "$data" --threads "$threads" --ef "$efs" > "$out/hnsw_hnswlib.json"

"$venv/bin/python" - "$out/hnsw_ragd.json" "$out/hnsw_hnswlib.json" <<'PY'
import json, math, sys
r, h = (json.load(open(p)) for p in sys.argv[1:3])
TARGET = 0.98
print(f"\n{r['n_base']} base vectors x {r['dim']}, {r['n_queries']} queries (recall), "
      f"{r['n_timing_queries']} (QPS, 1 thread, best of {r['runs']}); M {r['m']}, ef_construction {r['ef_construction']}")
print(f"build ({r['build_threads']} threads): ragd {r['build_s']:.1f} s, hnswlib {h['build_s']:.1f} s, "
      f"ragd/hnswlib {r['build_s'] / h['build_s']:.2f}")
hrows = {x["ef"]: x for x in h["results"]}
curve = [(x["recall"], x["qps_best"]) for x in sorted(h["results"], key=lambda x: x["ef"])]

def hnswlib_qps_at(recall):
    """hnswlib's QPS at `recall`: between its two ef values around it,
    log QPS linear in recall; None outside its curve."""
    i = next((i for i, (r1, _) in enumerate(curve) if r1 >= recall), None)
    if i is None or (i == 0 and curve[0][0] > recall):
        return None
    if i == 0 or curve[i][0] == recall:
        return curve[i][1]
    (r0, q0), (r1, q1) = curve[i - 1], curve[i]
    f = (recall - r0) / (r1 - r0)
    return math.exp(math.log(q0) + f * (math.log(q1) - math.log(q0)))

print(f"\n{'ef':>5} {'ragd R@10':>9} {'ragd QPS':>9} {'hnswlib R@10':>12} {'hnswlib QPS':>11} "
      f"{'hnswlib QPS @ragd R':>19} {'ragd/hnswlib':>12}")
for x in r["results"]:
    y = hrows.get(x["ef"], {})
    at = hnswlib_qps_at(x["recall"])
    tag = "  <- ragd default" if x["ef"] == r["default_ef"] else ""
    print(f"{x['ef']:>5} {x['recall']:>9.4f} {x['qps_best']:>9.0f} {y.get('recall', float('nan')):>12.4f} "
          f"{y.get('qps_best', float('nan')):>11.0f} {at or float('nan'):>19.0f} "
          f"{(x['qps_best'] / at if at else float('nan')):>12.2f}{tag}")

def first_at(rows):
    return next((x for x in sorted(rows, key=lambda x: x["ef"]) if x["recall"] >= TARGET), None)
a, b = first_at(r["results"]), first_at(h["results"])
if a and b:
    print(f"\nlowest ef with recall >= {TARGET}: ragd ef {a['ef']} ({a['recall']:.4f}, {a['qps_best']:.0f} QPS), "
          f"hnswlib ef {b['ef']} ({b['recall']:.4f}, {b['qps_best']:.0f} QPS): QPS ragd/hnswlib {a['qps_best'] / b['qps_best']:.2f}")
else:
    print(f"\nrecall >= {TARGET} not reached by {'ragd' if not a else 'hnswlib'} in the ef list")
d = next(x for x in r["results"] if x["ef"] == r["default_ef"])
verdict = "PASS" if d["recall"] >= TARGET else "FAIL"
print(f"ragd recall@10 at its default ef_search {r['default_ef']}: {d['recall']:.4f} -> {verdict} (>= {TARGET})")
PY
