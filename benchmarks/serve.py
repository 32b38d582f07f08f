"""Throughput and latency of `ravl serve` text (or, with --queries image, image) search with 1, 4 and
16 concurrent clients.

Builds (once) a collection of generated images — coloured shapes on coloured backgrounds, each
with a caption describing it — indexed with the offline `default` encoder, starts a real server
process on loopback and drives it with N client threads (one HTTP keep-alive connection each).

    .venv/bin/python benchmarks/serve.py                      # 10,000 images under $RAVL_HOME/bench-serve
    .venv/bin/python benchmarks/serve.py --collection DIR     # an existing collection
    .venv/bin/python benchmarks/serve.py --images 2000 --seconds 5
    .venv/bin/python benchmarks/serve.py --synthetic --baseline-src /path/to/old/src   # same-run ratio

--synthetic uses benchmarks/startup.py's collection (10k items with random vectors: text search
cost does not depend on their values, and it builds in seconds); --baseline-src also runs every
level against a server importing ravl from another source tree (e.g. a checkout of an older
commit), so the two are compared in one run on the same machine.

The load generator runs on the same machine as the server, so on a small machine both compete
for the cores; the figures are end-to-end (HTTP + text encoder + FAISS + JSON). The default
client drives every connection from one asyncio loop over plain sockets (a tenth of httpx's CPU
per request); `--client httpx` is the thread-per-client httpx load of earlier figures. With
`--baseline-src` both servers run at once and the levels alternate between them (`--rounds`).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (240, 215, 40),
           "black": (20, 20, 20), "white": (250, 250, 250), "orange": (245, 140, 20), "purple": (130, 50, 170)}
SHAPES = ("circle", "square", "triangle", "stripe")
SIZES = ("small", "large")


def generate_images(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` small JPEGs of a shape on a background, with a caption sidecar each."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for i in range(n):
        path = folder / f"{i // 1000:02d}" / f"img{i:05d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(exist_ok=True)
        fg, bg = rng.sample(names, 2)
        shape, size = rng.choice(SHAPES), rng.choice(SIZES)
        img = Image.new("RGB", (128, 128), COLOURS[bg])
        d = ImageDraw.Draw(img)
        r = rng.randint(40, 60) if size == "large" else rng.randint(14, 26)
        cx, cy = rng.randint(r, 128 - r), rng.randint(r, 128 - r)
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            d.ellipse(box, fill=COLOURS[fg])
        elif shape == "square":
            d.rectangle(box, fill=COLOURS[fg])
        elif shape == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[fg])
        else:
            d.rectangle((0, cy - r // 3, 128, cy + r // 3), fill=COLOURS[fg])
        noise = Image.effect_noise((128, 128), rng.randint(5, 30)).convert("RGB")
        img = Image.blend(img, noise, 0.08)
        img.save(path, quality=85)
        path.with_suffix(".txt").write_text(f"a {size} {fg} {shape} on a {bg} background\n")


def build(collection: Path, n: int) -> None:
    images = collection.parent / f"{collection.name}-images"
    t = time.perf_counter()
    generate_images(images, n)
    print(f"generated {n} images in {time.perf_counter() - t:.1f}s under {images}", file=sys.stderr)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", "index", str(images), "--collection",
                           str(collection), "--json"], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"indexing failed: {proc.stderr}")
    report = json.loads(proc.stdout)
    print(f"indexed {report['collection']} in {time.perf_counter() - t:.1f}s", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(collection: Path, extra: list[str], src: str | None = None) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": src} if src else None
    proc = subprocess.Popen([sys.executable, "-m", "ravl.cli.main", "serve", "--collection", str(collection), "--port",
                             str(port), "--log-level", "warning", *extra], stderr=subprocess.DEVNULL, env=env)
    t = time.perf_counter()
    while time.perf_counter() - t < 300:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                print(f"server ready in {time.perf_counter() - t:.1f}s at {url}", file=sys.stderr)
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("server did not start")


def queries(n: int = 400, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    words = list(COLOURS)
    out = set()
    while len(out) < n:
        form = rng.randrange(3)
        if form == 0:
            out.add(f"a {rng.choice(words)} {rng.choice(SHAPES)}")
        elif form == 1:
            out.add(f"a {rng.choice(SIZES)} {rng.choice(words)} {rng.choice(SHAPES)} on {rng.choice(words)}")
        else:
            out.add(f"{rng.choice(words)} {rng.choice(SHAPES)} and a {rng.choice(words)} background")
    return sorted(out)


def summary(clients: int, latencies: list[float], errors: int, wall: float) -> dict:
    """One level's figures: requests, errors, q/s, p50 and p99 latency in ms."""
    lat = sorted(latencies)
    return {"clients": clients, "requests": len(lat), "errors": errors, "qps": len(lat) / wall,
            "p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000}


def run_threads(url: str, clients: int, seconds: float, send) -> dict:
    """``clients`` threads, each with its own keep-alive httpx connection, calling ``send(client,
    rng)`` (one request, its response returned) until ``seconds`` have passed."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    start_gate = threading.Barrier(clients)

    def client(n: int) -> None:
        rng = random.Random(n)
        mine = []
        with httpx.Client(base_url=url, timeout=120) as c:
            start_gate.wait()
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = send(c, rng)
                mine.append(time.perf_counter() - t)
                if r.status_code != 200:
                    with lock:
                        errors[0] += 1
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return summary(clients, latencies, errors[0], time.perf_counter() - t0)


def run_level(url: str, clients: int, seconds: float, k: int, texts: list[str], mode: str = "auto") -> dict:
    """Text queries, a thread per client (httpx)."""
    return run_threads(url, clients, seconds,
                       lambda c, rng: c.get("/search", params={"q": rng.choice(texts), "k": k, "mode": mode}))


def query_images(n: int = 24, seed: int = 2) -> list[bytes]:
    """``n`` JPEG query images like the collection's (shapes on backgrounds), as upload bytes."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ravl-bench-queries-"))
    generate_images(folder, n, seed=seed)
    return [path.read_bytes() for path in sorted(folder.rglob("*.jpg"))]


def run_level_images(url: str, clients: int, seconds: float, k: int, uploads: list[bytes]) -> dict:
    """Image queries: each client thread POSTs uploads to /search."""
    return run_threads(url, clients, seconds, lambda c, rng: c.post(
        "/search", files={"image": ("q.jpg", rng.choice(uploads), "image/jpeg")}, data={"k": str(k)}))


def run_level_asyncio(url: str, clients: int, seconds: float, k: int, texts: list[str], mode: str) -> dict:
    """``clients`` keep-alive HTTP/1.1 connections driven from one asyncio loop with plain sockets:
    about a tenth of httpx's CPU per request, so more of the shared cores is left to the server."""
    import asyncio
    from urllib.parse import quote_plus, urlparse

    where = urlparse(url)
    latencies: list[float] = []
    errors = [0]

    async def client(n: int, stop: float) -> None:
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        rng = random.Random(n)
        try:
            while time.perf_counter() < stop:
                q = quote_plus(rng.choice(texts))
                t = time.perf_counter()
                writer.write(f"GET /search?q={q}&k={k}&mode={mode} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                if head.split(b" ", 2)[1] != b"200":
                    errors[0] += 1
        finally:
            writer.close()

    async def drive() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, t0 + seconds) for i in range(clients)))
        return time.perf_counter() - t0

    wall = asyncio.run(drive())
    return summary(clients, latencies, errors[0], wall)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collection", type=Path, default=None, help="existing collection (default: build one)")
    ap.add_argument("--images", type=int, default=10_000, help="images to generate when building (default 10000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring time per concurrency level")
    ap.add_argument("--clients", default="1,4,16", help="concurrency levels (default 1,4,16)")
    ap.add_argument("--k", type=int, default=10, help="results per query (default 10)")
    ap.add_argument("--serve-args", default="", help="extra arguments for 'ravl serve', e.g. '--threads 2'")
    ap.add_argument("--synthetic", action="store_true", help="use a synthetic 10k-item collection (see above)")
    ap.add_argument("--baseline-src", default=None, help="also measure a server importing ravl from this folder")
    ap.add_argument("--baseline-args", default="", help="extra 'ravl serve' arguments for the baseline server")
    ap.add_argument("--baseline-collection", type=Path, default=None,
                    help="the collection the baseline serves (default: the same; give a copy when this tree's "
                         "schema is newer than the baseline understands)")
    ap.add_argument("--mode", default="auto", help="search mode sent with every query (default auto)")
    ap.add_argument("--client", choices=("asyncio", "httpx"), default="asyncio",
                    help="load generator: asyncio (plain sockets, one loop; default) or httpx (a thread per client)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of all levels, servers interleaved level by level (median reported; default 1)")
    ap.add_argument("--queries", choices=("text", "image"), default="text",
                    help="what the clients send: text queries (GET /search?q=) or image uploads (POST /search)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.synthetic and args.collection is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from startup import build_synthetic

        from ravl.config import ravl_home

        args.collection = build_synthetic(ravl_home() / f"bench-startup-{args.images}", args.images)
    if args.collection is None:
        from ravl.config import ravl_home

        args.collection = ravl_home() / f"bench-serve-{args.images}"
        if not (args.collection / "ravl.sqlite").exists():
            build(args.collection, args.images)
    texts = queries()
    uploads = query_images() if args.queries == "image" else []
    runs = [("this", args.serve_args, None, args.collection)]
    if args.baseline_src:
        runs.append(("baseline", args.baseline_args, args.baseline_src, args.baseline_collection or args.collection))
    servers = {}
    try:
        import httpx

        for label, extra, src, collection in runs:
            servers[label] = start_server(collection, extra.split(), src)
            with httpx.Client(base_url=servers[label][1], timeout=300) as c:  # warm-up (the first image loads the CNN)
                for q in texts[:50]:
                    c.get("/search", params={"q": q, "k": args.k, "mode": args.mode}).raise_for_status()
                for data in uploads[:8]:
                    c.post("/search", files={"image": ("q.jpg", data, "image/jpeg")},
                           data={"k": str(args.k)}).raise_for_status()
        info = httpx.get(servers["this"][1] + "/info").json()
        levels = [int(n) for n in args.clients.split(",")]
        measured: dict[str, dict[int, list[dict]]] = {label: {n: [] for n in levels} for label in servers}
        for _ in range(args.rounds):  # interleaved: load changes hit both servers alike
            for n in levels:
                for label, (proc, url) in servers.items():
                    cpu0, own0 = cpu_seconds(proc.pid), time.process_time()
                    if args.queries == "image":
                        row = run_level_images(url, n, args.seconds, args.k, uploads)
                    elif args.client == "asyncio":
                        row = run_level_asyncio(url, n, args.seconds, args.k, texts, args.mode)
                    else:
                        row = run_level(url, n, args.seconds, args.k, texts, args.mode)
                    # CPU per query is steadier than q/s on a shared machine: capacity is about
                    # cores / (server + client CPU per query)
                    row["server_cpu_ms"] = (cpu_seconds(proc.pid) - cpu0) * 1000 / max(1, row["requests"])
                    row["client_cpu_ms"] = (time.process_time() - own0) * 1000 / max(1, row["requests"])
                    measured[label][n].append(row)
        results = {label: [sorted(rows, key=lambda r: r["qps"])[len(rows) // 2] for rows in by_level.values()]
                   for label, by_level in measured.items()}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(15)
    load = os.getloadavg()
    print(f"ravl serve {args.queries} search: {info['images']} images, {info['captions']} captions, encoder {info['encoder']}, "
          f"k={args.k}, mode={args.mode}, {args.client} client, {args.seconds:.0f}s per level, median of "
          f"{args.rounds} round(s), {os.cpu_count()} CPUs, load avg "
          f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    print(f"{'server':>8} {'clients':>7} {'requests':>8} {'errors':>6} {'q/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'srv CPU ms/q':>12} {'client CPU ms/q':>15}"
          + (f" {'q/s x base':>10}" if "baseline" in results else ""))
    for label, rows in results.items():
        for i, r in enumerate(rows):
            ratio = ""
            if "baseline" in results:
                ratio = f" {r['qps'] / results['baseline'][i]['qps']:>10.2f}"
            print(f"{label:>8} {r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['qps']:>7.1f} "
                  f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['server_cpu_ms']:>12.2f} {r['client_cpu_ms']:>15.2f}{ratio}")
    rows = results["this"]
    if args.json:
        print(json.dumps({"info": {k: info[k] for k in ("images", "captions", "encoder")}, "levels": rows,
                          "runs": results, "loadavg": load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
