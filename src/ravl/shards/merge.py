"""The router's arithmetic, without Ray: shards' candidates -> one ranking.

Vector mode (and image similarity) merges the shards' lists by exact cosine: shards built with the
same encoder put their vectors in one space, so the merged top k is the top k of one collection
holding them all. Keyword and hybrid modes are fused, not merged by raw per-shard scores: coverage
is recomputed here with document frequencies summed over every shard (global IDF), from the query
terms each candidate's captions hold, and hybrid ranks by ``cosine + w * coverage`` with one ``w``
(the request's ``keyword_weight``, else the first shard's fitted weight). Scores use the first
shard's calibration. A term that some shard finds too common to count (in half its captions, once
it has 20) does not count anywhere.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..collection.sharding import Evidence, score
from ..hybrid import coverage, idf
from ..hybrid import fuse as fuse_ranking
from ..request import SearchRequest
from ..scores import SUITE_DEFAULT, image_similarity

Key = tuple[int, int]  # (shard index, id in that shard)


@dataclass(frozen=True)
class Fused:
    """The router's ranking: the mode it ended in, and (shard, id, score, extras) best first."""
    mode: str
    hits: list[tuple[int, int, float, dict]]
    weight: float


def fuse(request: SearchRequest, shards: Sequence[Evidence]) -> Fused:
    """Merge or fuse the shards' evidence for ``request``; the top ``k`` at or above ``min_score``."""
    cal = next((e.calibration for e in shards if e.calibration is not None), None) or SUITE_DEFAULT
    w = cal.weight_for(request.fusion.keyword_weight)
    vector = sorted(((cos, s, i) for s, e in enumerate(shards) for i, cos in e.vector), key=lambda t: -t[0])
    vrank: dict[Key, int] = {(s, i): r for r, (_, s, i) in enumerate(vector, 1)}
    cos: dict[Key, float] = {(s, i): c for c, s, i in vector}
    if request.single_image and request.target == "images":
        scored = [((s, i), float(image_similarity(c)), {"found_by": {"vector": r}, "vector_score": round(c, 6)})
                  for r, (c, s, i) in enumerate(vector, 1)]
        return Fused("vector", _cut(scored, request), w)
    keyword = _coverage(shards)
    modes = {e.mode for e in shards}
    mode = "keyword" if request.mode == "keyword" or "keyword" in modes else "hybrid" if "hybrid" in modes else "vector"
    if mode == "hybrid" and not keyword:
        mode = "vector"  # no content word (or none that discriminates): pure vector search
    for s, e in enumerate(shards):
        cos.update({(s, i): c for i, c in e.cosines.items()})
    krank = {key: r for r, key in enumerate(sorted(keyword, key=lambda k: (-keyword[k][0], -keyword[k][1])), 1)}
    ids = list(vrank) if mode == "vector" else list(krank) if mode == "keyword" else list(dict.fromkeys([*vrank, *krank]))
    raws = fuse_ranking(ids, mode, cos, keyword, {"vector": vrank, "keyword": krank}, w)
    text_query = any(t.kind == "text" and t.weight > 0 for t in request.terms)
    scored = [(key, score(request.target, text_query, mode, raw, w, cal), extras) for key, raw, extras in raws]
    return Fused(mode, _cut(scored, request), w)


def _coverage(shards: Sequence[Evidence]) -> dict[Key, tuple[float, float]]:
    """(shard, id) -> (coverage, BM25) of its best caption, with every shard's document frequencies."""
    with_text = [e for e in shards if e.terms]
    if not with_text:
        return {}
    terms = with_text[0].terms
    live = [t for t in terms if all(t in e.df for e in with_text)]
    total = sum(e.total for e in shards)
    weights = [idf(sum(e.df[t] for e in with_text), total) for t in live]
    out: dict[Key, tuple[float, float]] = {}
    for s, e in enumerate(shards):
        for i, found in e.matches.items():
            for held, bm25 in found:
                cov = coverage([t in held for t in live], weights)
                if (s, i) not in out or (cov, bm25) > out[(s, i)]:
                    out[(s, i)] = (cov, bm25)
    return out


def _cut(scored: list[tuple[Key, float, dict]], request: SearchRequest) -> list[tuple[int, int, float, dict]]:
    return [(s, i, sc, ex) for (s, i), sc, ex in scored if sc >= request.min_score][:request.k]
