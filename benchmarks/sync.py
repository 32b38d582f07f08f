"""What following a folder costs (issue 22): a re-index of an unchanged folder (scan, stat, sync
check), the same with 10% of the files deleted (removed in chunks of 1,000 per transaction, the
indexes caught up from the change log), and a renamed sub-folder (every item moved, no model call).

    .venv/bin/python benchmarks/sync.py --n 20000

The images are tiny PNGs and the encoder is a 16-d mean-colour stand-in registered here, so the
figures are ravl's own bookkeeping (SQLite, file system, index catch-up), not a model's cost.
JSON lines on stdout; the load average is printed, since the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ravl import registry
from ravl.collection import open_collection
from ravl.encoders.base import Encoder, ImageVectors, l2_normalize
from ravl.ingest.pipeline import index_sources


class MeanColour(Encoder):
    dim = 16
    feature_dim = 16
    batch_size = 256
    image_size_hint = 4

    def __init__(self, spec):
        self.spec = str(spec)

    def preprocess(self, image):
        return np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32).reshape(-1)[:16] / 255

    def embed_pixels(self, pixels):
        v = l2_normalize(pixels + 1e-3)
        return ImageVectors(v, v)

    def encode_texts(self, texts):
        return l2_normalize(np.ones((len(texts), 16), np.float32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    registry.register("encoders", "meancolour", MeanColour)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ravl-sync-bench-"))
    photos, coll_dir = work / "photos", work / "coll"
    rng = np.random.default_rng(0)
    for i in range(args.n):
        path = photos / f"d{i // 1000:03d}" / f"p{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), tuple(int(c) for c in rng.integers(0, 256, 3))).save(path)
    print(f"# load average {os.getloadavg()}", flush=True)
    with open_collection(coll_dir, encoder="meancolour", create=True) as coll:
        def run(step: str) -> None:
            t = time.perf_counter()
            r = index_sources(coll, [str(photos)])
            print(json.dumps({"step": step, "n": args.n, "seconds": round(time.perf_counter() - t, 3),
                              "added": r.added, "unchanged": r.unchanged, "moved": r.moved, "removed": r.removed,
                              "sync_seconds": r.seconds.get("sync"), "index_seconds": r.seconds.get("index")}),
                  flush=True)

        run("first index")
        coll.search_vectors(np.ones((1, 16), np.float32) / 4, index="images", k=10)  # hold the index in memory
        run("unchanged")
        files = sorted(photos.rglob("*.png"))
        for path in files[:: 10]:
            path.unlink()
        run("10% deleted")
        shutil.move(str(photos / "d000"), str(photos / "renamed"))
        run("a folder renamed")
    print(f"# load average {os.getloadavg()}", flush=True)
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
