"""Index caches are used only when they verifiably match the database they were built from:
a replaced database, a damaged byte in any index file or seal, a torn write -> rebuilt, and
searches return exactly what a clean build returns."""
from __future__ import annotations

import json
import os
import random
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources
from ravl.store.integrity import clean_stale_tmp, read_sealed, seal_path, write_sealed

INDEX_NAMES = ("images", "features", "captions")
#: every index kind a collection can be built with: each must pass every damage and replacement test
KINDS = ("flat", "hnsw", "ivfpq")
WORDS = ("red", "green", "blue", "white", "yellow", "black")


def make_set(root, seed: int, n: int = 12):
    rng = random.Random(seed)
    for i in range(n):
        rgb = tuple(rng.randrange(256) for _ in range(3))
        make_image(root / f"s{seed}_{i:02d}.png", rgb, size=(20 + i, 16))
        (root / f"s{seed}_{i:02d}.txt").write_text(f"{rng.choice(WORDS)} {rng.choice(WORDS)} thing {seed} {i}\n")
    return root


def answers(coll) -> list:
    """Every kind of search the collection answers, as comparable plain data."""
    out = []
    for word in WORDS:
        out.append([(h.uri, round(h.score, 5)) for h in coll.search_text([word], k=5)[0]])
        out.append([(h.caption, round(h.score, 5)) for h in coll.search_text([word], target="captions", k=5)[0]])
    probe = Image.new("RGB", (12, 12), (90, 160, 30))
    out.append([(h.uri, round(h.score, 5)) for h in coll.search_image([probe], k=5)[0]])
    out.append([(h.caption, round(h.score, 5)) for h in coll.search_image([probe], target="captions", k=5)[0]])
    return out


def build(path, source, spec, kind="flat"):
    with open_collection(path, encoder=spec, create=True) as coll:
        coll.set_index_config(kind)
        index_sources(coll, [source])
        assert {f["kind"] for f in coll.index_facts().values()} == {kind}
        return answers(coll)


@pytest.fixture
def sets(tmp_path):
    return make_set(tmp_path / "setB", 1), make_set(tmp_path / "setC", 2)


@pytest.mark.parametrize("kind", KINDS)
def test_replaced_database_never_uses_the_old_cache(tmp_path, sets, colour_spec, kind):
    set_b, set_c = sets
    clean_c = build(tmp_path / "clean", set_c, colour_spec, kind)
    coll_dir = tmp_path / "A"
    build(coll_dir, set_b, colour_spec, kind)
    for f in coll_dir.glob("ravl.sqlite*"):  # what ravl's own messages tell users to do
        f.unlink()
    assert build(coll_dir, set_c, colour_spec, kind) == clean_c
    with open_collection(coll_dir) as coll:  # a fresh process-like open reads the rewritten caches
        assert answers(coll) == clean_c
        assert all("setC" in h.uri for h in coll.search_text(["red"], k=20)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_database_replaced_by_same_count_and_generation(tmp_path, sets, colour_spec, kind):
    """Same item count, same generation number: only the collection id tells them apart."""
    set_b, set_c = sets
    b_dir, c_dir = tmp_path / "B", tmp_path / "C"
    build(b_dir, set_b, colour_spec, kind)
    clean_c = build(c_dir, set_c, colour_spec, kind)
    shutil.copy(c_dir / "ravl.sqlite", b_dir / "ravl.sqlite")  # B's caches stay in place
    with open_collection(b_dir) as coll:
        assert answers(coll) == clean_c


@pytest.fixture(scope="module", params=KINDS)
def clean_build(tmp_path_factory, request):
    """One collection over set B (per index kind) and its answers; damage tests work on copies."""
    import fakes
    from ravl import registry

    registry.register("encoders", "testcolour", fakes.create)
    root = tmp_path_factory.mktemp("clean")
    coll_dir = root / "c"
    return coll_dir, build(coll_dir, make_set(root / "setB", 1), "testcolour", request.param)


@pytest.mark.parametrize("name", INDEX_NAMES)
@pytest.mark.parametrize("damage", ["overwrite64", "random", "truncate", "append", "seal", "seal_binding",
                                    "empty", "swap"])
def test_damaged_index_file_is_rebuilt(tmp_path, clean_build, name, damage):
    coll_dir = tmp_path / "c"
    shutil.copytree(clean_build[0], coll_dir)
    clean = clean_build[1]
    path = coll_dir / "index" / f"{name}.faiss"
    data = bytearray(path.read_bytes())
    rng = random.Random(name + damage)
    if damage == "overwrite64":
        at = len(data) // 2
        data[at:at + 64] = bytes(rng.randrange(256) for _ in range(64))
        path.write_bytes(bytes(data))
    elif damage == "random":
        for _ in range(16):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[:len(data) - 7]))
    elif damage == "append":
        path.write_bytes(bytes(data) + b"\0" * 8)
    elif damage == "seal":
        seal = seal_path(path)
        seal.write_bytes(seal.read_bytes()[:-5])
    elif damage == "seal_binding":  # a forged seal: right hash, other generation
        seal = json.loads(seal_path(path).read_text())
        seal["binding"]["generation"] += 1
        seal_path(path).write_text(json.dumps(seal))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "swap":  # another index's (valid, sealed) file under this name
        other = "features" if name != "features" else "images"
        shutil.copy(coll_dir / "index" / f"{other}.faiss", path)
    with open_collection(coll_dir) as coll:
        assert answers(coll) == clean
    assert read_sealed(path, _binding(coll_dir, name)) is not None  # rewritten, verifies again


