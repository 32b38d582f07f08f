"""Recall@10 and single-thread p50/p99 of a large IVF-PQ collection's `images` index at several
(nprobe, rerank) settings instead of the ones its build tuned, on `scale_query.py`'s two query sets
(image-like, text-like) against exact search over the clip-retrieval source.

    .venv/bin/python benchmarks/scale_knobs.py --collection /tmp/si10m/coll-10000000x384 \
        --source /tmp/si10m/cr-10000000x384 [--queries 200] [--settings 64:40 128:40]

Each setting is given per query (`ravl.hits.Knobs(nprobe=..., rerank=...)`, what `ravl search
--nprobe N --rerank N` sends).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_recall import ood  # noqa: E402
from scale_query import exact_top10, measure, sample_rows, source_files  # noqa: E402

SETTINGS = ("32:10", "64:10", "32:40", "64:40", "128:40", "64:160")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--source", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--settings", nargs="+", default=SETTINGS, help="NPROBE:RERANK pairs")
    args = ap.parse_args()
    import faiss

    from ravl.collection import open_collection
    from ravl.hits import Knobs

    files = source_files(args.source)
    n = args.queries
    base = sample_rows(files, 2 * n, seed=7)
    sets = {"image_like": ood(base[:n], n, 0.93, seed=8), "text_like": ood(base[n:], n, 0.45, seed=9)}
    truth = exact_top10(files, np.concatenate(list(sets.values())))
    faiss.omp_set_num_threads(1)
    coll = open_collection(args.collection)
    coll.search_vectors(sets["image_like"][:1], index="images", k=10)  # loads the index
    print("tuned:", coll.info()["indexes"]["images"]["search"], file=sys.stderr)
    for setting in args.settings:
        nprobe, rerank = (int(v) for v in setting.split(":"))
        row: dict = {"nprobe": nprobe, "rerank": rerank}
        start = 0
        for name, q in sets.items():
            m = measure(coll, "images", q, truth[start:start + n], Knobs(nprobe=nprobe, rerank=rerank))
            start += n
            row[name] = {"recall": m["recall_at_10"], "p50": m["p50_ms"], "p99": m["p99_ms"]}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
