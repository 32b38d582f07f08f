"""What one shard contributes to a search across shards (:mod:`ravl.shards` fans a query out and
fuses the answers): its vector candidates with their cosines, and its keyword evidence (each query
word's document frequency, the caption count, and which query words each matching caption holds),
so the router computes keyword coverage with the IDF of all shards together; then the hits of the
winners, scored by the router. Functions over a :class:`~ravl.collection.core.Collection`, the one
door to the store."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..encoders.base import ImageVectors
from ..request import SearchRequest
from ..scores import Calibration
from ..store import bulk
from ..store.sqlite_errors import translating_sqlite_errors
from .core import Collection
from .search import _score, candidate_depth


@dataclass(frozen=True)
class Evidence:
    """One shard's share of a search. ``vector``: (id, cosine), best first (ids are caption ids
    for ``target="captions"``); ``matches``: id -> (query terms its caption holds, BM25) for each
    of its matching captions; ``cosines``: the cosines of keyword-only candidates; ``df`` and
    ``total``: each query term's document frequency and the caption count of this shard (a term
    this shard finds too common to count is absent from ``df``); ``hits``: in vector mode, the
    candidates' hits (the router re-scores them), which saves a second call."""
    mode: str
    vector: list[tuple[int, float]]
    terms: tuple[str, ...] = ()
    df: dict[str, int] = field(default_factory=dict)
    total: int = 0
    matches: dict[int, list[tuple[tuple[str, ...], float]]] = field(default_factory=dict)
    cosines: dict[int, float] = field(default_factory=dict)
    calibration: Calibration | None = None
    hits: dict[int, Any] = field(default_factory=dict)  # vector mode: the candidates' hits, ready to show


def shard_mode(coll: Collection, request: SearchRequest) -> str:
    """The request's mode on this shard: ``auto`` is hybrid wherever there is a keyword index (a
    shard without captions then adds no keyword evidence, which is what the one collection sees)."""
    if not request.texts:
        return "vector"
    if request.mode == "auto":
        return "hybrid" if coll.search_facts()["keyword_index"] else "vector"
    return coll.text_mode(request.mode)


@translating_sqlite_errors
def evidence(coll: Collection, request: SearchRequest, qvec: np.ndarray | None,
             images: Sequence[ImageVectors] = (), exclude: Iterable[int] = ()) -> Evidence:
    """This shard's candidates for ``request`` whose query vector ``qvec`` (and, for image
    similarity, base-encoder ``images``) the router computed once."""
    excluded = set(exclude)
    mode = shard_mode(coll, request)
    depth = candidate_depth(mode, request.k)
    cal = coll.calibration()
    vector: list[tuple[int, float]] = []
    if mode != "keyword" and qvec is not None:
        probe = replace(request, mode="vector", k=depth, min_score=0.0, sort="relevance")
        hits = coll.search_batch([probe], [qvec], images=[list(images)], exclude_items=excluded)[0]
        vector = [(h.id, float(h.vector_score)) for h in hits]
    if mode == "vector":
        return Evidence(mode, vector, calibration=cal, hits={h.id: h for h in hits})
    terms = coll._positive_terms(request)
    if not terms:
        return Evidence(mode, vector, calibration=cal)
    target = request.target
    rows, df, total, held = bulk.keyword_evidence(coll._db, terms, depth if target == "captions" else depth * 4)
    allowed = coll.allowed_set(request.filters)
    skip = excluded | coll._negative_items(request)
    matches: dict[int, list[tuple[tuple[str, ...], float]]] = {}
    for cid, item, bm25 in rows:
        key = cid if target == "captions" else item
        if (allowed is not None and item not in allowed) or key in skip:
            continue
        matches.setdefault(key, []).append((tuple(t for t in terms if t in held[cid]), float(bm25)))
    seen = {i for i, _ in vector}
    missing = [i for i in matches if i not in seen]
    cosines = {}
    if missing and qvec is not None and mode == "hybrid":
        cosines = dict(zip(missing, coll._cosines(target, missing, qvec)))
    return Evidence(mode, vector, tuple(terms), dict(df), int(total), matches, cosines, cal)


def query_vectors(coll: Collection, request: SearchRequest) -> tuple[np.ndarray | None, ImageVectors | None]:
    """The request's query vector (None in keyword mode) and, for a one-item image-similarity
    query, that item's stored vectors (embedding and features), computed by the shard holding it."""
    qvec = coll.query_vector(request)
    if not request.single_image or request.terms[0].kind != "item":
        return qvec, None
    item = int(request.terms[0].value)
    emb = coll.item_embeddings([item])[1]
    feat = coll.item_vectors([item], which="feat")[1]
    return qvec, ImageVectors(np.asarray(emb, np.float32), np.asarray(feat, np.float32))


def score(target: str, text_query: bool, mode: str, raw: float, weight: float, cal: Calibration) -> float:
    """A fused hit's score, exactly as one collection scores it."""
    return _score(target, text_query, mode, raw, weight, cal)


@translating_sqlite_errors
def render(coll: Collection, target: str, scored: list[tuple[int, float, dict]]) -> list:
    """Hits of this shard's winners (id, score, extras), in the given order."""
    return coll._hits(target, [scored])[0]
