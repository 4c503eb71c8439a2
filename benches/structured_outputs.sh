#!/usr/bin/env bash
# The cost of structured outputs: 16 clients streaming completions with a
# JSON schema each (benches/data/notes_schema.json: at least 40 short
# strings, so every request runs to max_tokens like the unconstrained
# ones; the script checks the token counts match) against 16 unconstrained
# clients, same prompts, same server, alternating, in one run. Prints
# aggregate tok/s and the ratio.
#
#   benches/structured_outputs.sh [ROUNDS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"; threads="${2:-2}"
models="${RAGD_MODELS_DIR:-models/cache}"
out="${OUT_DIR:-bench-results}/structured"
bin="${CARGO_TARGET_DIR:-target}/release/ragd"
mkdir -p "$out"
cargo build --release --bin ragd -q
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
RAYON_NUM_THREADS="$threads" "$bin" serve --host 127.0.0.1 --port "$port" --models-dir "$models" \
    --embedder none --guard none --no-auth >"$out/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/ready" && break; sleep 0.5; done
for r in $(seq "$rounds"); do
    for kind in plain schema; do
        extra=()
        [ "$kind" = schema ] && extra=(--response-format benches/data/notes_schema.json)
        "$bin" bench generate --url "http://127.0.0.1:$port" --label "$kind" --concurrency 16 \
            --requests-per-client 2 --prompt-tokens 128 --max-tokens 128 "${extra[@]}" \
            --json "$out/${kind}_$r.json" >/dev/null
    done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
tps = {k: [json.load(open(f"{out}/{k}_{r}.json"))["levels"][0]["output_tokens_per_s"] for r in range(1, rounds + 1)]
       for k in ("plain", "schema")}
tokens = {k: [json.load(open(f"{out}/{k}_{r}.json"))["levels"][0]["output_tokens"] for r in range(1, rounds + 1)]
          for k in ("plain", "schema")}
assert tokens["plain"] == tokens["schema"], f"not the same work: output tokens {tokens}"
errors = sum(json.load(open(f"{out}/{k}_{r}.json"))["levels"][0]["errors"] for k in tps for r in range(1, rounds + 1))
ratio = statistics.median(tps["schema"]) / statistics.median(tps["plain"])
print(f"16 clients, tok/s: plain {tps['plain']}, json_schema {tps['schema']}, ratio {ratio:.3f}, errors {errors}")
json.dump({"tokens_per_s": tps, "ratio_of_medians": ratio, "errors": errors}, open(f"{out}/summary.json", "w"), indent=2)
PY
