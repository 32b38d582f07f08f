"""Tuning an index's search knobs (HNSW efSearch; IVF-PQ nprobe and its exact re-ranking depth) on
queries of the kind the index receives, against their exact top 10 (docs/search.md, "ANN recall
for text queries"; docs/scale.md, "10M on one machine").

The walk starts at the cheapest knobs and takes, one step at a time, whichever single widening
(more lists, or a deeper re-ranked shortlist) raises recall@10 the most. It stops at the target,
or where no widening pays (:data:`MIN_GAIN`): a wider knob that no longer raises recall is not taken (at 10M,
re-ranking 160 candidates per hit instead of 40 cost 4x the time for no recall).

Generic probe queries that are all one query to the encoder (their exact top 10s mostly the same items:
a text tower that maps "a photo of a cat" and "a photo of a bridge" to one direction) say nothing
about the queries users will send. They are replaced by stand-ins made from stored vectors, moved
to the modality gap's cosine (:data:`GAP_COSINE`), and ``ravl info`` says so.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from .chunked import Chunks, Fetch, exact_topk_chunks, rows_at
from .index_plan import IndexPlan

#: (query kind, vectors): sample queries of the kind an index receives, for tuning its search knobs
TuningQueries = tuple[str, np.ndarray]
#: fewer sample queries than this and the stored vectors stand in
MIN_TUNING_QUERIES = 20
RECALL_TARGET = 0.95
#: per index kind, how far above RECALL_TARGET the build tunes its knobs on *stored* vectors as
#: queries, which an index finds more easily than new ones (1M x 512, docs/scale.md: HNSW estimate
#: 0.960 vs 0.934 on fresh queries; IVF-PQ 0.974 vs 0.939, its own code being in the list it
#: probes first)
TUNE_MARGIN = {"hnsw": 0.02, "ivfpq": 0.04}
#: ... and on a sample of the queries it receives, which only the choice of knobs on that same
#: sample flatters (estimate vs 1,000 fresh out-of-distribution queries: HNSW 0.968 vs 0.947 at
#: 200k with a 0.01 margin, 0.984 vs 0.975 at 1M; IVF-PQ 0.998 vs 0.991 at 200k, 0.991 vs 0.986 at
#: 1M, 0.966 vs 0.973 at 10M: docs/search.md, docs/scale.md)
SAMPLE_MARGIN = {"hnsw": 0.02, "ivfpq": 0.01}
#: a widening that adds less recall@10 than this, or than a quarter of what is still missing to
#: the target when that is less (near the target every step is small), does not pay for itself
MIN_GAIN = 0.005
EF_CHOICES = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
NPROBE_CHOICES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512)
#: IVF-PQ re-ranking factors tried past the plan's own (shortlist = k x factor)
RERANK_CHOICES = (20, 40, 80, 160)
#: the kind of the generic sample queries a collection without captions gives its image index
#: (the encoder's vectors for probe texts such as "a photo of a dog"); a collection's own queries
#: (its captions, its images) are never replaced
PROBES = "text (probes)"
#: probes whose exact top 10s have fewer distinct items than this share of all their slots (or of
#: the stored vectors, when fewer) are one query many times (40 probe texts through a randomly initialised CLIP: 17%;
#: queries at cosine 0.45 to random stored vectors: 100%)
MIN_DISTINCT = 0.5
#: stand-ins' cosine to the stored vector each is made from: the modality gap of text queries
#: against image vectors (docs/search.md), as benchmarks/ood_recall.py makes them
GAP_COSINE = 0.45


class Tunable(Protocol):
    """What tuning needs of an index (an :class:`~.ann.AnnIndex`)."""
    plan: IndexPlan
    labels: np.ndarray  # the id at each position
    alive: np.ndarray  # whether each position is live
    info: dict  # build facts; ``info['search']`` holds the knobs

    @property
    def kind(self) -> str: ...

    def search(self, queries: np.ndarray, k: int, exclude: Iterable[int] = (), *, fetch: Fetch | None = None,
               tuned: dict | None = None) -> list[list[tuple[int, float]]]: ...


def axes(index: Tunable) -> list[tuple[str, tuple]]:
    """The knobs tuned for ``index``, each with its values, cheapest first."""
    if index.kind == "hnsw":
        return [("ef_search", EF_CHOICES)]
    if index.kind == "ivfpq":
        nlist = int(index.plan.params.get("nlist", 1))
        base = int(index.plan.search.get("rerank", RERANK_CHOICES[0]))
        return [("nprobe", tuple(c for c in NPROBE_CHOICES if c < nlist) + (nlist,)),
                ("rerank", (base, *(c for c in RERANK_CHOICES if c > base)))]
    return []


def stand_ins(index: Tunable, fetch: Fetch, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` queries at :data:`GAP_COSINE` to random stored vectors of ``index`` (and below it to
    the rest), read through ``fetch``."""
    live = index.labels[index.alive]
    picked = np.sort(rng.choice(live, min(n, len(live)), replace=False))
    base = np.asarray(fetch([int(i) for i in picked])[1], np.float32).reshape(-1, index.plan.dim)
    base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(1, keepdims=True) * base
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    q = GAP_COSINE * base + np.sqrt(1 - GAP_COSINE ** 2) * noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def distinct_share(top_ids: np.ndarray, stored: int) -> float:
    """Distinct items among the queries' exact top-k slots, as a share of the slots (or of the
    ``stored`` vectors, when fewer)."""
    return len(set(top_ids.ravel().tolist())) / max(1, min(top_ids.size, stored))


