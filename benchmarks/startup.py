"""Whole-process start-up: `ravl search --text` (and `--image`, `ravl info`) on a 10k collection,
against the bare-import floor `python -c "import numpy, onnxruntime, faiss, tokenizers"`,
measured interleaved in the same run (median of --runs each, warm disk cache), plus the first
search in a fresh RAVL_HOME (which exports the text model and checks it against torch).

    .venv/bin/python benchmarks/startup.py                       # synthetic 10k collection (see below)
    .venv/bin/python benchmarks/startup.py --collection DIR      # an existing default-encoder collection
    .venv/bin/python benchmarks/startup.py --runs 9 --json

The synthetic collection is a real `default` collection (same schema, encoder spec and
fingerprint) whose 10,000 items carry random unit vectors and one caption each instead of
encoded photos: start-up cost does not depend on the vectors' values, and building it takes
seconds instead of an ingest run. Ratios matter more than absolute seconds on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = "import numpy, onnxruntime, faiss, tokenizers"


def build_synthetic(path: Path, n: int, seed: int = 0) -> Path:
    """A `default` collection of ``n`` items with random unit vectors (no model runs but the text
    tower's fingerprint, which needs no weights)."""
    import numpy as np
    from PIL import Image

    from ravl.collection import open_collection
    from ravl.store.db import NewItem

    if (path / "ravl.sqlite").exists():
        return path
    rng = np.random.default_rng(seed)
    image = path.parent / f"{path.name}-query.jpg"
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(image)
    words = ["red", "blue", "dog", "cat", "car", "tree", "beach", "street", "table", "bird", "boat", "house"]
    with open_collection(path, encoder="default", create=True) as coll:
        for start in range(0, n, 1000):
            m = min(1000, n - start)
            emb = rng.standard_normal((m, coll.dim)).astype(np.float32)
            feat = rng.standard_normal((m, coll.feature_dim)).astype(np.float32)
            cap = rng.standard_normal((m, coll.dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            feat /= np.linalg.norm(feat, axis=1, keepdims=True)
            cap /= np.linalg.norm(cap, axis=1, keepdims=True)
            items = []
            for i in range(m):
                k = start + i
                text = f"a {words[k % 12]} {words[(k // 12) % 12]} near a {words[(k // 144) % 12]} ({k})"
                items.append(NewItem(f"/synthetic/img{k:06d}.jpg", f"{k:064x}", 1000, k, 320, 240, emb[i], feat[i],
                                     {"source": "synthetic"}, [(text, cap[i])], source="ingest"))
            coll.add_batch(items)
        coll.refresh_indexes()
    return path


CPU: dict[str, list[float]] = {}  # command -> CPU seconds (user + system) of each timed run


def timed(cmd: list[str], env: dict, name: str = "") -> float:
    """Wall seconds of one run; its CPU seconds go to ``CPU[name]`` (steadier on a busy machine)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    CPU.setdefault(name, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", type=Path, default=None, help="existing collection (default: synthetic)")
    ap.add_argument("--images", type=int, default=10_000, help="items in the synthetic collection (default 10000)")
    ap.add_argument("--runs", type=int, default=7, help="runs of each command (median reported; default 7)")
    ap.add_argument("--baseline-src", default=None,
                    help="also time `ravl search --text` importing ravl from this folder (e.g. an older checkout)")
    ap.add_argument("--skip-fresh", action="store_true", help="skip the fresh-RAVL_HOME first search")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    from ravl.config import ravl_home

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    coll = args.collection or build_synthetic(ravl_home() / f"bench-startup-{args.images}", args.images)
    image = coll.parent / f"{coll.name}-query.jpg"
    py = [sys.executable]
    ravl = py + ["-m", "ravl.cli.main"]
    cmds = {
        "floor: python -c 'import numpy, onnxruntime, faiss, tokenizers'": py + ["-c", FLOOR],
        "python -c pass": py + ["-c", "pass"],
        "ravl search --text": ravl + ["search", "--collection", str(coll), "--text", "a dog", "--k", "5"],
        "ravl info": ravl + ["info", "--collection", str(coll)],
    }
    if image.exists():
        cmds["ravl search --image"] = ravl + ["search", "--collection", str(coll), "--image", str(image), "--k", "5"]
    envs = {name: env for name in cmds}
    if args.baseline_src:
        name = f"ravl search --text, ravl from {args.baseline_src}"
        cmds[name] = cmds["ravl search --text"]
        envs[name] = {**env, "PYTHONPATH": args.baseline_src}
    # byte-compile the sources timed, as `pip install` does: with PYTHONDONTWRITEBYTECODE set (it is
    # on this machine) an editable install would otherwise compile ravl's modules in every process
    import compileall

    import ravl

    for src in [Path(ravl.__file__).parent] + ([Path(args.baseline_src) / "ravl"] if args.baseline_src else []):
        compileall.compile_dir(str(src), quiet=1)
    for name, cmd in cmds.items():  # warm-up: exports (once per RAVL_HOME), page cache, .pyc files
        timed(cmd, envs[name])
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.runs):  # interleaved, so load changes hit every command alike
        for name, cmd in cmds.items():
            times[name].append(timed(cmd, envs[name], name))
    med = {name: statistics.median(v) for name, v in times.items()}
    floor = med[next(iter(cmds))]
    fresh = None
    if not args.skip_fresh:
        home = Path(tempfile.mkdtemp(prefix="ravl-fresh-home-"))
        try:
            fresh = timed(cmds["ravl search --text"], {**env, "RAVL_HOME": str(home)})
        finally:
            shutil.rmtree(home, ignore_errors=True)
    load = os.getloadavg()
    print(f"start-up on {coll} ({args.runs} interleaved runs, median; {os.cpu_count()} CPUs, "
          f"load avg {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f})")
    cpu = {name: statistics.median(CPU[name]) for name in cmds}
    cpu_floor = cpu[next(iter(cmds))]
    print(f"{'command':<66} {'median s':>9} {'x floor':>8} {'CPU s':>7} {'x floor':>8}")
    for name, value in med.items():
        print(f"{name:<66} {value:>9.3f} {value / floor:>8.2f} {cpu[name]:>7.3f} {cpu[name] / cpu_floor:>8.2f}")
    if fresh is not None:
        print(f"{'first ravl search --text in a fresh RAVL_HOME (exports + torch check)':<66} {fresh:>9.1f}")
    if args.json:
        print(json.dumps({"collection": str(coll), "runs": args.runs, "median_s": med, "floor_s": floor,
                          "ratio_to_floor": {k: v / floor for k, v in med.items()},
                          "median_cpu_s": cpu, "cpu_ratio_to_floor": {k: v / cpu_floor for k, v in cpu.items()},
                          "fresh_home_first_search_s": fresh,
                          "loadavg": load, "all_s": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
