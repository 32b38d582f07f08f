"""ANN knobs are tuned on queries of the kind each index receives: text vectors for the image
index, image embeddings for the caption index, stored features for image similarity; the recall
shown is measured on those queries and holds for fresh ones of the same kind."""
from __future__ import annotations

import numpy as np

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources
from ravl.store.ann import AnnIndex, exact_topk
from ravl.store.index_plan import choose_index


def _clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _far(x, n, seed, cosine=0.45):
    """Queries at about ``cosine`` to a stored vector: the modality gap of text queries."""
    rng = np.random.default_rng(seed)
    base = x[rng.integers(0, len(x), n)]
    noise = rng.standard_normal(base.shape)
    noise -= (noise * base).sum(1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = cosine * base + np.sqrt(1 - cosine ** 2) * noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_tuning_on_out_of_distribution_queries_holds_for_fresh_ones():
    x = _clustered(4000, 32, seed=1)
    ids = np.arange(len(x), dtype=np.int64)

    def fetch(rows):
        rows = np.asarray(rows, dtype=np.int64)
        return rows, x[rows]

    plan = choose_index(len(x), 32, "hnsw")
    index = AnnIndex.build(plan, ids, x, fetch=fetch, queries=("text", _far(x, 200, seed=2)))
    assert index.info["recall_query_kind"] == "text" and index.info["recall_at_10"] >= 0.95
    fresh = _far(x, 300, seed=3)
    truth = exact_topk(x, fresh, 10)
    got = index.search(fresh, 10, fetch=fetch)
    recall = np.mean([len({i for i, _ in g} & set(t.tolist())) / 10 for g, t in zip(got, truth)])
    assert recall >= 0.93, recall  # the estimate (>= 0.97 target) carries over to new queries of that kind
    stored = AnnIndex.build(plan, ids, x, fetch=fetch)
    assert stored.info["recall_query_kind"] == "stored"
    assert stored.info["search"]["ef_search"] <= index.info["search"]["ef_search"]


def test_each_index_is_tuned_on_its_query_kind(tmp_path, colour_spec):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(60):
        make_image(src / f"p{i}.png", tuple(int(v) for v in rng.integers(0, 256, 3)), size=(8, 8))
        (src / f"p{i}.txt").write_text(f"{['red', 'green', 'blue'][i % 3]} thing {i}\n")
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        index_sources(coll, [src])
        facts = coll.reindex("hnsw")
    assert facts["images"]["recall_query_kind"] == "text (captions)"
    assert facts["captions"]["recall_query_kind"] == "image"
    assert facts["features"]["recall_query_kind"] == "stored"
    assert all(f["recall_at_10"] >= 0.95 for f in facts.values())


def test_when_more_lists_stop_helping_the_cheapest_plateau_is_kept(monkeypatch):
    """An unreachable recall target (as for queries an index approximates badly): IVF-PQ keeps the
    cheapest nprobe within 0.005 of the best instead of scanning every list, and widens its exact
    re-ranking instead."""
    from ravl.store import ann

    x = _clustered(4000, 32, seed=1)
    ids = np.arange(len(x), dtype=np.int64)

    def fetch(rows):
        rows = np.asarray(rows, dtype=np.int64)
        return rows, x[rows]

    monkeypatch.setattr(ann, "RECALL_TARGET", 1.5)
    plan = choose_index(len(x), 32, "ivfpq")
    index = AnnIndex.build(plan, ids, x, fetch=fetch, queries=("text", _far(x, 100, seed=2)))
    assert index.info["search"]["nprobe"] < plan.params["nlist"]
    assert index.info["search"]["rerank"] == ann.RERANK_CHOICES[-1]
    assert index.info["recall_at_10"] >= 0.95
