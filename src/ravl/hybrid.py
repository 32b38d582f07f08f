"""Hybrid search helpers: turning a user's text into a safe FTS5 query, and reciprocal rank fusion.

RRF (Cormack, Clarke and Büttcher, SIGIR 2009): an item's fused score is the weighted sum over the
rankings that found it of ``weight / (rrf_k + rank)``, ranks counted from 1. It needs no score
calibration between BM25 and cosine similarity, which is why hybrid engines default to it.
"""
from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError

MODES = ("auto", "vector", "keyword", "hybrid")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Fusion:
    """How ``hybrid`` mode mixes the two rankings (``auto`` is hybrid when the collection has text)."""
    vector_weight: float = 1.0
    keyword_weight: float = 1.0
    rrf_k: float = 60.0

    def __post_init__(self):
        if self.vector_weight < 0 or self.keyword_weight < 0 or self.vector_weight + self.keyword_weight <= 0:
            raise ConfigError("fusion weights must be non-negative and not both 0 "
                              f"(got vector {self.vector_weight}, keyword {self.keyword_weight})")
        if not self.rrf_k >= 0:
            raise ConfigError(f"rrf_k must be non-negative, got {self.rrf_k}")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"search mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def fts_query(text: str) -> str | None:
    """Words of ``text`` as quoted FTS5 terms joined by OR (BM25 ranks documents matching more
    and rarer words first); None when the text has no word characters."""
    words = _WORD.findall(text)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in dict.fromkeys(w.lower() for w in words))


def rrf(rankings: dict[str, Sequence[Hashable]], weights: dict[str, float], rrf_k: float) \
        -> list[tuple[Hashable, float, dict[str, int]]]:
    """Fuse ranked id lists: ``[(id, score, {signal: rank}), ...]`` best first (ties: first seen)."""
    scores: dict[Hashable, float] = {}
    found: dict[Hashable, dict[str, int]] = {}
    for signal, ids in rankings.items():
        w = weights.get(signal, 1.0)
        for rank, key in enumerate(ids, start=1):
            scores[key] = scores.get(key, 0.0) + w / (rrf_k + rank)
            found.setdefault(key, {})[signal] = rank
    order = sorted(scores, key=lambda key: -scores[key])
    return [(key, scores[key], found[key]) for key in order]


def ranked(hits: Sequence[Any], signal: str) -> list[Any]:
    """``hits`` (image or caption hits, best first) tagged with the rank ``signal`` gave each."""
    return [replace(h, found_by={signal: rank}) for rank, h in enumerate(hits, 1)]


def fuse(vector_hits: Sequence[Any], keyword_hits: Sequence[Any], mode: str, fusion: Fusion, k: int) -> list[Any]:
    """The ``k`` best hits of a ``keyword`` or ``hybrid`` search from the two rankings (hits are
    keyed by id; a hybrid hit's score is its RRF score and ``found_by`` has both ranks)."""
    if mode == "keyword":
        return ranked(keyword_hits[:k], "keyword")
    by_id = {h.id: h for h in keyword_hits} | {h.id: h for h in vector_hits}
    fused = rrf({"vector": [h.id for h in vector_hits], "keyword": [h.id for h in keyword_hits]},
                {"vector": fusion.vector_weight, "keyword": fusion.keyword_weight}, fusion.rrf_k)
    return [replace(by_id[i], score=round(score, 6), found_by=found) for i, score, found in fused[:k]]
