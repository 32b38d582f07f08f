"""Ingest throughput of ``ravl index --engine ray`` against the local engine, same machine, same encoder,
same images, measured in one run as a ratio (the machine is shared, so only ratios within a run mean much).

Each round indexes the same COCO-like manifest (N JPEGs of ~384 px, ``--captions`` distinct captions
each) into two fresh collections, once per engine, each through the real CLI in its own process
(``ravl index MANIFEST -c DIR --json [--engine ray]``), local first then Ray, so both pay their process
start and model load. Reported per engine: wall seconds of the whole command, images/s over that
wall time (``ratio``: Ray over local in the same round), and the report's stage seconds; and the
ingest call's images/s without one-time costs (``ratio_after_startup``): local = images / (ingest
seconds - final index build), Ray = (images - the first batch) / (ingest seconds - index build -
``ray.init`` - the wait for the first batch, i.e. actor process start + model load + one batch).

    nice -n 10 python benchmarks/ray_ingest.py --n 2000 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_search import build_images, captions_for  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ravl.ingest.ray_engine import BATCH  # noqa: E402  (records per actor call: the first batch's images)

SRC = Path(__file__).resolve().parents[1] / "src"


def run_cli(manifest: Path, coll: Path, extra: list[str], keep: bool = False) -> dict:
    shutil.rmtree(coll, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", "index", str(manifest), "-c", str(coll), "--json",
                           "--encoder", "default", *extra], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"ravl index {' '.join(extra)} failed: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    if not keep:
        shutil.rmtree(coll, ignore_errors=True)
    return {"wall_s": round(wall, 1), "images_per_s": round(report["added"] / wall, 2), "added": report["added"],
            "captions_added": report["captions_added"], "seconds": report["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images per run")
    ap.add_argument("--captions", type=int, default=5, help="distinct captions per image")
    ap.add_argument("--rounds", type=int, default=1, help="local + Ray pairs")
    ap.add_argument("--num-workers", type=int, default=None, help="Ray encoder actors (default: ravl's)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ravl-bench")
    args = ap.parse_args()

    base = build_images(args.workdir / f"images-{args.n}", args.n)
    rows = [json.loads(line) for line in open(base)]
    manifest = base.parent / f"captions-{args.captions}.jsonl"
    manifest.write_text("".join(json.dumps({"image": r["image"], "captions": captions_for(r["caption"], i, args.captions)})
                                + "\n" for i, r in enumerate(rows)))
    ray_args = ["--engine", "ray"] + (["--num-workers", str(args.num_workers)] if args.num_workers else [])
    coll = args.workdir / f"ray-ingest-{os.getpid()}"
    other = args.workdir / f"ray-ingest-{os.getpid()}-ray"
    run_cli(_small(manifest, 64), coll, [])  # warm the model caches (ONNX export) once
    rounds = []
    for i in range(args.rounds):
        last = i == args.rounds - 1
        local = run_cli(manifest, coll, [], keep=last)
        ray = run_cli(manifest, other, ray_args, keep=last)
        s, ls = ray["seconds"], local["seconds"]
        startup = s["ray_start"] + s["first_batch"]
        ray["startup_s"] = round(startup, 1)
        # the ingest call without its one-time costs (the final index build is the same code for both)
        local["pipeline_images_per_s"] = round(local["added"] / (ls["total"] - ls.get("index", 0)), 2)
        ray["pipeline_images_per_s"] = round((ray["added"] - min(ray["added"], BATCH))
                                             / (s["total"] - s.get("index", 0) - startup), 2)
        rounds.append({"local": local, "ray": ray, "ratio": round(ray["images_per_s"] / local["images_per_s"], 3),
                       "ratio_after_startup": round(ray["pipeline_images_per_s"] / local["pipeline_images_per_s"], 3)})
    same = max_differences(coll, other)  # the last round's two collections: same rows, same vectors?
    shutil.rmtree(coll, ignore_errors=True)
    shutil.rmtree(other, ignore_errors=True)
    print(json.dumps({"images": args.n, "captions_per_image": args.captions, "encoder": "default",
                      "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "rounds": rounds,
                      "ray_vs_local": same}, indent=2))


def max_differences(a_dir: Path, b_dir: Path) -> dict:
    """Largest absolute difference between the two collections' vectors, matched by uri / caption text."""
    import numpy as np

    from ravl.collection import open_collection

    def rows(path: Path) -> tuple[dict, dict, dict, dict]:
        with open_collection(path) as c:
            ids, emb = c.item_vectors(which="emb")
            _, feat = c.item_vectors(which="feat")
            items = c.items(ids.tolist())
            cids, cvec = c.caption_vectors()
            caps = c.caption_rows(cids.tolist())
            return ({items[i].uri: v for i, v in zip(ids.tolist(), emb)},
                    {items[i].uri: v for i, v in zip(ids.tolist(), feat)},
                    {(caps[i][2], caps[i][0]): v for i, v in zip(cids.tolist(), cvec)},
                    {items[i].uri: i for i in ids.tolist()})

    a, b = rows(a_dir), rows(b_dir)
    out: dict = {"same_uris": a[0].keys() == b[0].keys(), "same_captions": a[2].keys() == b[2].keys(),
                 "same_ids": a[3] == b[3]}
    for name, x, y in (("embedding", a[0], b[0]), ("features", a[1], b[1]), ("captions", a[2], b[2])):
        keys = x.keys() & y.keys()
        out[f"max_abs_diff_{name}"] = float(max((np.abs(x[k] - y[k]).max() for k in keys), default=0.0))
    return out


def _small(manifest: Path, n: int) -> Path:
    out = manifest.parent / "warm.jsonl"
    out.write_text("".join(open(manifest).readlines()[:n]))
    return out


if __name__ == "__main__":
    main()
