"""How far the build's recall estimate (stored vectors as queries) is from recall on new queries.

Builds one HNSW32 graph over `benchmarks/scale.py`'s clustered synthetic vectors and measures
recall@10 at several efSearch values for three query sets: 200 stored vectors (what
`AnnIndex._tune` samples), fresh draws from the same mixture (what users' queries are like), and
midpoints between a stored vector and its nearest neighbour.

    .venv/bin/python benchmarks/tune_estimate.py --n 1000000 --dim 512     # ~7 CPU minutes to build
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--fresh", type=int, default=1000, help="fresh queries (default 1000)")
    args = ap.parse_args()
    import faiss
    from scale import clustered

    from ravl.store.ann import exact_topk

    faiss.omp_set_num_threads(1)
    x = clustered(args.n, args.dim, seed=1, total=args.n)
    fresh = clustered(args.fresh, args.dim, seed=2, total=args.n)
    index = faiss.index_factory(args.dim, "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    t = time.process_time()
    index.add(x)
    print(f"HNSW32 over {args.n} x {args.dim}: built in {time.process_time() - t:.0f} CPU s")
    stored = x[np.random.default_rng(1).choice(args.n, 200, replace=False)]
    mid = stored + x[exact_topk(x, stored, 2)[:, 1]]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    sets = {"stored (the build's estimate)": stored, "fresh": fresh, "neighbour midpoints": mid}
    truth = {name: exact_topk(x, q, 10) for name, q in sets.items()}
    print(f"{'efSearch':>8} " + " ".join(f"{name:>30}" for name in sets))
    for ef in (16, 32, 64):
        row = []
        for name, q in sets.items():
            _, got = index.search(q, 10, params=faiss.SearchParametersHNSW(efSearch=ef))
            row.append(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth[name])]))
        print(f"{ef:>8} " + " ".join(f"{r:>30.3f}" for r in row))


if __name__ == "__main__":
    main()