def _binding(coll_dir, name):
    with open_collection(coll_dir) as coll:
        return coll.index_binding(name)


def test_seal_round_trip_and_torn_writes(tmp_path):
    path = tmp_path / "x.faiss"
    data = np.arange(1000, dtype=np.float32).tobytes()
    binding = {"collection_id": "abc", "generation": 3, "count": 10}
    write_sealed(path, data, binding)
    assert read_sealed(path, binding).tobytes() == data
    assert read_sealed(path, {**binding, "generation": 4}) is None
    assert read_sealed(path, {**binding, "collection_id": "abd"}) is None
    # a writer killed after replacing the data but before the seal: old seal, new bytes
    old_seal = seal_path(path).read_bytes()
    write_sealed(path, data[::-1], binding)
    seal_path(path).write_bytes(old_seal)
    assert read_sealed(path, binding) is None
    seal_path(path).unlink()
    assert read_sealed(path, binding) is None
    # not a regular file: a FIFO under the cache name is refused without blocking
    path.unlink()
    os.mkfifo(path)
    write_sealed(tmp_path / "y.faiss", data, binding)
    shutil.copy(seal_path(tmp_path / "y.faiss"), seal_path(path))
    assert read_sealed(path, binding) is None


def test_verified_file_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch, ravl_home):
    """Once a settled file verified, a reader that finds the same file (size, mtime, ctime, inode)
    skips hashing it; any write to it changes that identity, and it is hashed (and refused) again."""
    import ravl.digests
    import ravl.store.integrity as integrity

    monkeypatch.setattr(ravl.digests, "RACY_NS", 0)  # files count as settled at once
    path = tmp_path / "x.faiss"
    data = np.arange(4000, dtype=np.float32).tobytes()
    binding = {"collection_id": "abc", "generation": 3, "count": 10}
    write_sealed(path, data, binding)
    time.sleep(0.05)  # past the file system's timestamp granularity
    assert read_sealed(path, binding).tobytes() == data  # hashed, and remembered
    hashed = []
    real = integrity._hasher
    monkeypatch.setattr(integrity, "_hasher", lambda *a: hashed.append(1) or real(*a))
    assert read_sealed(path, binding).tobytes() == data and not hashed
    time.sleep(0.05)
    damaged = bytearray(data)
    damaged[100] ^= 1
    with open(path, "r+b") as fh:  # in place: same size and inode
        fh.write(damaged)
    assert read_sealed(path, binding) is None and hashed


def test_stale_tmp_files_and_old_sidecars_are_cleaned(tmp_path, sets, colour_spec):
    set_b, _ = sets
    coll_dir = tmp_path / "c"
    build(coll_dir, set_b, colour_spec)
    index_dir = coll_dir / "index"
    stale, fresh = index_dir / "images.faiss.abc.tmp", index_dir / "images.faiss.def.tmp"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    (index_dir / "images.json").write_text('{"generation": 1, "dim": 4, "count": 12}')
    (index_dir / "images.faiss").write_bytes(b"garbage")  # forces a rewrite
    with open_collection(coll_dir) as coll:
        coll.search_text(["red"], k=1)
    assert not stale.exists() and fresh.exists()  # a writer may still own a fresh one
    assert not (index_dir / "images.json").exists()
    assert clean_stale_tmp(index_dir, older_than=0) == 1
