"""Load time of the bundled SmolLM2: cold (de-quantise the GGUF, write the verified cache) vs
cached (verify the sidecar digests, load safetensors), each in a fresh process, and the
translation example that docs/generation.md quotes.

    python benchmarks/smollm2_load.py [--runs 2]

Each child process times ``load_generator('smollm2')`` (imports included) in a new RAVL_HOME
(cold), then again in the same RAVL_HOME (cached). The ratio is measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from ravl.generate.base import GenerationParams, load_generator
gen = load_generator("smollm2")
load = time.perf_counter() - t0
out = {"load_s": round(load, 2)}
if sys.argv[1] == "translate":
    from ravl.ocr import translate_prompt
    t = time.perf_counter()
    out["translation"] = gen.generate(translate_prompt(["停车"], "English"), params=GenerationParams(max_tokens=32))
    out["translate_s"] = round(time.perf_counter() - t, 2)
print(json.dumps(out, ensure_ascii=False))
"""


def child(home: str, mode: str) -> dict:
    env = {**os.environ, "RAVL_HOME": home, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    rows = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ravl-smollm2-") as home:
            cold = child(home, "load")
            cached = child(home, "translate")
        rows.append((cold["load_s"], cached["load_s"]))
        print(f"cold {cold['load_s']:.1f} s, cached {cached['load_s']:.1f} s, "
              f"ratio {cold['load_s'] / cached['load_s']:.2f}x", flush=True)
        print(f"translate '停车' -> {cached['translation']!r} ({cached['translate_s']:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
