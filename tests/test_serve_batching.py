"""Dynamic batching in `ravl serve`: batched answers equal unbatched ones, and a model call in flight
never delays /health or static files (real server processes on loopback)."""
from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from ravl.server.batcher import Batcher, Failed
from test_server_api import Server, build_collection, jpeg_bytes

TESTS = Path(__file__).resolve().parent


def test_batcher_batches_and_fans_results_back():
    gate, entered = threading.Event(), threading.Event()
    calls = []

    def model(items):
        entered.set()
        gate.wait(30)
        calls.append(len(items))
        return [x * 2 for x in items]

    b = Batcher(model, max_batch=8, wait_ms=0)
    try:
        first = b.submit(0)  # occupies the model while the others queue up
        assert entered.wait(30)
        rest = [b.submit(i) for i in range(1, 20)]
        gate.set()
        assert first.result(30) == 0 and [f.result(30) for f in rest] == [2 * i for i in range(1, 20)]
        assert calls == [1, 8, 8, 3]
        assert b.stats()["largest_batch"] == 8 and b.stats()["items"] == 20
        failing = Batcher(lambda items: 1 / 0, max_batch=4, wait_ms=0)
        with pytest.raises(ZeroDivisionError):
            failing.submit(1).result(30)
        failing.close()
        # a row that failed on its own fails only its request
        partly = Batcher(lambda items: [Failed(ValueError(x)) if x < 0 else x for x in items], max_batch=4, wait_ms=50)
        good, bad = partly.submit(3), partly.submit(-1)
        assert good.result(30) == 3
        with pytest.raises(ValueError):
            bad.result(30)
        partly.close()
    finally:
        b.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory, skimage_photos):
    return build_collection(tmp_path_factory, skimage_photos)


@pytest.mark.slow
def test_batched_answers_equal_unbatched(built, tmp_path, skimage_photos):
    uploads = {n: jpeg_bytes(skimage_photos, n) for n in ("coffee", "chelsea", "rocket")}
    queries = [("text", q) for q in ("a cat", "a red circle", "a rocket", "coffee", "a square", "a vehicle",
                                     "a man with a camera", "espresso", "a blue thing")]
    queries += [("captions", q) for q in ("espresso", "a woman", "a cat")]
    queries += [("upload", n) for n in uploads] + [("upload-captions", n) for n in uploads]

    def ask(c: httpx.Client, q) -> list:
        kind, value = q
        target = "captions" if kind.endswith("captions") else "images"
        if kind.startswith("upload"):
            r = c.post("/search", files={"image": (f"{value}.jpg", uploads[value], "image/jpeg")},
                       data={"k": "5", "target": target})
        else:
            r = c.get("/search", params={"q": value, "k": 5, "target": target})
        r.raise_for_status()
        return r.json()["results"]

    plain = Server(built[1], "--batch-size", "1", log_dir=tmp_path)
    try:
        with plain.client() as c:
            expected = {q: ask(c, q) for q in queries}
            assert c.get("/info").json()["batching"]["texts"]["largest_batch"] == 1
    finally:
        plain.stop()
    batched = Server(built[1], "--batch-size", "16", "--batch-wait-ms", "20", log_dir=tmp_path)
    try:
        def worker(n: int) -> list:
            with batched.client() as c:
                return [(q, ask(c, q)) for q in (queries[(n + i) % len(queries)] for i in range(12))]

        with ThreadPoolExecutor(16) as pool:
            runs = list(pool.map(worker, range(16)))
        with batched.client() as c:
            stats = c.get("/info").json()["batching"]
    finally:
        batched.stop()
    assert stats["texts"]["largest_batch"] > 1 and stats["images"]["largest_batch"] > 1, stats
    assert stats["searches"]["largest_batch"] > 1, stats  # text searches share one store call too
    assert stats["image_searches"]["largest_batch"] > 1, stats  # and image queries theirs
    for run in runs:
        for q, got in run:
            want = expected[q]
            assert [h["id"] for h in got] == [h["id"] for h in want], q
            assert np.allclose([h["score"] for h in got], [h["score"] for h in want], atol=1e-5), q


@pytest.mark.slow
def test_health_and_static_files_answer_while_a_model_call_is_in_flight(tmp_path):
    sys.path.insert(0, str(TESTS))
    import slow_encoder
    from conftest import make_image
    from ravl import index_sources, open_collection

    slow_encoder.register()
    images = tmp_path / "images"
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        make_image(images / f"{name}.png", colour)
        (images / f"{name}.txt").write_text(f"a {name} square\n")
    with open_collection(tmp_path / "coll", encoder="testslow", create=True) as coll:
        index_sources(coll, [images])
    gate = tmp_path / "gate"
    gate.mkdir()
    srv = Server(tmp_path / "coll", env={"RAVL_TEST_SLOW_DIR": str(gate)}, log_dir=tmp_path,
                 launcher=[sys.executable, str(TESTS / "slow_encoder.py")])
    url = srv.url
    try:
        pending = 60  # more than the server's worker threads: none of them may be held by a waiting query
        with ThreadPoolExecutor(pending) as pool:
            searches = [pool.submit(httpx.get, url + "/search", params={"q": f"slow red {i}"}, timeout=90)
                        for i in range(pending)]
            deadline = time.monotonic() + 60
            while not (gate / "started").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert (gate / "started").exists(), "the slow encode never started"
            with httpx.Client(base_url=url, timeout=30) as c:
                assert c.get("/health").json()["status"] == "ok"
                assert c.get("/static/app.js").status_code == 200
                assert c.get("/").status_code == 200
            assert not any(f.done() for f in searches)  # all still waiting on the blocked model
            (gate / "release").touch()
            results = [f.result() for f in searches]
        assert all(r.status_code == 200 for r in results)
        assert all(Path(r.json()["results"][0]["uri"]).stem == "red" for r in results)
    finally:
        srv.stop()
