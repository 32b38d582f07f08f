"""Seconds per image of `ravl imagine` by mode and steps with the tiny random diffusers pipeline
on CPU, and the retrieval overhead (prompt encoding + search) against a 20-step generation.

The pipeline is tests/tiny_diffusers.py's (64x64 output, random weights, tiny IP-Adapter), saved to
a temp folder and loaded through the `diffusers:` spec like a user's. The collection is made of
generated shapes (benchmarks/serve.py's generator) indexed with the offline `default` encoder.
A real Stable Diffusion model is about 1,000x slower per step, so the retrieval share printed here
is an upper bound.

    .venv/bin/python benchmarks/imagine.py                     # 500 images under $RAVL_HOME/bench-imagine
    .venv/bin/python benchmarks/imagine.py --repeats 5 --threads 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

PROMPTS = ["a red circle on a blue background", "a small yellow square", "a large green triangle",
           "a purple stripe on white", "an orange circle on black", "a blue square on yellow"]


def build_collection(root: Path, n: int) -> Path:
    from serve import generate_images

    from ravl.collection import open_collection
    from ravl.ingest.pipeline import index_sources

    images, coll = root / "images", root / "coll"
    generate_images(images, n)
    with open_collection(coll, encoder="default", create=True) as c:
        if c.counts()["images"] < n:
            index_sources(c, [str(images)])
    return coll


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, help="an existing collection (default: build one)")
    parser.add_argument("--images", type=int, default=500, help="images in the built collection (default 500)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell; the median is shown")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--steps", default="1,5,20", help="denoising steps to time (default 1,5,20)")
    args = parser.parse_args()
    os.environ["RAVL_THREADS"] = str(args.threads)

    from ravl.collection import open_collection
    from ravl.config import cache_dir
    from ravl.generate.images import ImageParams, load_image_generator
    from ravl.tasks.imagine import find_references, imagine, load_references, self_check
    from tiny_diffusers import build_tiny_sd

    coll_path = args.collection or build_collection(cache_dir("bench-imagine"), args.images)
    pipe = build_tiny_sd(Path(tempfile.mkdtemp(prefix="ravl-tiny-sd-")), ip_adapter=True)
    gen = load_image_generator(f"diffusers:{pipe}?ip_adapter={pipe / 'ip-adapter' / 'ip-adapter.safetensors'}")
    steps_list = [int(s) for s in args.steps.split(",")]
    with open_collection(coll_path, readonly=True) as coll:
        n_images = coll.counts()["images"]
        imagine(coll, PROMPTS[0], gen, k=4, params=ImageParams(steps=1, seed=0))  # warm-up: loads, allocations
        rows = []
        for mode in ("text", "init", "reference"):
            for steps in steps_list:
                params = ImageParams(steps=steps, seed=1, strength=1.0 if mode == "init" else 0.6)
                _, hits = find_references(coll, PROMPTS[1], 4)
                loaded, _ = load_references(hits, 4)
                init = loaded[0][1]
                refs = [img for _, img in loaded]
                def one(mode=mode, params=params, init=init, refs=refs):
                    return gen.generate(PROMPTS[1], mode=mode, params=params, init_image=init, references=refs)

                sec = median_time(one, args.repeats)
                rows.append((mode, steps, sec))
        retrieval = median_time(lambda: [find_references(coll, p, 4) for p in PROMPTS], args.repeats) / len(PROMPTS)
        _, hits = find_references(coll, PROMPTS[2], 4)
        decode = median_time(lambda: load_references(hits, 4), args.repeats)
        vec, hits = find_references(coll, PROMPTS[2], 4)
        out = gen.generate(PROMPTS[2], params=ImageParams(steps=1, seed=0)).image
        check = median_time(lambda: self_check(coll, vec, out, hits), args.repeats)
        end_to_end = median_time(lambda: imagine(coll, PROMPTS[3], gen, k=4, params=ImageParams(steps=20, seed=2)),
                                 args.repeats)
    print(f"tiny diffusers pipeline (64x64, random weights), {args.threads} torch thread(s), median of "
          f"{args.repeats}; collection of {n_images} images, encoder default\n")
    print("| mode | steps | s / image | s / step |")
    print("|---|---:|---:|---:|")
    for mode, steps, sec in rows:
        eff = steps if mode != "init" else steps  # init at strength 1.0 runs every step
        print(f"| {mode} | {steps} | {sec:.3f} | {sec / eff:.4f} |")
    text20 = next((sec for mode, steps, sec in rows if mode == "text" and steps == 20), None)
    print()
    print(f"retrieval (encode the prompt + search k=4): {1000 * retrieval:.1f} ms")
    print(f"decode 4 references (init/reference modes): {1000 * decode:.1f} ms")
    print(f"self-check (embed the output, score): {1000 * check:.1f} ms")
    print(f"ravl imagine end to end, text mode, 20 steps: {end_to_end:.3f} s")
    if text20:
        share = retrieval / text20
        print(f"retrieval / 20-step generation: {100 * share:.2f}% ({'under' if share < 0.05 else 'OVER'} the 5% budget)")


if __name__ == "__main__":
    main()
