"""IVF-PQ inverted lists on disk (issue 23 items 1 and 3): chosen by the memory budget, answering
exactly like the same index with its lists in RAM, caught up after adds and removes with a new
lists file (the sealed one never written), a build killed halfway leaving the old pair in use, a
damaged or missing lists file rebuilt from SQLite and never mapped; and every kind's sealed file
written through a hashing writer and verified in chunks before it is loaded."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ravl.collection import open_collection
from ravl.hits import Knobs
from ravl.store import integrity, ondisk
from ravl.store.ann import AnnIndex
from ravl.store.index_plan import MIN_RAM_CODE, choose_index, estimate_bytes
from ravl.store.vectors import VectorIndex, load_cache, plan_binding, write_cache
from test_incremental import WideEncoder, exact_order, items

#: per index (three of d = 32 at 600-630 vectors): in RAM with PQ8 needs ~37 KiB, lists on disk ~28 KiB
BUDGET = 96 * 1024


class SquareEncoder(WideEncoder):
    """Every index 32 wide, so one budget puts all three indexes' lists on disk."""
    feature_dim = 32


def _unit(n, d, seed):
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _disk(plan):
    return dataclasses.replace(plan, params={**plan.params, "lists": "disk"})


def square_items(n, seed, prefix="x"):
    return [dataclasses.replace(it, features=it.embedding[::-1].copy()) for it in items(n, seed, prefix)]


def change(coll, seed):
    """Add 30 items, replace the vectors of 3 existing ones, delete 5: one generation each."""
    coll.add_batch(square_items(30, seed, prefix=f"new{seed}"))
    coll.add_batch(square_items(3, seed + 1))
    ids = sorted(coll.item_vectors()[0].tolist())
    coll.delete(ids[10:15])


def check_exact(coll):
    """Every index ranks ALL its vectors exactly as the database does (test_incremental's check)."""
    rng = np.random.default_rng(99)
    for name in ("images", "features", "captions"):
        q = _unit(1, 32, int(rng.integers(1000)))
        want, n = exact_order(coll, name, q[0])
        hits = coll.search_vectors(q, index=name, k=n, knobs=Knobs(nprobe=65536))[0]
        assert [h.id for h in hits] == want, name


def create(path, budget=BUDGET, n=600):
    coll = open_collection(path, encoder=SquareEncoder("square"), create=True)
    coll.add_batch(square_items(n, 0))
    coll.set_index_config("ivfpq", budget)
    coll.refresh_indexes()
    return coll


def lists_files(folder):
    return sorted(p.name for p in folder.glob(f"*{ondisk.SUFFIX}"))


