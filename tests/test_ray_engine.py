"""ravl index --engine ray on a real local multi-node Ray cluster: a head and one worker node
(``ray.cluster_utils.Cluster``, 2 logical CPUs each so the encoder actors never starve Ray Data's
own tasks), shared by every test of this module. The workers load the test encoder through a real
entry point (a plugin dist-info on their PYTHONPATH), the same path a user's encoder takes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent
DELAY = 0.01  # seconds per image in the workers' encoder: runs last long enough to kill something


def _install_plugin(site: Path) -> None:
    """testcolour as an installed plugin, so a Ray worker (or a CLI process) finds it by its spec."""
    info = site / "ravl_testcolour-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ravl-testcolour\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ravl.encoders]\ntestcolour = fakes:create\n")
    (info / "RECORD").write_text("")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="pip install 'ravl[ray]'")
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("r")  # short: Ray's socket paths must stay under 107 characters
    site, pids = root / "site", root / "pids"
    _install_plugin(site)
    pids.mkdir()
    path = os.pathsep.join([str(site), str(TESTS), str(SRC), os.environ.get("PYTHONPATH", "")])
    worker_env = {"RAY_TMPDIR": str(root), "PYTHONPATH": path, "RAVL_TEST_ENCODE_DELAY": str(DELAY),
                  "RAVL_TEST_PID_DIR": str(pids)}
    saved = {k: os.environ.get(k) for k in worker_env}
    os.environ.update(worker_env)  # the raylets (and so every worker) inherit these
    try:
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
        c.add_node(num_cpus=2)
        c.wait_for_nodes()
    finally:
        for k, v in saved.items():
            if k != "RAY_TMPDIR":
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    ray.init(address=c.address, log_to_driver=False)
    c.pids, c.site = pids, site
    yield c
    ray.shutdown()
    c.shutdown()
    os.environ.pop("RAY_TMPDIR") if saved["RAY_TMPDIR"] is None else os.environ.__setitem__("RAY_TMPDIR", saved["RAY_TMPDIR"])


def _photos(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        make_image(root / f"img{i:03d}.png", tuple(int(v) for v in rng.integers(0, 256, 3)))
        (root / f"img{i:03d}.txt").write_text(f"picture {i}\nshared caption\n")
    (root / "broken.png").write_bytes(b"not an image at all")
    return root


def _state(coll) -> dict:
    """uri -> (item id, embedding, features, captions) of every stored item."""
    ids, emb = coll.item_vectors(which="emb")
    _, feat = coll.item_vectors(which="feat")
    items = coll.items(ids.tolist())
    return {items[i].uri: (i, e, f, items[i].captions) for i, e, f in zip(ids.tolist(), emb, feat)}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for uri in a:
        np.testing.assert_allclose(a[uri][1], b[uri][1], atol=1e-5)
        np.testing.assert_allclose(a[uri][2], b[uri][2], atol=1e-5)
        assert a[uri][3] == b[uri][3]


@pytest.mark.slow
def test_ray_engine_writes_what_the_local_engine_writes_and_resumes_alike(tmp_path, cluster, colour_spec):
    from ravl.ingest.ray_engine import index_sources_ray

    photos = _photos(tmp_path / "photos", 24)
    (photos / "img005.png").write_bytes((photos / "img004.png").read_bytes())  # same content: reused
    local = open_collection(tmp_path / "local", encoder=colour_spec, create=True)
    want = index_sources(local, [photos], batch_size=8)
    dist = open_collection(tmp_path / "ray", encoder=colour_spec, create=True)
    got = index_sources_ray(dist, [photos], batch_size=8, num_workers=2)
    assert (got.total, got.added, got.captions_added) == (want.total, want.added, want.captions_added) == (25, 24, 48)
    assert got.skipped == want.skipped and "broken.png" in got.skipped[0][0]
    a, b = _state(local), _state(dist)
    _assert_same(a, b)
    assert {u: v[0] for u, v in a.items()} == {u: v[0] for u, v in b.items()}  # same ids, too
    assert [h.uri for h in dist.search_text(["red"], k=3)[0]] == [h.uri for h in local.search_text(["red"], k=3)[0]]
    # resume: a second run finds everything unchanged; a new caption line is added alone, as locally
    for p in (photos / "img001.txt",):
        p.write_text("picture 1\nshared caption\none more line\n")
    want = index_sources(local, [photos], batch_size=8)
    again = index_sources_ray(dist, [photos], batch_size=8, num_workers=2)
    assert (again.added, again.updated, again.unchanged, again.captions_added) == (0, 0, 24, 1)
    assert (want.added, want.updated, want.unchanged, want.captions_added) == (0, 0, 24, 1)
    _assert_same(_state(local), _state(dist))


@pytest.mark.slow
def test_killing_a_worker_process_mid_run_loses_and_duplicates_nothing(tmp_path, cluster, colour_spec):
    from ravl.ingest.ray_engine import index_sources_ray

    photos = _photos(tmp_path / "photos", 120)
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    for f in cluster.pids.iterdir():
        f.unlink()
    seen: list[int] = []
    result: dict = {}

    def run():
        try:
            result["report"] = index_sources_ray(coll, [photos], batch_size=8, num_workers=2,
                                                 progress=lambda d, t: seen.append(d))
        except Exception as exc:  # noqa: BLE001 (reported below)
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while not seen and time.time() < deadline:
        time.sleep(0.02)
    assert seen, "no batch arrived"
    killed = False
    for f in cluster.pids.iterdir():  # an encoder actor's worker process dies mid-run
        try:
            os.kill(int(f.name), signal.SIGKILL)
            killed = True
            break
        except ProcessLookupError:
            continue
    assert killed, "no live encoder actor announced itself"
    thread.join(timeout=120)
    assert not thread.is_alive()
    if "error" in result:  # Ray gave up (e.g. the actor died while starting): re-running resumes
        from ravl.errors import EngineError

        assert isinstance(result["error"], EngineError) and "run the same command again" in str(result["error"])
        result["report"] = index_sources_ray(coll, [photos], batch_size=8, num_workers=2)
    else:  # Ray restarted the actor and retried its batches
        assert seen[-1] == 121 and seen[0] < 121
    assert coll.counts() == {"images": 120, "captions": 240}
    local = open_collection(tmp_path / "local", encoder=colour_spec, create=True)
    index_sources(local, [photos])
    _assert_same(_state(local), _state(coll))  # every uri once (dict keys), same vectors and captions


def _cli(*args, env):
    return subprocess.Popen([sys.executable, "-m", "ravl.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_cli_on_a_cluster_resumes_after_the_driver_is_killed(tmp_path, cluster, colour_spec):
    photos = _photos(tmp_path / "photos", 160)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cluster.site), str(TESTS), str(SRC),
                                                        os.environ.get("PYTHONPATH", "")])}
    args = ["index", photos, "-c", tmp_path / "c", "--encoder", "testcolour", "--engine", "ray",
            "--ray-address", cluster.address, "--num-workers", "2", "--batch-size", "8", "--json"]
    first = _cli(*args, env=env)
    db = tmp_path / "c" / "ravl.sqlite"
    deadline = time.time() + 90
    stored = 0
    while time.time() < deadline and first.poll() is None:
        if db.exists():
            try:
                with open_collection(tmp_path / "c") as coll:
                    stored = coll.counts()["images"]
            except Exception:  # noqa: BLE001 (still being created)
                stored = 0
            if stored:
                break
        time.sleep(0.1)
    first.kill()  # the driver dies between (or during) its batch transactions
    first.wait()
    assert 0 < stored, first.stderr.read()[-2000:] if first.stderr else ""
    second = _cli(*args, env=env)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err[-2000:]
    report = json.loads(out)
    assert report["total"] == 161 and report["added"] + report["unchanged"] == 160
    assert report["added"] > 0 and report["unchanged"] > 0  # the first run was killed mid-way
    assert report["collection"] == {"images": 160, "captions": 320}
    local = open_collection(tmp_path / "local", encoder=colour_spec, create=True)
    index_sources(local, [photos])
    with open_collection(tmp_path / "c") as coll:
        _assert_same(_state(local), _state(coll))


def _run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_unreachable_address_and_missing_ray_are_one_line_errors(tmp_path):
    make_image(tmp_path / "p" / "a.png", (1, 2, 3))
    out = _run_cli("index", tmp_path / "p", "-c", tmp_path / "c", "--engine", "ray", "--ray-address", "127.0.0.1:9")
    assert out.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = _run_cli("index", tmp_path / "p", "-c", tmp_path / "c", "--engine", "ray", "--ray-address", "nohost")
    assert out.returncode == 2 and "is not HOST:PORT" in out.stderr
    assert not (tmp_path / "c").exists()
    fake = tmp_path / "noray" / "ray"  # a Python where Ray is not installed
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "noray"), str(SRC),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = _run_cli("index", tmp_path / "p", "-c", tmp_path / "c", "--engine", "ray", env=env)
    assert out.returncode == 2 and "pip install 'ravl[ray]'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "c").exists()
    out = _run_cli("index", tmp_path / "p", "-c", tmp_path / "c", "--ray-address", "x:1")
    assert out.returncode == 2 and "apply to --engine ray" in out.stderr
    out = _run_cli("index", tmp_path / "p", "-c", tmp_path / "c", "--engine", "ray", "--num-workers", "0")
    assert out.returncode == 2 and "--num-workers must be" in out.stderr
    # ... and the local engine works without Ray
    _install_plugin(tmp_path / "site")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(TESTS), env["PYTHONPATH"]])
    out = _run_cli("index", tmp_path / "p", "-c", tmp_path / "c", "--encoder", "testcolour", "--json", env=env)
    assert out.returncode == 0, out.stderr[-1000:]
    assert json.loads(out.stdout)["added"] == 1


@pytest.mark.slow
def test_a_worker_with_another_encoder_refuses_and_nothing_is_written(tmp_path, cluster, colour_spec):
    import functools

    import fakes
    from ravl.errors import EncoderMismatchError
    from ravl.ingest.ray_engine import index_sources_ray

    photos = _photos(tmp_path / "photos", 4)
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    t = time.time()
    with pytest.raises(EncoderMismatchError, match="install the same model on every worker"):
        index_sources_ray(coll, [photos], num_workers=1, encoder_factory=functools.partial(fakes.create, "othercolour"))
    assert time.time() - t < 60 and coll.counts() == {"images": 0, "captions": 0}
