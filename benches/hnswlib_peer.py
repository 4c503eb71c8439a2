#!/usr/bin/env python3
"""hnswlib on the vectors of `hnsw_bench embed`: the peer of `hnsw_bench bench`.

Same files, same measurements, same JSON shape: cosine space, M 16,
ef_construction 200, built with --threads threads; for each ef, recall@10
over all queries against the cached exact top 10 (`gt_*.npy`, written by
`hnsw_bench bench`) and queries/s of one thread over --timing-queries evenly
spaced queries (one knn_query call of all of them, num_threads=1; best and
median of --runs). Table to stderr, one JSON object to stdout.

    benches/hnswlib_peer.py [--data ~/.cache/ragd/bench] [--threads 2] [--ef 16,32,64,96,128,256]
"""

import argparse
import json
import os
import sys
import time
from importlib.metadata import version

import hnswlib
import numpy as np

K = 10


def recall(base, queries, found, gt_ids, gt_dist):
    """Share of returned ids that are in the exact top 10 or no farther than
    the exact 10th (ties between equal vectors), as hnsw_bench counts it."""
    kth = gt_dist[:, K - 1] + 1e-5
    in_gt = (found[:, :, None] == gt_ids[:, None, :]).any(axis=2)
    dist = 1.0 - np.einsum("qd,qkd->qk", queries, base[found])
    return float((in_gt | (dist <= kth[:, None])).sum()) / found.size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.expanduser("~/.cache/ragd/bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ef", default="16,32,64,96,128,256")
    ap.add_argument("--timing-queries", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    args = ap.parse_args()

    load = lambda name: np.load(os.path.join(args.data, name))
    base, queries = load("base.npy"), load("queries.npy")
    gt_ids, gt_dist = load("gt_ids.npy"), load("gt_dist.npy")
    assert gt_ids.shape == (len(queries), K), "gt_ids.npy does not match queries.npy: rerun hnsw_bench bench"
    n, dim = base.shape
    print(f"base {n} x {dim}, queries {len(queries)}, hnswlib {version('hnswlib')}", file=sys.stderr)

    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=100)
    t = time.perf_counter()
    index.add_items(base, np.arange(n), num_threads=args.threads)
    build_s = time.perf_counter() - t
    print(f"build: {build_s:.2f} s, {args.threads} threads (M {args.m}, ef_construction {args.ef_construction})", file=sys.stderr)

    n_timing = min(args.timing_queries, len(queries))
    timing = queries[[i * len(queries) // n_timing for i in range(n_timing)]]
    efs = sorted({int(e) for e in args.ef.split(",")})

    index.set_ef(efs[0])
    index.knn_query(timing, k=K, num_threads=1)  # warm-up
    print(f"{'ef':>5} {'recall@10':>9} {'QPS best':>10} {'QPS med':>10}  (QPS: 1 thread, {n_timing} queries, best/median of {args.runs})", file=sys.stderr)
    results = []
    for ef in efs:
        index.set_ef(ef)
        found, _ = index.knn_query(queries, k=K, num_threads=args.threads)
        r = recall(base, queries, found.astype(np.int64), gt_ids, gt_dist)
        qps = []
        for _ in range(args.runs):
            t = time.perf_counter()
            index.knn_query(timing, k=K, num_threads=1)
            qps.append(n_timing / (time.perf_counter() - t))
        qps.sort()
        best, median = qps[-1], qps[len(qps) // 2]
        print(f"{ef:>5} {r:>9.4f} {best:>10.0f} {median:>10.0f}", file=sys.stderr)
        results.append({"ef": ef, "recall": r, "qps_best": best, "qps_median": median, "qps_runs": qps})

    print(json.dumps({
        "engine": "hnswlib",
        "index": f"hnswlib {version('hnswlib')} (cosine)",
        "n_base": n,
        "dim": dim,
        "n_queries": len(queries),
        "n_timing_queries": n_timing,
        "k": K,
        "m": args.m,
        "ef_construction": args.ef_construction,
        "build_threads": args.threads,
        "build_s": build_s,
        "query_threads": 1,
        "runs": args.runs,
        "results": results,
    }))


if __name__ == "__main__":
    main()
