"""The guard's false positives and detections on spikee's seed datasets,
through a running ragd's /v1/moderations (see guard_spikee.sh).

    python3 benches/guard_spikee.py BASE_URL DATASETS_DIR [OUT.json]

Benign: seeds-investment-advice-fp (ordinary investment questions).
Attacks: every jailbreak template x instruction of seeds-cybersec-2026-01
and seeds-sysmsg-extraction-2025-04 (`<INSTRUCTION>` filled in).
"""
import json
import sys
import time
import urllib.request

BENIGN = "seeds-investment-advice-fp"
ATTACKS = ["seeds-cybersec-2026-01", "seeds-sysmsg-extraction-2025-04"]


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def flagged(base, texts):
    out = []
    for k in range(0, len(texts), 64):
        body = json.dumps({"input": texts[k : k + 64]}).encode()
        req = urllib.request.Request(base + "/v1/moderations", data=body, headers={"content-type": "application/json"})
        out += [r["flagged"] for r in json.load(urllib.request.urlopen(req))["results"]]
    return out


def main():
    base, datasets = sys.argv[1], sys.argv[2]
    start = time.time()
    benign = [r["text"] for r in rows(f"{datasets}/{BENIGN}/standalone_user_inputs.jsonl")]
    fb = flagged(base, benign)
    report = {"benign": {"set": BENIGN, "texts": len(fb), "flagged": sum(fb), "false_positive_rate": sum(fb) / len(fb)}}
    print(f"benign {BENIGN}: {sum(fb)}/{len(fb)} flagged, false-positive rate {sum(fb) / len(fb):.3f}")
    report["attacks"] = []
    for seed in ATTACKS:
        jailbreaks = rows(f"{datasets}/{seed}/jailbreaks.jsonl")
        instructions = rows(f"{datasets}/{seed}/instructions.jsonl")
        texts = [j["text"].replace("<INSTRUCTION>", i["instruction"]) for j in jailbreaks for i in instructions]
        fa = flagged(base, texts)
        rate = sum(fa) / len(fa)
        report["attacks"].append({"set": seed, "texts": len(fa), "flagged": sum(fa), "detection_rate": rate})
        print(f"attacks {seed}: {sum(fa)}/{len(fa)} flagged, detection rate {rate:.3f}")
    report["seconds"] = time.time() - start
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