def test_the_budget_puts_the_lists_on_disk_only_when_ram_needs_a_short_code():
    n, d = 10_000_000, 384
    roomy = choose_index(n, d, "ivfpq", "2GB")
    assert "lists" not in roomy.params and roomy.params["m"] == 64
    ram8 = estimate_bytes("ivfpq", n, d, {"m": MIN_RAM_CODE})
    tight = choose_index(n, d, "auto", ram8 - 1)  # RAM would take a code under 8 bytes
    assert tight.params["lists"] == "disk" and tight.params["m"] == 64 and tight.est_bytes < ram8
    assert "on disk" in tight.reason
    assert choose_index(n, d, "ivfpq", ram8).params.get("lists") is None  # 8 bytes in RAM still fit
    with pytest.raises(Exception, match="lists on disk"):
        choose_index(n, d, "ivfpq", tight.est_bytes // 2)
    assert plan_binding(tight) == {"kind": "ivfpq", "factory": tight.factory, "lists": "disk"}


def test_lists_on_disk_answer_like_lists_in_ram_before_and_after_updates(tmp_path):
    x, ids = _unit(3000, 32, 0), np.arange(10, 3010)
    plan = choose_index(len(ids), 32, "ivfpq")
    ram, disk = AnnIndex.build(plan, ids, x), AnnIndex.build(_disk(plan), ids, x)
    assert disk.disk is not None and ram.disk is None and disk.info["search"] == ram.info["search"]
    q = _unit(40, 32, 1)
    for nprobe in (1, 4, 16):
        assert disk.search(q, 10, knobs=Knobs(nprobe=nprobe)) == ram.search(q, 10, knobs=Knobs(nprobe=nprobe))
    binding = {"count": len(ids), "plan": plan_binding(disk.plan)}
    assert write_cache(tmp_path, "images", disk, binding)
    first = lists_files(tmp_path)
    back = load_cache(tmp_path, "images", binding, 32)
    assert isinstance(back, AnnIndex) and back.disk is not None
    assert back.search(q, 10, knobs=Knobs(nprobe=4)) == ram.search(q, 10, knobs=Knobs(nprobe=4))
    sealed = (tmp_path / first[0]).read_bytes()
    new = _unit(50, 32, 2)
    for index in (back, ram):
        index.remove([10, 11, 12])
        index.add(np.arange(5000, 5050), new)
        index.add(np.arange(13, 15), new[:2])  # replaced vectors
    assert back.search(q, 10, knobs=Knobs(nprobe=4)) == ram.search(q, 10, knobs=Knobs(nprobe=4))
    assert (tmp_path / first[0]).read_bytes() == sealed  # the sealed lists file was not written
    binding = {**binding, "count": len(back)}
    assert write_cache(tmp_path, "images", back, binding)
    assert len(lists_files(tmp_path)) == 1 and lists_files(tmp_path) != first
    again = load_cache(tmp_path, "images", binding, 32)
    assert again is not None and again.search(q, 10, knobs=Knobs(nprobe=4)) == ram.search(q, 10, knobs=Knobs(nprobe=4))


def test_collection_with_lists_on_disk_equals_lists_in_ram(tmp_path):
    disk, ram = create(tmp_path / "d"), create(tmp_path / "r", budget=None)
    for name in ("images", "features", "captions"):
        facts = disk.index_facts()[name]
        assert facts["params"]["lists"] == "disk" and facts["factory"] == ram.index_facts()[name]["factory"]
    assert len(lists_files(tmp_path / "d" / "index")) == 3 and not lists_files(tmp_path / "r" / "index")
    q = _unit(8, 32, 5)
    for name in ("images", "features", "captions"):
        got = [[(h.id, round(h.score, 5)) for h in r] for r in disk.search_vectors(q, index=name, k=10, knobs=Knobs(nprobe=2))]
        want = [[(h.id, round(h.score, 5)) for h in r] for r in ram.search_vectors(q, index=name, k=10, knobs=Knobs(nprobe=2))]
        assert got == want, name
    check_exact(disk)
    disk.close()
    ram.close()


def test_lists_on_disk_are_caught_up_held_and_from_the_file(tmp_path):
    coll = create(tmp_path / "c")
    change(coll, 1)  # the held indexes: caught up in place
    check_exact(coll)
    assert coll.index_stats()["images"]["caught_up"] >= 1
    change(coll, 3)  # committed, caches not written: the next process catches the files up
    coll.close()
    with open_collection(tmp_path / "c") as coll:
        check_exact(coll)
        stats = coll.index_stats()["images"]
        assert stats["built"] == 0 and stats["loaded"] + stats["caught_up"] >= 1
        coll.refresh_indexes()
    assert len(lists_files(tmp_path / "c" / "index")) == 3  # one per index: earlier builds' files removed


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove", "swap"])
def test_a_damaged_lists_file_is_rebuilt_never_used(tmp_path, damage):
    create(tmp_path / "c").close()
    index_dir = tmp_path / "c" / "index"
    images = next(index_dir.glob(f"images.*{ondisk.SUFFIX}"))
    if damage == "flip":
        data = bytearray(images.read_bytes())
        data[len(data) // 2] ^= 0xFF
        images.write_bytes(bytes(data))
    elif damage == "truncate":
        os.truncate(images, images.stat().st_size - 8)
    elif damage == "remove":
        images.unlink()
    else:  # another index's lists file under this one's name
        os.replace(next(index_dir.glob(f"captions.*{ondisk.SUFFIX}")), images)
    with open_collection(tmp_path / "c") as coll:
        check_exact(coll)
        assert coll.index_stats()["images"]["built"] == 1 and coll.index_stats()["images"]["loaded"] == 0
    with open_collection(tmp_path / "c") as coll:  # the rebuilt pair verifies
        check_exact(coll)
        assert coll.index_stats()["images"]["loaded"] == 1 and coll.index_stats()["images"]["built"] == 0


def test_build_killed_while_writing_lists_leaves_the_old_pair_in_use(tmp_path):
    create(tmp_path / "c").close()
    index_dir = tmp_path / "c" / "index"
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in index_dir.iterdir()}
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = {sys.path!r}
        from ravl.collection import open_collection
        from ravl.store import indexes
        real, calls = indexes.id_pages, [0]
        def pages(*a, **k):
            for page in real(*a, **k):
                calls[0] += 1
                if calls[0] > 200:  # in the images build's third pass: writing its lists file
                    os.kill(os.getpid(), signal.SIGKILL)
                yield page
        indexes.id_pages, indexes.BUILD_CHUNK = pages, 7
        coll = open_collection({str(tmp_path / "c")!r})
        coll.reindex()
        os._exit(3)
    """)
    assert subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path)).returncode == -9
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in index_dir.iterdir()}
    assert {k: v for k, v in after.items() if not k.endswith(".tmp")} == files
    with open_collection(tmp_path / "c") as coll:
        check_exact(coll)
        assert coll.index_stats()["images"]["loaded"] == 1 and coll.index_stats()["images"]["built"] == 0


def _every_kind(tmp_path):
    x, ids = _unit(400, 16, 7), np.arange(400) * 2
    flat = VectorIndex.build(ids, x, 16)
    yield "flat", flat, {"kind": "flat", "factory": "Flat"}
    for kind in ("hnsw", "ivfpq"):
        plan = choose_index(len(ids), 16, kind)
        yield kind, AnnIndex.build(plan, ids, x), plan_binding(plan)
    disk = _disk(choose_index(len(ids), 16, "ivfpq"))
    yield "ivfpq-disk", AnnIndex.build(disk, ids, x, ), plan_binding(disk)


def test_every_kind_is_hashed_as_written_and_verified_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(integrity, "_CHUNK", 4096)
    reads = []
    real_preadv = os.preadv

    def preadv(fd, buffers, offset, *flags):
        reads.append(sum(len(b) for b in buffers))
        return real_preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(os, "preadv", preadv)
    q = _unit(5, 16, 8)
    for kind, index, plan in _every_kind(tmp_path):
        folder = tmp_path / kind
        binding = {"collection_id": "x", "count": len(index), "plan": plan}
        assert write_cache(folder, "images", index, binding)
        size = (folder / "images.faiss").stat().st_size
        seal = integrity._read_seal(folder / "images.faiss")
        assert seal["size"] == size
        assert seal["blake2b"] == hashlib.blake2b((folder / "images.faiss").read_bytes(), digest_size=32).hexdigest()
        reads.clear()
        back = load_cache(folder, "images", binding, 16)
        assert back is not None and back.search(q, 5) == index.search(q, 5), kind
        assert reads and max(reads) <= 4096, kind  # hashed through one small buffer, never read whole
        assert load_cache(folder, "images", {**binding, "count": len(index) + 1}, 16) is None
        data = bytearray((folder / "images.faiss").read_bytes())
        data[-40] ^= 0x01
        (folder / "images.faiss").write_bytes(bytes(data))
        assert load_cache(folder, "images", binding, 16) is None, kind


def test_a_mapped_flat_index_is_copied_before_it_is_updated(tmp_path):
    x, ids = _unit(300, 16, 9), np.arange(300)
    binding = {"count": 300, "plan": {"kind": "flat", "factory": "Flat"}}
    assert write_cache(tmp_path, "images", VectorIndex.build(ids, x, 16), binding)
    before = (tmp_path / "images.faiss").read_bytes()
    back = load_cache(tmp_path, "images", binding, 16)
    assert isinstance(back, VectorIndex) and back._mapped
    back.remove([0, 1])
    back.add(np.array([500]), x[:1])
    assert not back._mapped and len(back) == 299
    assert back.search(x[:1], 1)[0][0][0] == 500
    assert (tmp_path / "images.faiss").read_bytes() == before


def test_the_ivfpq_training_sample_is_capped(monkeypatch):
    from ravl.store import ann

    sampled = []
    real = ann.rows_at

    def rows_at(chunks, positions, dim):
        sampled.append(len(positions))
        return real(chunks, positions, dim)

    monkeypatch.setattr(ann, "rows_at", rows_at)
    monkeypatch.setattr(ann, "TRAIN_MAX_BYTES", 300 * 4 * 32)  # 300 vectors of d = 32
    x = _unit(3000, 32, 11)
    index = AnnIndex.build(choose_index(3000, 32, "ivfpq"), np.arange(3000), x, tune=False)
    assert sampled == [300] and len(index) == 3000
