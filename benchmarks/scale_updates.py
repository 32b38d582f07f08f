"""Adding 1,000 items to a 1M-vector collection: incremental index updates through ravl's own
Collection / IndexSet code path (issue 10 items 2 and 5; docs/scale.md, "Incremental updates").

    .venv/bin/python benchmarks/scale_updates.py --n 1000000 --dim 384 --kind flat
    .venv/bin/python benchmarks/scale_updates.py --n 1000000 --dim 384 --kind hnsw
    .venv/bin/python benchmarks/scale_updates.py --n 20000 --kind hnsw        # a sanity run

The collection holds ``--n`` items, each with a ``--dim`` shared-space embedding and a
``--feature-dim`` image feature vector (two ``--n``-vector indexes: ``images`` and ``features``) and
no captions; vectors are the synthetic clustered vectors of ``benchmarks/scale.py``. It is built
once under ``--workdir`` (SQLite rows written through ``Collection.add_batch``, then the indexes by
``refresh_indexes``: the full build from SQLite, timed) and reused by later runs.

Then, per round, the timed step is exactly what ``ravl index`` does for a batch of new files after
encoding them: ``Collection.add_batch`` (one SQLite transaction: rows, vector blobs, change-log rows,
generation) + ``Collection.refresh_indexes`` (per index: read the change log, read the 1,000 new
vectors back, add them to the index, decide about rewriting the cache file, record facts, prune the
log). Encoding is NOT included (it is the encoder's cost, ~100 images/s on this machine).

* ``warm``: the collection is open with its indexes in memory (a server, or an ingest that searched).
* ``cold``: a fresh process: open, then the same step, which also reads and verifies (BLAKE2b) each
  cache file before catching it up from the log.
* ``load``: a fresh process that only opens and loads the (current) cache files, for reference.
* ``ingest``: a fresh process that adds 1,000 items and ends as ``ravl index`` does
  (``refresh_indexes(lazy=True)``: a cache the next reader can catch up, and that the compaction
  rule would not rewrite, is not loaded).

Wall seconds (SQLite and file I/O are part of the cost) and this process's CPU seconds; the load
average is printed, since three people share two cores. JSON lines on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import clustered  # noqa: E402  (the same synthetic vectors as the index benchmark)

from ravl.encoders.base import Encoder, ImageVectors  # noqa: E402


class SyntheticEncoder(Encoder):
    """Declares the dimensions only: vectors come from :func:`clustered`, never from pixels."""
    batch_size = 1

    def __init__(self, dim: int, feature_dim: int):
        self.dim, self.feature_dim = dim, feature_dim
        self.spec = f"synthetic-{dim}-{feature_dim}"

    def preprocess(self, image):  # pragma: no cover - never called
        raise NotImplementedError

    def embed_pixels(self, pixels) -> ImageVectors:  # pragma: no cover
        raise NotImplementedError

    def encode_texts(self, texts):  # pragma: no cover
        raise NotImplementedError


def new_items(prefix: str, n: int, dim: int, fdim: int, total: int, seed: int):
    from ravl.store.db import NewItem

    emb = clustered(n, dim, seed=seed, total=total)
    feat = clustered(n, fdim, seed=seed + 10_000, total=total, mix_seed=54321)
    return [NewItem(uri=f"/bench/{prefix}/{i}.jpg", sha256=f"{prefix}-{i}", size=1, mtime_ns=1, width=1,
                    height=1, embedding=emb[i], features=feat[i]) for i in range(n)]


def _stamp() -> dict:
    return {"load_avg": [round(x, 2) for x in os.getloadavg()], "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def build(folder: Path, n: int, dim: int, fdim: int, kind: str) -> dict:
    from ravl.collection import open_collection

    if (folder / "built.json").exists():
        return json.loads((folder / "built.json").read_text())
    t = time.perf_counter()
    with open_collection(folder, encoder=SyntheticEncoder(dim, fdim), create=True) as coll:
        coll.set_index_config(kind)
        for start in range(coll.counts()["images"], n, 20_000):
            coll.add_batch(new_items(f"base{start}", min(20_000, n - start), dim, fdim, n, seed=start))
        write_s = time.perf_counter() - t
        t, cpu = time.perf_counter(), time.process_time()
        coll.refresh_indexes()
        facts = coll.index_facts()
        out = {"n": n, "dim": dim, "feature_dim": fdim, "kind": kind, "write_rows_s": round(write_s, 1),
               "full_build_s": round(time.perf_counter() - t, 1), "full_build_cpu_s": round(time.process_time() - cpu, 1),
               "factories": {k: f.get("factory") for k, f in facts.items()},
               "index_file_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in (folder / "index").glob("*.faiss")},
               "db_mb": round((folder / "ravl.sqlite").stat().st_size / 2**20), **_stamp()}
    (folder / "built.json").write_text(json.dumps(out))
    return out


def add_round(coll, round_no: int, n: int, dim: int, fdim: int) -> dict:
    batch = new_items(f"add-{os.getpid()}-{round_no}", 1000, dim, fdim, n, seed=100 + round_no + os.getpid())
    t0, cpu = time.perf_counter(), time.process_time()
    coll.add_batch(batch)
    t1 = time.perf_counter()
    per_index = {}
    for name in ("images", "features", "captions"):  # what refresh_indexes does first, index by index
        t = time.perf_counter()
        coll._indexes.get(name)
        per_index[name] = round(time.perf_counter() - t, 3)
    coll.refresh_indexes()  # then: facts recorded, log pruned
    t2 = time.perf_counter()
    return {"write_s": round(t1 - t0, 3), "refresh_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3),
            "cpu_s": round(time.process_time() - cpu, 3), "per_index_s": per_index, "stats": coll.index_stats()}


def child(mode: str, folder: Path, n: int, dim: int, fdim: int) -> dict:
    from ravl.collection import open_collection

    t0 = time.perf_counter()
    with open_collection(folder, create=True) as coll:
        if mode == "load":
            coll.refresh_indexes()
            return {"mode": "load", "open_and_load_s": round(time.perf_counter() - t0, 3),
                    "stats": coll.index_stats(), **_stamp()}
        if mode == "cold":
            return {"mode": "cold", **add_round(coll, 0, n, dim, fdim), **_stamp()}
        if mode == "ingest":  # what `ravl index` does: write, then leave big caches to their readers
            batch = new_items(f"ingest-{os.getpid()}", 1000, dim, fdim, n, seed=7 + os.getpid())
            t1, cpu = time.perf_counter(), time.process_time()
            coll.add_batch(batch)
            coll.refresh_indexes(lazy=True)
            return {"mode": "ingest", "total_s": round(time.perf_counter() - t1, 3),
                    "with_open_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - cpu, 3),
                    "stats": coll.index_stats(), **_stamp()}
        coll.refresh_indexes()  # warm: indexes in memory first
        rounds = [add_round(coll, r, n, dim, fdim) for r in range(1, 4)]
        return {"mode": "warm", "rounds": rounds, **_stamp()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--feature-dim", type=int, default=384)
    ap.add_argument("--kind", default="flat", choices=["flat", "hnsw", "ivfpq"])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ravl-scale-updates")
    ap.add_argument("--modes", default="load,warm,cold,cold,ingest",
                    help="fresh processes to run, in order (default load,warm,cold,cold,ingest)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = args.workdir / f"coll-{args.n}-{args.dim}-{args.feature_dim}-{args.kind}"
    if args.child:
        print(json.dumps(child(args.child, folder, args.n, args.dim, args.feature_dim)), flush=True)
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"build": build(folder, args.n, args.dim, args.feature_dim, args.kind)}), flush=True)
    for mode in args.modes.split(","):  # separate processes: nothing held between them
        r = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--dim", str(args.dim), "--feature-dim",
                            str(args.feature_dim), "--kind", args.kind, "--workdir", str(args.workdir),
                            "--child", mode], capture_output=True, text=True)
        print(r.stdout.strip() if r.returncode == 0 else json.dumps({"mode": mode, "error": r.stderr[-800:]}),
              flush=True)


if __name__ == "__main__":
    main()
