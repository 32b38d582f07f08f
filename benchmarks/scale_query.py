"""Query latency and recall@10 of a large collection made by `benchmarks/scale_import.py`, through
the collection's own search (`Collection.search_vectors`: the sealed index file, tuned knobs and,
for IVF-PQ, the exact re-ranking from SQLite), single-threaded, against exact search.

    .venv/bin/python benchmarks/scale_query.py --collection /tmp/si/coll-10000000x384 \\
        --source /tmp/si/cr-10000000x384 [--queries 500]

Two query sets, as issue 23 defines them: image-like (a stored vector moved to cosine ~0.93 from
it: the queries of image-to-image search) and text-like (cosine ~0.45 to their nearest stored
vector and below it to the rest: the modality gap of text queries against image vectors; see
`benchmarks/ood_recall.py`), each through the index that answers it in ravl: image-like through
`features` (image -> image search's knobs), text-like through `images`. The exact top 10 is
computed here from the clip-retrieval source (`img_emb_*.npy`, the vectors the import stored), one
file at a time. Row i of the source is the item whose uri ends in `{i:09d}.jpg`. Prints one JSON
object: p50/p99 ms and recall@10 per set, the first query's time (cold pages), the index facts per
set and this process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ood_recall import ood  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parents[1] / "src"))  # PYTHONPATH (another checkout) wins


def source_files(source: Path) -> list[Path]:
    files = sorted((source / "img_emb").glob("img_emb_*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not files:
        raise SystemExit(f"no img_emb_*.npy under {source}/img_emb")
    return files


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def sample_rows(files: list[Path], n: int, seed: int) -> np.ndarray:
    """``n`` stored vectors at random rows of the source."""
    rng = np.random.default_rng(seed)
    out = []
    per_file = np.bincount(rng.integers(0, len(files), n), minlength=len(files))
    for f, m in zip(files, per_file):
        if m:
            arr = np.load(f, mmap_mode="r")
            out.append(unit(arr[np.sort(rng.integers(0, len(arr), m))]))
    return np.concatenate(out)


def exact_top10(files: list[Path], queries: np.ndarray, k: int = 10, normalize: bool = True) -> np.ndarray:
    """Row numbers of the exact top ``k`` of every query over every source file (one file in memory
    at a time: ravl's own chunked exact search; ``normalize``: the rows as unit vectors)."""
    from ravl.store.chunked import exact_topk_chunks

    def chunks():
        offset = 0
        for f in files:
            vecs = np.load(f).astype(np.float32)
            yield np.arange(offset, offset + len(vecs)), unit(vecs) if normalize else vecs
            offset += len(vecs)
            print(f"  exact: {offset} rows", file=sys.stderr, end="\r")
        print(file=sys.stderr)

    return exact_topk_chunks(chunks, np.ascontiguousarray(queries, np.float32), k)[1]


def measure(coll, index: str, queries: np.ndarray, truth: np.ndarray, knobs=None) -> dict:
    """Recall@10 and single-query latency of ``queries`` through ``coll``'s ``index`` (``knobs``: a
    ``ravl.hits.Knobs`` the queries set, else the tuned ones)."""
    row = re.compile(r"(\d+)\.\w+$")
    lat, hits = [], []
    for q in queries:
        t = time.perf_counter()
        got = coll.search_vectors(q[None], index=index, k=10, knobs=knobs)[0]
        lat.append((time.perf_counter() - t) * 1000)
        hits.append([int(m.group(1)) for h in got if (m := row.search(h.uri))])
    recall = np.mean([len(set(h) & set(t.tolist())) / 10 for h, t in zip(hits, truth)])
    ms = np.array(lat)
    return {"queries": len(ms), "first_ms": round(float(ms[0]), 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "recall_at_10": round(float(recall), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", type=Path, required=True)
    ap.add_argument("--source", type=Path, required=True, help="the clip-retrieval output it was imported from")
    ap.add_argument("--queries", type=int, default=500, help="queries per set (default 500)")
    ap.add_argument("--image-index", default="features",
                    help="index the image-like queries search (default features: image -> image search's)")
    ap.add_argument("--text-index", default="images", help="index the text-like queries search (default images)")
    ap.add_argument("--image-cosine", type=float, default=0.93)
    ap.add_argument("--text-cosine", type=float, default=0.45)
    args = ap.parse_args()

    import faiss

    from ravl.collection import open_collection

    files = source_files(args.source)
    base = sample_rows(files, 2 * args.queries, seed=7)
    sets = {"image_like": ood(base[: args.queries], args.queries, args.image_cosine, seed=8),
            "text_like": ood(base[args.queries:], args.queries, args.text_cosine, seed=9)}
    t = time.perf_counter()
    truth = exact_top10(files, np.concatenate(list(sets.values())))
    exact_s = time.perf_counter() - t
    faiss.omp_set_num_threads(1)  # single-thread latency, as a server thread sees it
    t = time.perf_counter()
    coll = open_collection(args.collection)
    opened = time.perf_counter() - t
    out: dict = {"collection": str(args.collection), "open_s": round(opened, 2), "exact_s": round(exact_s, 1)}
    start = 0
    info = coll.info()
    for (name, q), index in zip(sets.items(), (args.image_index, args.text_index)):
        out[name] = measure(coll, index, q, truth[start:start + len(q)])
        out[name]["index"] = {f: info.get("indexes", {}).get(index, {}).get(f)
                              for f in ("factory", "count", "search", "bytes", "recall_at_10", "recall_query_kind",
                                        "recall_note", "shared_with")}
        start += len(q)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
