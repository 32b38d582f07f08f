"""IVF-PQ with its inverted lists in RAM vs on disk (memory-mapped), and what opening a sealed index
costs, on a collection made by benchmarks/scale_import.py (synthetic clustered vectors, d = --dim).

    nice -n 10 .venv/bin/python benchmarks/scale_import.py --n 200000 --workdir /tmp/si --steps import \\
        --import-index flat
    nice -n 10 .venv/bin/python benchmarks/ondisk_index.py --workdir /tmp/si --n 200000 \\
        --ram-budget 512MB --disk-budget 16MB --base-src BASE/src

For each budget: `ravl reindex --index ivfpq --memory-budget B` under /usr/bin/time -v (peak RSS,
wall), then a fresh process opens the collection read-only and searches the `features` index: the
seconds and RSS of the first search (which verifies and loads the sealed file), p50 of --queries
single-vector searches, and recall@10 against the exact top 10 (computed from the source .npy files;
queries are fresh draws from the same mixture, not stored vectors). `--flat` also rebuilds as flat
and opens it (and the in-RAM IVF-PQ) with this checkout and with --base-src (the code before: the
file read whole, then deserialised); `--no-reindex` only opens and queries. The open is timed
apart from the first search, with RSS split into anonymous memory and mapped file pages (which the
kernel can drop and processes share). One JSON line per measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import clustered  # noqa: E402
from scale_import import timed  # noqa: E402
from scale_query import exact_top10, source_files  # noqa: E402


def status_mib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    return -1


def truth(src: Path, n: int, dim: int, queries: np.ndarray, cache: Path) -> np.ndarray:
    """Row numbers of the exact top 10 for ``queries`` over the img_emb files (float16 -> float32)."""
    if cache.is_file():
        return np.load(cache)
    best_i = exact_top10(source_files(src), queries, 10, normalize=False)
    np.save(cache, best_i)
    return best_i


def child(coll: str, n: int, dim: int, nq: int, gt_path: str) -> dict:
    """Open read-only, load the features index (first search), then time single searches."""
    sys.path.insert(0, os.environ["PYTHONPATH"])  # the checkout asked for (scale.py put this one first)
    from ravl.collection import open_collection

    queries = clustered(nq, dim, seed=987654, total=n).astype(np.float32)
    gt = np.load(gt_path)
    rss0 = status_mib("VmRSS")
    with open_collection(coll, readonly=True) as c:
        t0 = time.perf_counter()
        c._index("features")  # verify and load the sealed file(s)
        load_s = time.perf_counter() - t0
        opened = {"load_s": round(load_s, 3), "rss_opened_mib": status_mib("VmRSS"),
                  "anon_opened_mib": status_mib("RssAnon"), "file_opened_mib": status_mib("RssFile"),
                  "hwm_opened_mib": status_mib("VmHWM")}
        t0 = time.perf_counter()
        c.search_vectors(queries[:1], index="features", k=10)
        load_s = time.perf_counter() - t0
        rss_loaded, hwm_loaded = status_mib("VmRSS"), status_mib("VmHWM")
        times, hits = [], 0
        for q, want in zip(queries, gt):
            t = time.perf_counter()
            got = c.search_vectors(q[None, :], index="features", k=10)[0]
            times.append(time.perf_counter() - t)
            rows = {int(Path(h.uri).stem) for h in got}
            hits += len(rows & {int(r) for r in want})
        facts = c.index_facts().get("features", {})
    return {**opened, "first_search_s": round(load_s, 3), "rss_before_mib": rss0, "rss_searched_mib": rss_loaded,
            "hwm_searched_mib": hwm_loaded, "rss_after_queries_mib": status_mib("VmRSS"),
            "anon_after_queries_mib": status_mib("RssAnon"), "file_after_queries_mib": status_mib("RssFile"),
            "p50_ms": round(1000 * float(np.median(times)), 2), "p90_ms": round(1000 * float(np.percentile(times, 90)), 2),
            "recall_at_10": round(hits / (10 * len(queries)), 4), "factory": facts.get("factory"),
            "params": facts.get("params"), "search": facts.get("search"), "bytes": facts.get("bytes")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ram-budget", default="512MB")
    ap.add_argument("--disk-budget", default="16MB")
    ap.add_argument("--steps", nargs="+", default=["ram", "disk", "flat"], choices=["ram", "disk", "flat"])
    ap.add_argument("--base-src", type=Path, default=None, help="a checkout's src/ to open the flat file with too")
    ap.add_argument("--no-reindex", action="store_true", help="only open and query the collection as it is")
    ap.add_argument("--child", nargs=2, metavar=("COLL", "GT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.n, args.dim, args.queries, args.child[1])))
        return
    coll = args.workdir / f"coll-{args.n}x{args.dim}"
    src = args.workdir / f"cr-{args.n}x{args.dim}"
    gt = args.workdir / f"gt-{args.n}x{args.dim}-{args.queries}.npy"
    truth(src, args.n, args.dim, clustered(args.queries, args.dim, seed=987654, total=args.n).astype(np.float32), gt)
    here = Path(__file__).resolve().parents[1] / "src"
    ravl = [sys.executable, "-m", "ravl.cli.main"]

    def env(path: Path) -> dict:
        return {**os.environ, "PYTHONPATH": str(path.resolve()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def query(tag: str, path: Path) -> None:
        cmd = [sys.executable, __file__, "--n", str(args.n), "--dim", str(args.dim), "--queries", str(args.queries),
               "--workdir", str(args.workdir), "--child", str(coll), str(gt)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env(path))
        row = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-500:]}
        print(json.dumps({"step": "open+query", "config": tag, "src": str(path), **row}), flush=True)

    for step in args.steps:
        kind, budget = ("flat", "none") if step == "flat" else ("ivfpq", args.ram_budget if step == "ram" else
                                                               args.disk_budget)
        if not args.no_reindex:
            row = timed([*ravl, "reindex", "-c", str(coll), "--index", kind, "--memory-budget", budget], env(here))
            files = {p.name: p.stat().st_size for p in (coll / "index").glob("features*") if p.is_file()} \
                if (coll / "index").is_dir() else {}
            print(json.dumps({"step": "reindex", "config": step, "budget": budget, **row, "files": files}), flush=True)
        query(step, here)
        if step != "disk" and args.base_src:  # the code before cannot open lists on disk
            query(f"{step}-before", args.base_src)


if __name__ == "__main__":
    main()
