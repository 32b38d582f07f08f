"""ravl index --engine ray on a real local multi-node Ray cluster (head + one worker node, 2 logical
CPUs each so the encoder actors never starve Ray Data's own tasks). One cluster serves every test."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fakes
from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import EngineError
from ravl.ingest.pipeline import index_sources
from ravl.ingest.ray_engine import index_sources_ray

ray = pytest.importorskip("ray", reason="pip install 'ravl[ray]'")
SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    # Ray's files under the test's tmp dir (short: its socket paths must stay under 107 characters)
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(tmp_path_factory.mktemp("r"))
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.add_node(num_cpus=2)
    ray.init(address=c.address, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{SRC}{os.pathsep}{TESTS}"}})
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()
    if old is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = old


def _photos(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
        make_image(root / f"img{i:03d}.png", rgb)
        (root / f"img{i:03d}.txt").write_text(f"picture {i}\nshared caption\n")
    (root / "broken.png").write_bytes(b"not an image at all")
    return root


def _state(coll):
    ids, emb = coll.db.item_vectors(which="emb")
    _, feat = coll.db.item_vectors(which="feat")
    items = coll.db.items(ids.tolist())
    return {items[i].uri: (e, f, items[i].captions) for i, e, f in zip(ids.tolist(), emb, feat)}


@pytest.mark.slow
def test_ray_engine_writes_what_the_local_engine_writes(tmp_path, cluster, colour_spec):
    photos = _photos(tmp_path / "photos", 24)
    local = open_collection(tmp_path / "local", encoder=colour_spec, create=True)
    want = index_sources(local, [photos], batch_size=8)
    dist = open_collection(tmp_path / "ray", encoder=colour_spec, create=True)
    got = index_sources_ray(dist, [photos], batch_size=8, num_workers=2, encoder_factory=fakes.make_colour)
    assert (got.total, got.added, got.captions_added) == (want.total, want.added, want.captions_added) == (25, 24, 48)
    assert got.skipped == want.skipped and "broken.png" in got.skipped[0][0]
    a, b = _state(local), _state(dist)
    assert a.keys() == b.keys()
    for uri in a:
        np.testing.assert_allclose(a[uri][0], b[uri][0], atol=1e-5)
        np.testing.assert_allclose(a[uri][1], b[uri][1], atol=1e-5)
        assert a[uri][2] == b[uri][2]
    assert dist.search_text(["red"], k=3)[0] == local.search_text(["red"], k=3)[0]
    # resume behaviour: a second run finds everything unchanged; a new caption line is added alone
    (photos / "img001.txt").write_text("picture 1\nshared caption\none more line\n")
    again = index_sources_ray(dist, [photos], batch_size=8, num_workers=2, encoder_factory=fakes.make_colour)
    assert (again.added, again.updated, again.unchanged, again.captions_added) == (0, 0, 24, 1)


@pytest.mark.slow
def test_killing_a_worker_node_mid_run_loses_and_duplicates_nothing(tmp_path, cluster, colour_spec):
    photos = _photos(tmp_path / "photos", 160)
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    seen: list[int] = []
    result: dict = {}
    factory = functools.partial(fakes.make_colour, delay=0.02)

    def run():
        try:
            result["report"] = index_sources_ray(coll, [photos], batch_size=8, num_workers=2,
                                                 encoder_factory=factory, progress=lambda d, t: seen.append(d))
        except EngineError as exc:
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while not seen and time.time() < deadline:
        time.sleep(0.05)
    assert seen, "no batch arrived"
    worker = cluster.list_all_nodes()[1]
    cluster.remove_node(worker)  # kills its raylet and every actor/worker process on it
    thread.join(timeout=120)
    assert not thread.is_alive()
    if "error" in result:  # Ray gave up: a re-run resumes from the committed batches
        result["report"] = index_sources_ray(coll, [photos], batch_size=8, num_workers=1, encoder_factory=factory)
    cluster.add_node(num_cpus=2)
    assert coll.db.counts() == {"images": 160, "captions": 320}
    uris = [row.uri for row in coll.db.items(coll.db.item_vectors(which="emb")[0].tolist()).values()]
    assert len(uris) == len(set(uris)) == 160
    local = open_collection(tmp_path / "local", encoder=colour_spec, create=True)
    index_sources(local, [photos])
    a, b = _state(local), _state(coll)
    assert a.keys() == b.keys()
    for uri in a:
        np.testing.assert_allclose(a[uri][0], b[uri][0], atol=1e-5)
        assert a[uri][2] == b[uri][2]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_unreachable_address_and_missing_ray_are_one_line_errors(tmp_path):
    make_image(tmp_path / "p" / "a.png", (1, 2, 3))
    t = time.time()
    out = _cli("index", tmp_path / "p", "-c", tmp_path / "c", "--engine", "ray", "--ray-address", "127.0.0.1:9")
    assert out.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and time.time() - t < 60
    assert not (tmp_path / "c").exists()
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'noray'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = _cli("index", tmp_path / "p", "-c", tmp_path / "c", "--engine", "ray", env=env)
    assert out.returncode == 2 and "pip install 'ravl[ray]'" in out.stderr
    out = _cli("index", tmp_path / "p", "-c", tmp_path / "c", "--ray-address", "x:1")
    assert out.returncode == 2 and "apply to --engine ray" in out.stderr
