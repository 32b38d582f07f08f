"""ANN recall for the queries an index really receives: text queries against image vectors sit far
from every stored vector (the modality gap), so tuning efSearch / nprobe on stored vectors
overstates their recall (docs/search.md#ann-recall-for-text-queries).

Builds HNSW (and IVF-PQ) over `benchmarks/scale.py`'s clustered synthetic vectors twice: tuned on
stored vectors (the old way) and on a sample of out-of-distribution queries (what ravl now does
with a collection's caption vectors). Reports the build's estimate, the recall@10 of 1,000 fresh
OOD queries against exact search, and the single-thread latency at the tuned knob.

    .venv/bin/python benchmarks/ood_recall.py --n 200000 --dim 384 [--kinds hnsw,ivfpq]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def ood(x: np.ndarray, n: int, cosine: float, seed: int) -> np.ndarray:
    """``n`` queries at about ``cosine`` to a random stored vector, and below it to all others."""
    rng = np.random.default_rng(seed)
    base = x[rng.integers(0, len(x), n)]
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = cosine * base + np.sqrt(1 - cosine ** 2) * noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--cosine", type=float, default=0.45, help="query-to-nearest cosine of the OOD queries")
    ap.add_argument("--kinds", default="hnsw")
    args = ap.parse_args()
    import faiss
    from scale import clustered

    from ravl.store.ann import AnnIndex, array_chunks, exact_topk
    from ravl.store.index_plan import choose_index

    faiss.omp_set_num_threads(1)
    x = clustered(args.n, args.dim, seed=1, total=args.n)
    ids = np.arange(args.n, dtype=np.int64)
    sample = ood(x, 200, args.cosine, seed=3)
    fresh = ood(x, 1000, args.cosine, seed=4)
    truth = exact_topk(x, fresh, 10)
    print(f"{args.n} x {args.dim} clustered vectors; OOD queries at cosine {args.cosine} to a stored vector; "
          f"1,000 fresh OOD queries against exact search")
    print("| index | tuned on | knob | build's estimate | fresh OOD recall@10 | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    def fetch(rows):  # IVF-PQ re-ranks its shortlist with the stored vectors, as a collection does
        rows = np.asarray(rows, dtype=np.int64)
        return rows, x[rows]

    for kind in args.kinds.split(","):
        plan = choose_index(args.n, args.dim, kind)
        base = AnnIndex.build(plan, ids, x, tune=False)
        for label, queries in (("stored vectors", None), ("OOD sample", ("text", sample))):
            index = base  # tuned again from the plan's knobs: tuning only sets knobs
            index.info["search"] = dict(plan.search)
            index._tune(array_chunks(ids, x), fetch, seed=0, queries=queries)
            knob = ", ".join(f"{k}={v}" for k, v in index.info["search"].items())
            lat, got = [], []
            for q in fresh:
                t = time.perf_counter()
                got.append([i for i, _ in index.search(q[None, :], 10, fetch=fetch)[0]])
                lat.append(1000 * (time.perf_counter() - t))
            rec = np.mean([len(set(g) & set(t.tolist())) / 10 for g, t in zip(got, truth)])
            print(f"| {kind} | {label} | {knob} | {index.info['recall_at_10']:.3f} | {rec:.3f} | "
                  f"{np.percentile(lat, 50):.2f} | {np.percentile(lat, 99):.2f} |", flush=True)


if __name__ == "__main__":
    main()
