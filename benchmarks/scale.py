"""Vector indexes at scale: flat vs HNSW vs IVF-PQ (+ exact re-rank), built by ravl's own code path
(:class:`ravl.store.ann.AnnIndex` from :func:`ravl.store.index_plan.choose_index`).

    .venv/bin/python benchmarks/scale.py --quick                       # 20k x 384, seconds
    .venv/bin/python benchmarks/scale.py --sizes 100000 --dims 384 512  # the 100k rows
    .venv/bin/python benchmarks/scale.py --sizes 1000000 --dims 384 --kinds hnsw ivfpq
    .venv/bin/python benchmarks/scale.py --sqlite 1000000              # SQLite blob read-back vs .npy
    .venv/bin/python benchmarks/scale.py --ingest 400 --ray-workers 1  # local engine vs --engine ray

Vectors are SYNTHETIC and CLUSTERED: Gaussian clusters of about 100 points in a 32-dimensional latent
space, lifted into d dimensions by a fixed random linear map plus a little full-rank noise, then
normalised (real embeddings also have a low intrinsic dimension); the queries are fresh draws from the
same mixture, not stored vectors. ANN recall depends on the data: treat the figures as this data's.
Each (size, dim, kind) runs in its own subprocess so that
peak RSS (ru_maxrss) is that configuration's alone; ground truth (exact top-10 by brute force) is
computed once per (size, dim) and cached in --workdir.

Everything runs on ONE thread and times are CPU seconds (process/thread time) unless named wall:
seven people share this machine's two cores, so wall-clock figures would measure their load.

Per configuration: build seconds (train + add + recall tuning; wall and CPU), peak RSS, RSS of the data alone and
the resident growth while building (the index's own memory),
index size on disk, recall@10 against exact at the tuned defaults and over a sweep of efSearch/nprobe,
p50/p99 latency of single queries, batched latency per query (1,000 queries in one call),
and the time to add 1,000 new vectors to the loaded index and to serialise it. JSON lines on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

N_QUERIES = 1000
N_LATENCY = 300
LATENT = 32  # intrinsic dimension: real image/text embeddings live near a low-dimensional manifold
POINTS_PER_CLUSTER = 100


def clustered(n: int, dim: int, seed: int, *, total: int | None = None, mix_seed: int = 12345) -> np.ndarray:
    """``n`` unit vectors: Gaussian clusters (about POINTS_PER_CLUSTER points each for a collection of
    ``total``) in a LATENT-dimensional space, mapped into ``dim`` dimensions by a fixed random linear map
    plus a little full-rank noise. Chunked, so memory stays bounded."""
    mix = np.random.default_rng(mix_seed)
    clusters = max(10, (total or n) // POINTS_PER_CLUSTER)
    centres = mix.standard_normal((clusters, LATENT)).astype(np.float32)
    lift = mix.standard_normal((LATENT, dim)).astype(np.float32) / np.sqrt(LATENT)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        y = centres[rng.integers(0, clusters, m)] + 0.5 * rng.standard_normal((m, LATENT), dtype=np.float32)
        x = y @ lift + rng.standard_normal((m, dim), dtype=np.float32) * (0.1 / np.sqrt(dim)) * np.linalg.norm(
            y, axis=1, keepdims=True)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ground_truth(workdir: Path, n: int, dim: int) -> Path:
    path = workdir / f"gt-{n}-{dim}.npy"
    if not path.exists():
        from ravl.store.ann import exact_topk

        data, queries = clustered(n, dim, seed=1), clustered(N_QUERIES, dim, seed=2, total=n)
        np.save(path, exact_topk(data, queries, 10))
    return path


def child(n: int, dim: int, kind: str, workdir: Path) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)  # one thread everywhere: on a shared machine, CPU time is what we can compare

    from ravl.store.ann import AnnIndex
    from ravl.store.index_plan import choose_index

    data = clustered(n, dim, seed=1)
    queries = clustered(N_QUERIES, dim, seed=2, total=n)
    truth = np.load(workdir / f"gt-{n}-{dim}.npy")
    import psutil

    proc = psutil.Process()
    rss_data = proc.memory_info().rss / 2**20
    ids = np.arange(n, dtype=np.int64)

    def fetch(wanted):  # stands in for the database read of the shortlist
        w = np.asarray(wanted, np.int64)
        return w, data[w]

    plan = choose_index(n, dim, kind)
    t, cpu = time.perf_counter(), time.process_time()
    index = AnnIndex.build(plan, ids, data, fetch=fetch)
    build_s, build_cpu = time.perf_counter() - t, time.process_time() - cpu
    rss_peak = rss_mb()
    rss_index = proc.memory_info().rss / 2**20 - rss_data
    tmp = workdir / f"index-{os.getpid()}.faiss"
    faiss.write_index(index.index, str(tmp))
    size = tmp.stat().st_size + index.labels.nbytes + index.alive.nbytes
    tmp.unlink()

    def recall(**kw) -> float:
        got = index.search(queries, 10, fetch=fetch, **kw)
        return float(np.mean([len({i for i, _ in g} & set(t.tolist())) / 10 for g, t in zip(got, truth)]))

    def latency(**kw) -> tuple[float, float]:
        """CPU time per single query on this thread (wall time on a loaded machine measures the others)."""
        times = []
        for q in queries[:N_LATENCY]:
            t0 = time.thread_time()
            index.search(q[None], 10, fetch=fetch, **kw)
            times.append(time.thread_time() - t0)
        return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)

    key = {"hnsw": "ef_search", "ivfpq": "nprobe"}.get(kind)
    sweep = []
    values = {"hnsw": (16, 32, 64, 128, 256), "ivfpq": (8, 16, 32, 64, 128)}.get(kind, ())
    for v in values:
        if kind == "ivfpq" and v > plan.params["nlist"]:
            continue
        p50, _ = latency(**{key: v})
        sweep.append({key: v, "recall_at_10": round(recall(**{key: v}), 4), "p50_ms": round(p50, 3)})
    p50, p99 = latency()
    t0 = time.thread_time()
    index.search(queries, 10, fetch=fetch)
    batched_ms = (time.thread_time() - t0) * 1e3 / len(queries)
    rec = recall()
    new = clustered(1000, dim, seed=3, total=n)
    t0 = time.process_time()
    index.add(np.arange(n, n + 1000, dtype=np.int64), new)
    add_s = time.process_time() - t0
    t0 = time.process_time()
    faiss.serialize_index(index.index)
    serialise_s = time.process_time() - t0
    return {"n": n, "dim": dim, "kind": kind, "factory": plan.factory, "build_s": round(build_s, 2),
            "build_cpu_s": round(build_cpu, 2),
            "peak_rss_mb": round(rss_peak), "data_rss_mb": round(rss_data),
            "index_rss_mb": round(rss_index), "index_mb": round(size / 2**20, 1),
            "flat_mb": round(n * dim * 4 / 2**20, 1), "tuned": index.info["search"],
            "build_recall_estimate": index.info.get("recall_at_10"), "recall_at_10": round(rec, 4),
            "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "batched_ms_per_query": round(batched_ms, 4),
            "add_1000_s": round(add_s, 3), "serialise_s": round(serialise_s, 2), "sweep": sweep}


def sqlite_readback(n: int, dim: int, workdir: Path) -> dict:
    """Is reading vectors back from SQLite blobs the bottleneck? Same rows through ravl's table layout;
    CPU seconds with the files in the page cache (the disk is shared, so its speed is not ours)."""
    import sqlite3

    from ravl.store.schema import migrate

    db = workdir / f"blobs-{n}-{dim}.sqlite"
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn)
    t = time.perf_counter()
    conn.execute("BEGIN")
    for start in range(0, n, 50_000):
        block = clustered(min(50_000, n - start), dim, seed=start, total=n)
        conn.executemany("INSERT INTO items(id, uri, sha256, size, mtime_ns, added_at) VALUES(?,?,?,?,?,0)",
                         ((start + i + 1, f"/x/{start + i}.jpg", "0", 0, 0) for i in range(len(block))))
        conn.executemany("INSERT INTO item_vectors(item_id, emb, feat) VALUES(?,?,?)",
                         ((start + i + 1, v.tobytes(), b"") for i, v in enumerate(block)))
    conn.execute("COMMIT")
    write_s = time.perf_counter() - t
    conn.close()
    os.system(f"sync; cat {db} > /dev/null")  # warm page cache: compare CPU cost, not the disk
    from ravl.store.db import Database

    database = Database(db, readonly=True)
    t = time.process_time()
    ids, vecs = database.item_vectors(which="emb")
    read_s = time.process_time() - t
    npy = workdir / "seg.npy"
    np.save(npy, vecs)
    os.system(f"sync; cat {npy} > /dev/null")
    t = time.process_time()
    np.load(npy)
    npy_s = time.process_time() - t
    t = time.process_time()
    np.load(npy, mmap_mode="r")[:].copy()
    mmap_s = time.process_time() - t
    rng = np.random.default_rng(0)
    t = time.process_time()
    for _ in range(100):
        database.item_vectors(sorted(rng.choice(n, 100, replace=False) + 1), which="emb")
    shortlist_ms = (time.process_time() - t) * 10
    database.close()
    npy.unlink()
    db.unlink()
    return {"sqlite_rows": n, "dim": dim, "write_s": round(write_s, 1), "read_all_s": round(read_s, 2),
            "read_mb_s": round(vecs.nbytes / 2**20 / read_s), "npy_read_s": round(npy_s, 2),
            "npy_mmap_copy_s": round(mmap_s, 2), "cpu_time": True,
            "shortlist_100_ms": round(shortlist_ms, 2)}


def ingest_child(engine: str, manifest: Path, workdir: Path, workers: int) -> dict:
    """One ingest of ``manifest`` into a fresh collection with the default encoder (wall clock: Ray's
    actors are other processes, so per-process CPU time would not add up)."""
    import shutil

    from ravl.collection import open_collection
    from ravl.ingest.pipeline import index_sources

    folder = workdir / f"ingest-{engine}"
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    with open_collection(folder, encoder="default", create=True) as coll:
        if engine == "ray":
            from ravl.ingest.ray_engine import index_sources_ray

            report = index_sources_ray(coll, [str(manifest)], num_workers=workers)
        else:
            report = index_sources(coll, [str(manifest)])
    wall = time.perf_counter() - t
    shutil.rmtree(folder, ignore_errors=True)
    return {"engine": engine, "images": report.added, "wall_s": round(wall, 1),
            "images_per_s": round(report.added / wall, 2), "seconds": report.seconds}


def ingest_compare(n: int, workdir: Path, workers: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ingest_search import build_images

    manifest = build_images(workdir / f"images-{n}", n)
    out = {}
    for engine in ("local", "ray", "local"):  # local twice: the spread shows the machine's noise
        r = subprocess.run([sys.executable, __file__, "--workdir", str(workdir), "--ingest-child", engine,
                            str(manifest), str(workers)], capture_output=True, text=True)
        line = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"engine": engine,
                                                                                          "error": r.stderr[-400:]}
        print(json.dumps(line), flush=True)
        out.setdefault(engine, []).append(line.get("images_per_s", 0))
    local = max(out["local"])
    print(json.dumps({"ray_over_local": round(out["ray"][0] / local, 3) if local else None}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 512])
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    ap.add_argument("--quick", action="store_true", help="20k vectors at d=384 (a sanity run)")
    ap.add_argument("--sqlite", type=int, metavar="N", help="only measure SQLite blob read-back of N vectors")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ravl-scale-bench")
    ap.add_argument("--ingest", type=int, metavar="N",
                    help="only compare ingest throughput of N images: local engine vs --engine ray (one machine)")
    ap.add_argument("--ray-workers", type=int, default=1, help="encoder actors for --ingest (default 1)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--ingest-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.child:
        n, dim, kind = int(args.child[0]), int(args.child[1]), args.child[2]
        print(json.dumps(child(n, dim, kind, args.workdir)), flush=True)
        return
    if args.ingest_child:
        engine, manifest, workers = args.ingest_child
        print(json.dumps(ingest_child(engine, Path(manifest), args.workdir, int(workers))), flush=True)
        return
    if args.ingest:
        ingest_compare(args.ingest, args.workdir, args.ray_workers)
        return
    if args.sqlite:
        for dim in args.dims:
            print(json.dumps(sqlite_readback(args.sqlite, dim, args.workdir)), flush=True)
        return
    sizes, dims = ([20_000], [384]) if args.quick else (args.sizes, args.dims)
    for n in sizes:
        for dim in dims:
            ground_truth(args.workdir, n, dim)
            for kind in args.kinds:
                out = subprocess.run([sys.executable, __file__, "--workdir", str(args.workdir), "--child",
                                      str(n), str(dim), kind], capture_output=True, text=True)
                if out.returncode:
                    print(json.dumps({"n": n, "dim": dim, "kind": kind, "error": out.stderr[-500:]}), flush=True)
                else:
                    print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
