"""`ravl mcp` over stdio with the real default encoder, against a `ravl search --json` process per
query: seconds from spawning the server to its first answer, then the median seconds per search
tool call (thumbnails off and on), on scikit-image's photos (captioned) indexed into a fresh
collection. The point of a long-lived server: one model load serves every call.

    .venv/bin/python benchmarks/mcp_search.py [--calls 20] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERIES = ["a cup of coffee", "a cat", "a rocket launch", "a motorbike", "an astronaut -man", "a man with a camera"]


def build(base: Path) -> Path:
    import skimage.data
    from PIL import Image

    images = base / "images"
    images.mkdir(parents=True)
    for name in ("chelsea", "coffee", "rocket", "astronaut", "camera"):
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(images / f"{name}.jpg")
        (images / f"{name}.txt").write_text(f"{name}\n")
    Image.fromarray(skimage.data.stereo_motorcycle()[0]).save(images / "motorcycle.jpg")
    (images / "motorcycle.txt").write_text("a motorcycle\n")
    subprocess.run([sys.executable, "-m", "ravl.cli.main", "index", str(images), "-c", str(base / "coll")],
                   check=True, capture_output=True)
    return base / "coll"


async def mcp_run(coll: Path, calls: int) -> dict:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    env = {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "RAVL_HOME", "PATH", "HOME")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "ravl.cli.main", "mcp", "-c", str(coll),
                                                                 "-g", "consensus"], env=env)
    t0 = time.perf_counter()
    async with Client(params) as client:
        await client.call_tool("search", {"query": "warm", "k": 5, "thumbnails": 0})
        first = time.perf_counter() - t0
        out = {"first_answer_s": round(first, 3)}
        for thumbs in (0, 3):
            times = []
            for i in range(calls):
                t = time.perf_counter()
                r = await client.call_tool("search", {"query": QUERIES[i % len(QUERIES)], "k": 5, "thumbnails": thumbs})
                assert not r.is_error, r.content[0].text
                times.append(time.perf_counter() - t)
            out[f"call_s_thumbnails_{thumbs}"] = round(statistics.median(times), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ravl-mcp-bench-") as tmp:
        coll = build(Path(tmp))
        figures = asyncio.run(mcp_run(coll, args.calls))
        cli = []
        for q in QUERIES[:5]:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "ravl.cli.main", "search", "-c", str(coll), "--text", q, "--json"],
                           check=True, capture_output=True)
            cli.append(time.perf_counter() - t)
        figures["cli_process_s"] = round(statistics.median(cli), 3)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"ravl mcp (stdio): first answer {figures['first_answer_s']:.2f} s after spawning; search call "
          f"{figures['call_s_thumbnails_0'] * 1000:.1f} ms (3 thumbnails: {figures['call_s_thumbnails_3'] * 1000:.1f} ms)")
    print(f"ravl search --json as a process: {figures['cli_process_s']:.2f} s per query")


if __name__ == "__main__":
    main()
