"""Recall@10 of a float16 collection against exact float32 search (docs/scale.md, "Storing less").

Takes two collections of the same rows, one stored as float32 and one as float16 (e.g. the two that
`benchmarks/scale_import.py --vector-dtype float32|float16` imports), and asks each 1,000 queries of
two kinds: stored-vector-like (a stored vector moved to cosine 0.9 of it) and out-of-distribution
("text-like", cosine 0.45 to a stored vector, as benchmarks/ood_recall.py makes them). The truth is
exact float32 search over the float32 collection's vectors. Prints, per query kind, the recall@10 of

* exact search over the float16 collection's vectors (decoded to float32): what storage alone loses;
* each collection's own index as built (`search_vectors`, the kind `ravl info` shows), so the float16
  row minus the float32 row is what float16 storage costs through the index (IVF-PQ re-ranks its
  shortlist with the stored vectors, decoded to float32).

    .venv/bin/python benchmarks/store_less_recall.py /tmp/si/coll-200000x384-f32 /tmp/si/coll-200000x384-f16
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_recall import ood  # noqa: E402


def recall(got: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t.tolist())) / truth.shape[1] for g, t in zip(got, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("float32_collection", type=Path)
    ap.add_argument("float16_collection", type=Path)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    from ravl.collection import open_collection
    from ravl.store.ann import exact_topk

    a = open_collection(args.float32_collection, readonly=True)
    b = open_collection(args.float16_collection, readonly=True)
    assert (a.vector_dtype, b.vector_dtype) == ("float32", "float16"), (a.vector_dtype, b.vector_dtype)
    ids_a, x32 = a.item_vectors(which="emb")
    ids_b, x16 = b.item_vectors(which="emb")
    assert np.array_equal(ids_a, ids_b), "the two collections must hold the same rows (same import order)"
    print(f"{len(ids_a)} x {x32.shape[1]}: max |float16 - float32| per component "
          f"{float(np.abs(x16 - x32).max()):.2e}; {args.queries} queries per kind, recall@{args.k} against exact "
          "float32 search")
    facts = {name: f"{f.get('kind')} ({f.get('factory')})" for name, f in b.index_facts().items()}
    print(f"indexes: float32 {a.index_facts().get('images', {}).get('factory')}, float16 {facts.get('images')}")
    print("| queries | exact search over float16 vectors | float32 collection's index | float16 collection's index |")
    print("|---|---|---|---|")
    rows = {}
    for kind, cosine, seed in (("stored-vector-like (cos 0.9)", 0.9, 5), ("out-of-distribution (cos 0.45)", 0.45, 6)):
        q = ood(x32, args.queries, cosine, seed)
        truth = ids_a[exact_topk(x32, q, args.k)]
        exact16 = ids_b[exact_topk(x16, q, args.k)]
        row = {"exact_float16": recall([list(r) for r in exact16], truth)}
        for name, coll in (("index_float32", a), ("index_float16", b)):
            hits = coll.search_vectors(q, index="images", k=args.k)
            row[name] = recall([[h.id for h in r] for r in hits], truth)
        rows[kind] = row
        print(f"| {kind} | {row['exact_float16']:.4f} | {row['index_float32']:.4f} | {row['index_float16']:.4f} |",
              flush=True)
    print(json.dumps(rows))
    a.close()
    b.close()


if __name__ == "__main__":
    main()
