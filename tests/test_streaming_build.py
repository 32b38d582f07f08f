"""Streaming index builds (issue 23 item 1): every kind is built from SQLite a chunk at a time (7
rows here), IVF-PQ trains on a sample read in a pass of its own, and the recall tuning's exact
top-10 is merged chunk by chunk; the result answers exactly like the database, a chunked IVF-PQ
build equals one from a single chunk, and a build killed halfway leaves the old index in use."""
from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ravl.hits import Knobs
from ravl.store import indexes
from ravl.store.ann import AnnIndex, array_chunks, exact_topk, exact_topk_chunks, rows_at
from ravl.store.index_plan import choose_index
from test_incremental import KINDS, check_exact, create


def _unit(n, d, seed):
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_topk_and_sample_rows_over_chunks():
    x, q = _unit(503, 16, 0), _unit(30, 16, 1)
    ids = np.arange(1000, 1503, dtype=np.int64)
    chunks = array_chunks(ids, x, size=7)
    scores, got = exact_topk_chunks(chunks, q, 10)
    assert (got == ids[exact_topk(x, q, 10)]).all()
    assert np.allclose(scores, np.sort(q @ x.T, axis=1)[:, ::-1][:, :10], atol=1e-5)
    positions = np.array([0, 6, 7, 8, 250, 502])
    assert np.array_equal(rows_at(chunks, positions, 16), x[positions])


def test_ivfpq_built_in_chunks_equals_one_built_at_once():
    x = _unit(2000, 32, 2)
    ids = np.arange(2000, dtype=np.int64) * 3
    plan = choose_index(len(ids), 32, "ivfpq")
    whole = AnnIndex.build(plan, ids, x)
    chunked = AnnIndex.build_from(plan, len(ids), array_chunks(ids, x, size=13), fetch=whole_fetch(ids, x))
    q = _unit(20, 32, 3)
    assert whole.search(q, 10, knobs=Knobs(nprobe=4)) == chunked.search(q, 10, knobs=Knobs(nprobe=4))
    assert whole.info["search"] == chunked.info["search"]
    assert whole.info["recall_at_10"] == chunked.info["recall_at_10"]


def whole_fetch(ids, x):
    row = {int(i): n for n, i in enumerate(ids)}
    return lambda wanted: (np.asarray(wanted, np.int64), x[[row[i] for i in wanted]])


@pytest.mark.parametrize("kind", KINDS)
def test_collection_built_from_sqlite_in_tiny_chunks(tmp_path, kind, monkeypatch):
    monkeypatch.setattr(indexes, "BUILD_CHUNK", 7)
    coll = create(tmp_path / "c", kind)
    coll.delete(sorted(coll.item_vectors()[0].tolist())[100:130])  # ids with a gap
    facts = coll.reindex(kind)
    check_exact(coll)
    for name in ("images", "features", "captions"):
        assert facts[name]["kind"] == kind and facts[name]["count"] == 570
        assert facts[name]["recall_at_10"] >= 0.95
    coll.close()


def test_build_killed_halfway_leaves_the_old_index_in_use(tmp_path):
    create(tmp_path / "c", "ivfpq").close()
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "c" / "index").iterdir()}
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        sys.path[:0] = {sys.path!r}
        from test_incremental import WideEncoder
        from ravl.collection import open_collection
        from ravl.store import indexes
        real, calls = indexes.id_pages, [0]
        def pages(*a, **k):
            for page in real(*a, **k):
                calls[0] += 1
                if calls[0] > 30:  # 210 of the images build's 600 rows read
                    os.kill(os.getpid(), signal.SIGKILL)
                yield page
        indexes.id_pages, indexes.BUILD_CHUNK = pages, 7
        coll = open_collection({str(tmp_path / "c")!r}, create=True)
        coll.reindex("ivfpq")
        os._exit(3)
    """)
    assert subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path)).returncode == -9
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "c" / "index").iterdir()}
    assert {k: v for k, v in after.items() if not k.endswith(".tmp")} == files
    from ravl.collection import open_collection

    with open_collection(tmp_path / "c") as coll:
        check_exact(coll)
        assert coll.index_stats()["images"]["loaded"] == 1 and coll.index_stats()["images"]["built"] == 0


def test_a_budget_is_not_refused_for_an_empty_index(tmp_path):
    """clip-retrieval output without captions leaves the captions index empty: its share of a
    budget (proportional to n*d, so ~0) refused `--index ivfpq --memory-budget 512MB` at 200k × 384."""
    from ravl.collection import open_collection
    from test_incremental import WideEncoder, items

    coll = open_collection(tmp_path / "c", encoder=WideEncoder("wide"), create=True)
    coll.add_batch([dataclasses.replace(it, captions=[]) for it in items(300, 0)])
    facts = coll.reindex("ivfpq", "160KB")  # the empty index's share: 354 B
    assert facts["images"]["kind"] == "ivfpq" and facts["captions"]["count"] == 0
    coll.close()
