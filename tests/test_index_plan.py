"""The index chooser (a pure function) and the index kinds it hands to FAISS."""
from __future__ import annotations

import numpy as np
import pytest

from ravl.errors import ConfigError
from ravl.store.ann import AnnIndex
from ravl.store.index_plan import FLAT_MAX_WORK, choose_index, estimate_bytes, ivf_nlist, parse_size, split_budget


def test_parse_size_reads_units_and_rejects_nonsense():
    assert parse_size("2GB") == 2 * 2**30
    assert parse_size("512M") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("1000") == 1000
    assert parse_size(None) is None
    for bad in ("two gigs", "5XB", "0", "-1GB"):
        with pytest.raises(ConfigError, match="memory budget"):
            parse_size(bad)


def test_auto_keeps_exact_search_while_small_and_fitting():
    plan = choose_index(10_000, 384)
    assert plan.kind == "flat" and plan.factory == "Flat"
    assert choose_index(10_000, 384, memory_budget="1GB").kind == "flat"


def test_auto_moves_to_hnsw_when_flat_gets_slow():
    n = FLAT_MAX_WORK // 384 + 1
    plan = choose_index(n, 384)
    assert plan.kind == "hnsw" and plan.factory.startswith("HNSW")
    assert plan.search["ef_search"] >= 16


def test_auto_moves_to_ivfpq_when_hnsw_does_not_fit_the_budget():
    n, d = 1_000_000, 512
    flat = estimate_bytes("flat", n, d)
    plan = choose_index(n, d, memory_budget=flat // 8)
    assert plan.kind == "ivfpq"
    assert plan.est_bytes <= flat // 8
    assert d % plan.params["m"] == 0
    assert plan.params["nlist"] == 4096 and plan.params["nbits"] == 8
    assert plan.search["rerank"] > 1
    # a tighter budget gets a smaller code, still IVF-PQ
    tight = choose_index(n, d, memory_budget=flat // 40)
    assert tight.kind == "ivfpq" and tight.params["m"] < plan.params["m"]


def test_budget_too_small_for_anything_says_what_would_fit():
    with pytest.raises(ConfigError, match=r"too small.*smallest index .*needs"):
        choose_index(1_000_000, 384, memory_budget="1MB")


def test_requested_kind_that_does_not_fit_names_one_that_does():
    with pytest.raises(ConfigError, match=r"too small for a flat index.*'--index ivfpq' or '--index auto' fit"):
        choose_index(1_000_000, 384, kind="flat", memory_budget="200MB")


def test_unknown_kind_lists_choices():
    with pytest.raises(ConfigError, match="auto, flat, hnsw, ivfpq"):
        choose_index(10, 4, kind="annoy")


def test_tiny_collections_still_get_a_trainable_ivfpq():
    plan = choose_index(20, 4, kind="ivfpq")
    assert plan.params["nlist"] == 1 and 2 ** plan.params["nbits"] <= 20
    assert ivf_nlist(1_000_000) == 4096 and ivf_nlist(10) == 1
    # past 1M the lists grow with n / 2048, not 4·sqrt(n): a 10M build compares every vector with
    # every centroid, and 16,384 lists would cost four times 4,096's build for no recall it needs
    assert ivf_nlist(10_000_000) == 4096 and ivf_nlist(20_000_000) == 8192 and ivf_nlist(100_000_000) == 32768


def test_split_budget_is_proportional_to_flat_sizes():
    shares = split_budget(1000, {"images": 100 * 4, "features": 100 * 12, "captions": 400 * 4})
    assert shares["captions"] > shares["features"] > shares["images"]
    assert sum(shares.values()) <= 1000
    assert split_budget(None, {"images": 1}) == {"images": None}


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_every_kind_finds_neighbours_updates_and_round_trips(kind):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16))
    vecs = centres[rng.integers(0, 20, 2000)] + 0.3 * rng.standard_normal((2000, 16))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(100, 2100, dtype=np.int64)
    index = AnnIndex.build(choose_index(len(ids), 16, kind), ids, vecs)
    assert index.info["recall_at_10"] >= 0.95, index.info
    assert index.kind == kind and len(index) == 2000
    fetch = lambda wanted: (np.asarray(wanted, np.int64), vecs[np.asarray(wanted) - 100])  # noqa: E731
    hits = index.search(vecs[:3], 5, fetch=fetch)
    assert [h[0][0] for h in hits] == [100, 101, 102]
    assert hits[0][0][1] == pytest.approx(1.0, abs=1e-3)
    # exclusion, deletion and replacement without a rebuild
    assert all(h[0] != 100 for h in index.search(vecs[:1], 5, exclude=[100], fetch=fetch)[0])
    index.remove([101])
    assert 101 not in [i for i, _ in index.search(vecs[1:2], 10, fetch=fetch)[0]]
    index.add(np.array([102], np.int64), vecs[500:501])  # id 102 now holds vector 500's
    vecs[2] = vecs[500]
    top = index.search(vecs[500:501], 3, fetch=fetch)[0]
    assert {i for i, _ in top} >= {102, 600}
    assert len([i for i, _ in index.search(vecs[500:501], 50, fetch=fetch)[0] if i == 102]) == 1
    assert len(index) == 1999
    again = AnnIndex.from_bytes(index.to_bytes())
    assert again.search(vecs[:5], 5, fetch=fetch) == index.search(vecs[:5], 5, fetch=fetch)
    assert len(again) == 1999 and again.info["bytes"] > 0


def test_damaged_bytes_raise_value_error():
    vecs = np.eye(8, dtype=np.float32)
    data = bytearray(AnnIndex.build(choose_index(8, 8, "flat"), np.arange(8), vecs).to_bytes())
    with pytest.raises(ValueError):
        AnnIndex.from_bytes(bytes(data[: len(data) // 2]))


def test_ivf_asks_for_retraining_after_fourfold_growth_and_flat_for_compaction_after_deletes():
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((1000, 8)).astype(np.float32)
    ivf = AnnIndex.build(choose_index(200, 8, "ivfpq"), np.arange(200), vecs[:200], tune=False)
    assert ivf.needs_rebuild() is None
    ivf.add(np.arange(200, 1000), vecs[200:])
    assert "grew from 200" in ivf.needs_rebuild()
    flat = AnnIndex.build(choose_index(1000, 8, "flat"), np.arange(1000), vecs, tune=False)
    flat.remove(range(300))
    assert "deleted or replaced" in flat.needs_rebuild()
