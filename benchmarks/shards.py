"""One collection (`ravl serve`) vs the same images split into two shards (`ravl shards`, Ray Serve,
one replica per shard on a local Ray): throughput and latency of GET /search, and whether the
answers agree.

    .venv/bin/python benchmarks/shards.py [--workdir DIR] [--seconds 10] [--clients 1,4]

Images: the Tux Paint stamps (Debian tuxpaint-stamps-default) with their descriptions as captions,
indexed with the offline default encoder: every stamp into one collection, even-numbered stamps
into shard0 and odd-numbered into shard1 (built once under --workdir). Both servers run on this
machine, one after the other, driven by N client threads over loopback keep-alive connections
(httpx). Prints, per mode (vector, hybrid) and client count: queries/s, p50 and p95 latency, and
how many of the queries' answers (top 10) have the same uris with scores within 1e-5.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from serve import free_port  # noqa: E402

QUERIES = ["a cat", "a red flower", "a boat on the sea", "a bird", "a car", "a tree", "a house", "a fish",
           "a musical instrument", "fruit", "a horse", "the moon", "a dog", "a flag", "an insect", "a star"]


def build(workdir: Path) -> dict[str, Path]:
    from ravl.collection import open_collection
    from ravl.ingest.pipeline import index_sources
    from ravl.ingest.tuxpaint import load_stamps

    out = {k: workdir / k for k in ("both", "shard0", "shard1")}
    if (workdir / "built").exists():
        return out
    workdir.mkdir(parents=True, exist_ok=True)
    stamps = load_stamps()
    rows = [{"image": str(s.image), "caption": s.description} for s in stamps]
    manifests = {"both": rows, "shard0": rows[0::2], "shard1": rows[1::2]}
    for key, part in manifests.items():
        m = workdir / f"{key}.jsonl"
        m.write_text("".join(json.dumps(r) + "\n" for r in part))
        with open_collection(out[key], create=True) as coll:
            index_sources(coll, [str(m)])
    (workdir / "built").write_text("ok\n")
    return out


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                httpx.get(url + "/search", params={"q": "warm up", "k": 10}, timeout=60)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up in {timeout} s")


def drive(url: str, params: dict, clients: int, seconds: float) -> tuple[float, float, float, dict[str, list]]:
    """(queries/s, p50 ms, p95 ms, query -> [(uri, score, cosine)] of the last answer)."""
    import httpx

    lat: list[float] = []
    answers: dict[str, list] = {}
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def run(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            i = n
            while time.monotonic() < stop:
                q = QUERIES[i % len(QUERIES)]
                t = time.perf_counter()
                r = http.get("/search", params={"q": q, "k": 10, **params})
                dt = time.perf_counter() - t
                r.raise_for_status()
                with lock:
                    lat.append(dt)
                    answers[q] = [(h["uri"], h["score"], h.get("vector_score")) for h in r.json()["results"]]
                i += 1

    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    lat.sort()
    return len(lat) / wall, 1000 * statistics.median(lat), 1000 * lat[int(0.95 * (len(lat) - 1))], answers


def alike(a: list, b: list, field: int) -> bool:
    """Same uris in the same order, and the ``field`` (1: score, 2: cosine) within 1e-5."""
    return [x[0] for x in a] == [y[0] for y in b] and all(abs(x[field] - y[field]) < 1e-5 for x, y in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("RAVL_HOME", "/tmp")) / "bench-shards")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", default="1,4")
    args = ap.parse_args()
    dirs = build(args.workdir)
    from ravl.collection import open_collection

    with open_collection(dirs["both"], readonly=True) as coll:
        w = coll.calibration().keyword_weight  # hybrid: both sides rank with the one collection's weight
    modes = {"vector": {"mode": "vector"}, "hybrid": {"mode": "hybrid", "keyword_weight": w}}
    levels = [int(c) for c in args.clients.split(",")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "ravl.cli.main"]
    setups = {"one collection (ravl serve)": cli + ["serve", "--collection", str(dirs["both"]), "--generator",
                                                   "consensus", "--log-level", "warning"],
              "two shards (ravl shards, Ray Serve)": cli + ["shards", str(dirs["shard0"]), str(dirs["shard1"])]}
    results: dict[str, dict] = {}
    for name, cmd in setups.items():
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(args.workdir / f"{name.split()[0]}.log", "w")
        t = time.monotonic()
        proc = subprocess.Popen(cmd + ["--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_up(url, proc)
            print(f"{name}: up in {time.monotonic() - t:.1f} s", flush=True)
            for mode, params in modes.items():
                for c in levels:
                    qps, p50, p95, answers = drive(url, params, c, args.seconds)
                    results.setdefault(name, {})[(mode, c)] = answers
                    print(f"  {mode:6s} {c:2d} client(s): {qps:6.1f} q/s  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms",
                          flush=True)
        finally:
            proc.send_signal(2)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    one, two = results.values()
    for mode in modes:
        a, b = one[(mode, levels[0])], two[(mode, levels[0])]
        cos = sum(alike(a[q], b[q], 2) for q in a if q in b)
        scores = sum(alike(a[q], b[q], 1) for q in a if q in b)
        print(f"{mode} (keyword weight {w}): top 10 of {len(a)} queries: {cos} with the same uris in order and "
              f"cosines within 1e-5, {scores} also with scores within 1e-5 (scores use shard0's calibration)")


if __name__ == "__main__":
    main()
