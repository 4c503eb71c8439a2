#!/usr/bin/env bash
# Embedding throughput: ragd vs sentence-transformers (PyTorch, CPU) on the
# same 1,024 SQuAD questions and 1,024 paragraphs, batch 32, same threads,
# in the same run. Prints both and the ratio ragd / sentence-transformers.
#
#   benches/embed_throughput.sh [THREADS]      (default 2)
# Needs the reference venv of scripts/reference/README.md (torch +
# sentence-transformers) at $RAGD_REF_VENV (default ~/.cache/ragd-ref-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
squad="${SQUAD:-../shared/data/squaddev_v1.1.json}"
models="${RAGD_MODELS_DIR:-models/cache}"
venv="${RAGD_REF_VENV:-$HOME/.cache/ragd-ref-venv}"
out="${OUT_DIR:-bench-results}"
mkdir -p "$out"
models/fetch --only all-minilm-l6-v2 >/dev/null
cargo build --release --bin ragd -q
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
target/release/ragd bench embed --squad "$squad" --models-dir "$models" --json > "$out/embed_ragd.json"
"$venv/bin/python" benches/embed_peer.py --squad "$squad" --model "$models/all-minilm-l6-v2" --threads "$threads" > "$out/embed_st.json"
python3 - "$out/embed_ragd.json" "$out/embed_st.json" <<'PY'
import json, sys
r, s = (json.load(open(p)) for p in sys.argv[1:3])
print(f"{'kind':<9} {'ragd s/s':>10} {'st s/s':>10} {'ratio':>7}")
for k in ("queries", "passages"):
    a, b = r["results"][k]["sentences_per_second"], s["results"][k]["sentences_per_second"]
    print(f"{k:<9} {a:>10.1f} {b:>10.1f} {a / b:>7.2f}")
PY
