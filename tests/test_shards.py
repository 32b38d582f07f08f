"""Search across shards: two shard collections answer as one collection holding both halves.

The fast tests run the router's fusion in-process (no Ray): the arithmetic on made-up evidence, and
real shards (built with the offline default encoder) against the one collection. The slow tests
deploy on a real local two-node Ray cluster with Ray Serve and send real HTTP requests on loopback:
equal answers, namespaced ids, a shard replica killed mid-load."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ravl.collection import open_collection
from ravl.collection.sharding import Evidence
from ravl.errors import ConfigError, ShardError
from ravl.hybrid import Fusion
from ravl.ingest.pipeline import index_sources
from ravl.request import SearchRequest, Term
from ravl.scores import SUITE_DEFAULT
from ravl.shards.merge import fuse
from ravl.shards.router import ShardSearch, check_shards
from ravl.shards.worker import ShardWorker
from ravl.tasks.search import answer
from test_server_api import PHOTOS, SHAPES, make_photos

SRC = Path(__file__).resolve().parents[1] / "src"
QUERIES = ["a cat", "a red circle", "coffee cup", "a square", "astronaut in space", "a rocket -sky"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, skimage_photos) -> dict[str, Path]:
    """Two shards (one folder of images each) and one collection holding both folders."""
    base = tmp_path_factory.mktemp("shards")
    names = [*PHOTOS, *SHAPES]
    halves = [names[0::2], names[1::2]]
    folders = [make_photos(base / f"images{n}", skimage_photos, half) for n, half in enumerate(halves)]
    out = {}
    for key, sources in (("shard0", folders[:1]), ("shard1", folders[1:]), ("both", folders)):
        with open_collection(base / key, create=True) as coll:
            index_sources(coll, [str(f) for f in sources])
        out[key] = base / key
    return out


@pytest.fixture(scope="module")
def local(built):
    """The router over in-process shard workers, and the one collection."""
    workers = [ShardWorker(built["shard0"], "shard0"), ShardWorker(built["shard1"], "shard1")]

    async def call(s, method, *args):
        return getattr(workers[s], method)(*args)

    one = open_collection(built["both"], readonly=True)
    yield ShardSearch(["shard0", "shard1"], call), one
    one.close()
    for w in workers:
        w.close()


def _one(coll, request: SearchRequest, exclude=()) -> dict:
    return answer(request, coll.search(request, exclude_items=exclude))


def _pairs(body: dict) -> list[tuple[str, float]]:
    return [(r["uri"], r["score"]) for r in body["results"]]


def assert_same(shards: dict, one: dict, exact: bool = True) -> None:
    a, b = _pairs(shards), _pairs(one)
    if exact:
        assert [u for u, _ in a] == [u for u, _ in b]
    else:  # same hits and scores; items tied on score may swap
        assert sorted(u for u, _ in a) == sorted(u for u, _ in b)
    by_uri = dict(b)
    assert all(abs(s - by_uri[u]) < 1e-5 for u, s in a), (a, b)


# --- the fusion arithmetic, no Ray --------------------------------------------------------------
def test_merge_by_cosine_and_fuse_with_global_idf():
    req = SearchRequest((Term("text", "red kite"),), k=3, mode="vector")
    a = Evidence("vector", [(1, 0.9), (2, 0.5)], calibration=SUITE_DEFAULT)
    b = Evidence("vector", [(7, 0.7), (8, 0.1)], calibration=SUITE_DEFAULT)
    fused = fuse(req, [a, b])
    assert [(s, i) for s, i, _, _ in fused.hits] == [(0, 1), (1, 7), (0, 2)]
    assert fused.hits[1][3] == {"found_by": {"vector": 2}, "vector_score": 0.7}
    assert [sc for *_, sc, _ in fused.hits] == sorted((sc for *_, sc, _ in fused.hits), reverse=True)
    # hybrid: "kite" is rare in shard 0 alone but not overall; coverage uses the summed frequencies
    terms = ('"red"', '"kite"')
    hyb = SearchRequest((Term("text", "red kite"),), k=4, mode="hybrid", fusion=Fusion(1.0))
    a = Evidence("hybrid", [(1, 0.5), (2, 0.4)], terms, {'"red"': 1, '"kite"': 1}, 10,
                 {2: [(('"kite"',), 3.0)]}, {}, SUITE_DEFAULT)
    b = Evidence("hybrid", [(7, 0.45)], terms, {'"red"': 9, '"kite"': 1}, 10,
                 {7: [(('"red"',), 1.0)], 9: [(('"red"', '"kite"'), 2.0)]}, {9: 0.2}, SUITE_DEFAULT)
    fused = fuse(hyb, [a, b])
    assert fused.mode == "hybrid" and fused.weight == 1.0
    keys = [(s, i) for s, i, _, _ in fused.hits]
    assert keys[0] == (1, 9)  # covers both words: 0.2 + 1.0
    assert keys[1] == (0, 2)  # "kite" (global df 2 of 20) outweighs "red" (df 10 of 20)
    cov = {(s, i): ex["keyword_score"] for s, i, _, ex in fused.hits}
    assert cov[(1, 9)] == 1.0 and cov[(0, 2)] > 0.5 > cov[(1, 7)] > 0
    # keyword mode ranks by coverage only; a shard's local scores are never compared
    kw = fuse(SearchRequest((Term("text", "red kite"),), k=2, mode="keyword"), [a, b])
    assert kw.mode == "keyword" and [(s, i) for s, i, _, _ in kw.hits] == [(1, 9), (0, 2)]


def test_shards_must_share_the_encoder():
    f = {"name": "shard0", "path": "/a", "fingerprint": "x", "dim": 4, "feature_dim": 4}
    check_shards([f, {**f, "name": "shard1"}])
    with pytest.raises(ShardError, match="shard1 .* built with encoder 'y'.*re-index"):
        check_shards([f, {**f, "name": "shard1", "path": "/b", "fingerprint": "y"}])


def test_router_gives_a_clear_error_when_a_shard_stays_down():
    ray = pytest.importorskip("ray", reason="pip install 'ravl[ray]'")
    from ravl.errors import ShardUnavailableError
    from ravl.shards.replica import call_with_retry

    class Down:  # a handle whose every replica is gone, as Serve's handle reports it
        calls = 0

        class facts:  # noqa: N801 - the handle's method
            @staticmethod
            async def remote():
                Down.calls += 1
                raise ray.exceptions.ActorUnavailableError("replica is restarting", b"0" * 16)

    class Hung:  # a replica that never answers
        class facts:  # noqa: N801
            @staticmethod
            def remote():
                return asyncio.sleep(3600)

    t = time.monotonic()
    with pytest.raises(ShardUnavailableError, match="shard0 did not answer for 1 s .*retry shortly"):
        asyncio.run(call_with_retry(Down, "shard0", "facts", deadline_s=1.0))
    assert Down.calls >= 2 and time.monotonic() - t < 10
    t = time.monotonic()
    with pytest.raises(ShardUnavailableError, match="shard1 did not answer for 2 s \\(TimeoutError\\)"):
        asyncio.run(call_with_retry(Hung, "shard1", "facts", deadline_s=2.0))
    assert time.monotonic() - t < 10


def test_deployments_ray_could_never_place_are_refused():
    from ravl.shards.deploy import ShardsOptions, check_resources

    opts = ShardsOptions(("a", "b"), replicas=2, replica_cpus=1.0)
    with pytest.raises(ShardError, match="need 4 logical CPUs but the Ray cluster has 2; lower --replicas"):
        check_resources(opts, {"CPU": 2.0})
    check_resources(opts, {"CPU": 4.0})
    pinned = ShardsOptions(("a", "b"), pin=True)
    with pytest.raises(ShardError, match="no Ray node offers ravl_shard1; start .*ravl_shard1"):
        check_resources(pinned, {"CPU": 4.0, "ravl_shard0": 1.0})
    check_resources(pinned, {"CPU": 4.0, "ravl_shard0": 1.0, "ravl_shard1": 1.0})
    with pytest.raises(ConfigError, match="--replicas"):
        ShardsOptions(("a",), replicas=0)


# --- real shards in-process against one collection ---------------------------------------------
def test_vector_answers_equal_one_collection(local):
    router, one = local
    for q in QUERIES:
        for target in ("images", "captions"):
            req = SearchRequest.of_text(q, k=6, mode="vector", target=target)
            got = asyncio.run(router.search(req))
            assert_same(got, _one(one, req))
            assert all(str(r["id"]).startswith(("shard0:", "shard1:")) for r in got["results"])


def test_hybrid_and_keyword_rank_as_one_collection(local):
    router, one = local
    w = one.calibration().keyword_weight
    for q in QUERIES:
        for mode in ("hybrid", "keyword", "auto"):
            req = SearchRequest.of_text(q, k=6, mode=mode, fusion=Fusion(w))
            got, want = asyncio.run(router.search(req)), _one(one, req)
            assert_same(got, want, exact=mode != "keyword")


def test_filters_apply_on_every_shard(local, built):
    from ravl.filters import Filters

    router, one = local
    folder = str(built["shard1"].parent / "images1")
    req = SearchRequest.of_text("a picture", k=10, mode="vector", filters=Filters.parse(folder=folder))
    got = asyncio.run(router.search(req))
    assert got["results"] and all(r["uri"].startswith(folder) and r["id"].startswith("shard1:") for r in got["results"])
    assert_same(got, _one(one, req))


def test_item_ids_are_namespaced_and_accepted_back(local):
    router, one = local
    got = asyncio.run(router.search(SearchRequest.of_text("a tabby cat", k=3, mode="vector")))
    top = got["results"][0]
    assert top["id"].startswith("shard0:") and top["uri"].endswith("chelsea.jpg")
    similar = asyncio.run(router.search(SearchRequest((Term("image", top["id"]),), k=4)))
    assert similar["query"] == {"item": top["id"]}
    assert top["uri"] not in [r["uri"] for r in similar["results"]]  # an item is not its own neighbour
    row = one.item_by_uri(top["uri"])
    want = _one(one, SearchRequest((Term("item", row.id),), k=4), exclude=(row.id,))
    assert_same(similar, want)
    mixed = SearchRequest((Term("text", "a cat"), Term("image", top["id"], 0.5)), k=4)
    assert_same(asyncio.run(router.search(mixed)),
                _one(one, SearchRequest((Term("text", "a cat"), Term("item", row.id, 0.5)), k=4)))
    for bad in ("shard9:1", "12", "shard0:x"):
        with pytest.raises(ConfigError, match="SHARD:ID"):
            asyncio.run(router.search(SearchRequest((Term("image", bad),), k=2)))


def test_cli_refuses_shards_of_different_encoders(built, tmp_path, colour_spec):
    from conftest import make_image
    from integration_helpers import ravl

    make_image(tmp_path / "img" / "red.png", (220, 20, 20))
    with open_collection(tmp_path / "colour", encoder=colour_spec, create=True) as coll:
        index_sources(coll, [str(tmp_path / "img")])
    proc = ravl("shards", built["shard0"], tmp_path / "colour", "--port", "1")
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "shard1" in line and "re-index it with the same --encoder" in line and "Traceback" not in proc.stderr


# --- on Ray Serve, on a local two-node Ray cluster ------------------------------------------------
@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    """The real `ravl shards --address` (a driver process of its own) on a head + worker node
    cluster, 1 replica per shard; this process joins the cluster too (to reach and kill replicas).
    Yields the base URL of Serve's HTTP proxy on loopback."""
    ray = pytest.importorskip("ray", reason="pip install 'ravl[ray]'")
    pytest.importorskip("ray.serve", reason="pip install 'ravl[ray]'")
    import httpx
    from ray.cluster_utils import Cluster

    from test_server_api import free_port

    ShardWorker(built["shard0"], "warm").warm()  # the model cache exists before replicas load it
    root = tmp_path_factory.mktemp("r")  # short: Ray's socket paths must stay under 107 characters
    env = {"RAY_TMPDIR": str(root), "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the raylets (and so every replica) inherit these and RAVL_HOME
    cluster = proc = None
    log = root / "shards.log"
    try:
        # one shard per host: each node offers its shard's resource and `--pin` keeps replicas there
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                                "resources": {"ravl_shard0": 1}})
        worker = cluster.add_node(num_cpus=2, resources={"ravl_shard1": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.nodes_by_shard = {"shard0": cluster.head_node.node_id, "shard1": worker.node_id}
        port = free_port()
        with open(log, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "ravl.cli.main", "shards", str(built["shard0"]),
                                     str(built["shard1"]), "--address", cluster.address, "--port", str(port), "--pin"],
                                    stdout=fh, stderr=subprocess.STDOUT,
                                    # Ctrl-C reaches it even when this test run is a background job
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"ravl shards did not come up: {log.read_text()}"
            if f"searching 2 shards at {url}/search" in log.read_text():  # serve.run returned: all deployed
                break
            time.sleep(0.5)
        assert httpx.get(url + "/health", timeout=30).json()["shards"] == ["shard0", "shard1"]
        yield url, cluster
    finally:
        try:
            if proc is not None:
                proc.send_signal(signal.SIGINT)  # the command deletes its deployments on the way out
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            from ray import serve

            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            if cluster is not None:
                cluster.shutdown()
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.slow
def test_serve_answers_equal_one_collection(served, local):
    import httpx

    _, one = local
    w = one.calibration().keyword_weight
    with httpx.Client(base_url=served[0], timeout=60) as http:
        assert http.get("/health").json()["shards"] == ["shard0", "shard1"]
        for q in QUERIES:
            got = http.get("/search", params={"q": q, "k": 6, "mode": "vector"}).json()
            assert_same(got, _one(one, SearchRequest.of_text(q, k=6, mode="vector")))
            assert got["mode"] == "vector" and all(r["id"].startswith("shard") for r in got["results"])
            hyb = http.get("/search", params={"q": q, "k": 6, "mode": "hybrid", "keyword_weight": w}).json()
            assert_same(hyb, _one(one, SearchRequest.of_text(q, k=6, mode="hybrid", fusion=Fusion(w))))
        top = http.get("/search", params={"q": "a tabby cat", "k": 1}).json()["results"][0]
        similar = http.get("/search", params={"item": top["id"], "k": 4}).json()
        row = one.item_by_uri(top["uri"])
        assert_same(similar, _one(one, SearchRequest((Term("item", row.id),), k=4), exclude=(row.id,)))
        kw = http.get("/search", params={"q": "a red circle", "k": 6, "mode": "keyword"}).json()
        assert_same(kw, _one(one, SearchRequest.of_text("a red circle", k=6, mode="keyword")), exact=False)
        info = http.get("/info").json()["shards"]
        assert [f["name"] for f in info] == ["shard0", "shard1"] and sum(f["images"] for f in info) == 10
        for params, words in (({"item": "shard7:1"}, "SHARD:ID"), ({"q": "cat", "sort": "date"}, "sort=date"),
                              ({"q": "cat", "colour": "red"}, "unknown parameter"), ({"q": "cat", "k": "x"}, "k must"),
                              ({"q": "cat", "k": "0"}, "k must be")):
            bad = http.get("/search", params=params)
            assert bad.status_code == 400 and words in bad.json()["message"], (params, bad.text)
        assert http.post("/search").status_code == 404


@pytest.mark.slow
def test_pinned_shards_run_on_their_own_nodes(served):
    from ray import serve

    from ravl.shards.deploy import APP

    cluster = served[1]
    for name, node in cluster.nodes_by_shard.items():
        assert serve.get_deployment_handle(name, app_name=APP).node.remote().result(timeout_s=60) == node


@pytest.mark.slow
def test_killed_replica_is_replaced_and_no_query_fails_silently(served, local):
    import httpx
    import ray
    from ray import serve

    from ravl.shards.deploy import APP

    _, one = local
    want = _pairs(_one(one, SearchRequest.of_text("a red circle", k=5, mode="vector")))
    handle = serve.get_deployment_handle("shard0", app_name=APP)
    victim = handle.whoami.remote().result(timeout_s=60)
    outcomes: list[tuple[int, dict]] = []
    stop = threading.Event()

    def client():
        with httpx.Client(base_url=served[0], timeout=90) as http:
            while not stop.is_set():
                r = http.get("/search", params={"q": "a red circle", "k": 5, "mode": "vector"})
                outcomes.append((r.status_code, r.json()))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(outcomes) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 90
        replaced = None
        while time.monotonic() < deadline:
            try:
                replaced = handle.whoami.remote().result(timeout_s=10)
            except Exception:  # the dead replica may still be picked until Serve notices
                replaced = None
            if replaced and replaced != victim:
                break
            time.sleep(0.5)
        assert replaced and replaced != victim, "Ray Serve did not replace the killed replica"
        after = len(outcomes)
        deadline = time.monotonic() + 60
        while len(outcomes) < after + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(120)
    assert not thread.is_alive(), "a query hung"
    assert len(outcomes) >= 6
    for status, body in outcomes:
        if status == 200:
            got = _pairs(body)
            assert [u for u, _ in got] == [u for u, _ in want]
            assert all(abs(a[1] - b[1]) < 1e-5 for a, b in zip(got, want))
        else:  # the one allowed failure: a clear, typed error
            assert status == 503 and body["type"] == "ShardUnavailableError" and body["message"], body
    assert outcomes[-1][0] == 200
    assert handle.node.remote().result(timeout_s=60) == served[1].nodes_by_shard["shard0"]  # still pinned
    print(f"{len(outcomes)} queries while a replica was killed and replaced; "
          f"{sum(st != 200 for st, _ in outcomes)} answered 503")