def tune(index: Tunable, chunks: Chunks, fetch: Fetch, seed: int, samples: int = 200,
         queries: TuningQueries | None = None) -> None:
    """Set ``index.info``'s search knobs, ``recall_at_10`` and the queries it was measured on."""
    rng = np.random.default_rng(seed + 1)
    n = len(index.labels)
    k = min(10, n)
    kind, note = "stored", None
    if queries is not None and len(queries[1]) >= MIN_TUNING_QUERIES:
        given = np.ascontiguousarray(queries[1][:samples], dtype=np.float32).reshape(-1, index.plan.dim)
        alt = stand_ins(index, fetch, samples, rng) if queries[0] == PROBES else given[:0]
        scores, ids = exact_topk_chunks(chunks, np.concatenate([given, alt]), k)  # one pass for both
        share = distinct_share(ids[:len(given)], int(index.alive.sum()))
        if share >= MIN_DISTINCT or not len(alt):
            kind, q, scores = queries[0], given, scores[:len(given)]
        else:
            kind, q, scores = "text-like stand-in", alt, scores[len(given):]
            note = (f"the {len(given)} {queries[0]} queries found the same items ({share:.0%} distinct); "
                    f"stand-ins: stored vectors moved to cosine {GAP_COSINE}")
    else:
        q = rows_at(chunks, np.sort(rng.choice(n, min(samples, n), replace=False)), index.plan.dim)
        scores = exact_topk_chunks(chunks, q, k)[0]
    # tie-aware: a hit counts when its exact score reaches the k-th exact score (duplicate vectors
    # make any of several ids a right answer)
    kth = scores[:, -1] - 1e-5

    def measure(knobs: dict) -> float:
        got = index.search(q, k, fetch=fetch, tuned={**index.info["search"], **knobs})
        hit_ids, hit_vecs = fetch(sorted({i for hits in got for i, _ in hits[:k]}))
        row = {int(i): v for i, v in zip(hit_ids, hit_vecs)}
        return float(np.mean([sum(float(row[i] @ qv) >= bar for i, _ in hits[:k] if i in row) / k
                              for hits, qv, bar in zip(got, q, kth)]))

    knobs = axes(index)
    target = RECALL_TARGET + (TUNE_MARGIN if kind == "stored" else SAMPLE_MARGIN).get(index.kind, 0.0)
    at, recall = walk([len(values) for _, values in knobs],
                      lambda p: measure({key: values[i] for (key, values), i in zip(knobs, p)}), target)
    for (key, values), i in zip(knobs, at):
        index.info["search"][key] = values[i]
    index.info["recall_at_10"] = round(recall, 4)
    index.info["recall_queries"] = len(q)
    index.info["recall_query_kind"] = kind
    index.info.pop("recall_note", None)
    if note:
        index.info["recall_note"] = note


def walk(sizes: list[int], recall_at, target: float) -> tuple[tuple[int, ...], float]:
    """Greedy walk over a grid of knob positions (``sizes[a]`` values on axis ``a``, cheapest
    first) from the cheapest corner: each step widens the one knob that raises ``recall_at`` most,
    until the target is reached or no step pays (:data:`MIN_GAIN`). Returns (positions, recall)."""
    seen: dict[tuple[int, ...], float] = {}

    def recall(p: tuple[int, ...]) -> float:
        if p not in seen:
            seen[p] = recall_at(p)
        return seen[p]

    at = tuple(0 for _ in sizes)
    while recall(at) < target:
        steps = [at[:a] + (at[a] + 1,) + at[a + 1:] for a in range(len(sizes)) if at[a] + 1 < sizes[a]]
        best = max(steps, key=recall, default=None)  # ties: the first knob (more lists before re-ranking)
        if best is None or recall(best) - recall(at) < min(MIN_GAIN, (target - recall(at)) / 4):
            break
        at = best
    return at, recall(at)
