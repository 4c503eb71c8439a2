"""sentence-transformers on the same texts as `ragd bench embed` (peer run).

    python benches/embed_peer.py --squad FILE --model DIR [--n 1024] [--batch 32] [--runs 3] [--threads 2]

Prints one JSON object like `ragd bench embed --json`.
"""
import argparse
import json
import os
import statistics
import time


def squad_texts(path, n):
    """First n distinct questions and first n distinct paragraphs, in file order
    (the same selection as ragd's `squad_texts`)."""
    doc = json.load(open(path))
    questions, paragraphs, seen = [], [], set()
    for art in doc["data"]:
        for para in art["paragraphs"]:
            ctx = para["context"]
            if len(paragraphs) < n and ctx not in seen:
                seen.add(ctx)
                paragraphs.append(ctx)
            for qa in para["qas"]:
                q = qa["question"]
                if len(questions) < n and q not in seen:
                    seen.add(q)
                    questions.append(q)
    return questions, paragraphs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--squad", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    questions, paragraphs = squad_texts(args.squad, args.n)
    results = {}
    for name, texts in (("queries", questions), ("passages", paragraphs)):
        model.encode(texts[:64], batch_size=args.batch, normalize_embeddings=True)
        runs = []
        for _ in range(max(1, args.runs)):
            t0 = time.perf_counter()
            model.encode(texts, batch_size=args.batch, normalize_embeddings=True)
            runs.append(len(texts) / (time.perf_counter() - t0))
        results[name] = {"texts": len(texts), "sentences_per_second": statistics.median(runs), "runs": runs}
    print(json.dumps({"engine": "sentence-transformers", "batch": args.batch, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
