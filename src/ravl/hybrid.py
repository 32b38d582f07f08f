"""Hybrid search helpers: turning a user's text into a safe FTS5 query, and reciprocal rank fusion.

RRF (Cormack, Clarke and Büttcher, SIGIR 2009): an item's fused score is the weighted sum over the
rankings that found it of ``weight / (rrf_k + rank)``, ranks counted from 1. It needs no score
calibration between BM25 and cosine similarity, which is why hybrid engines default to it.
"""
from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .errors import ConfigError

MODES = ("auto", "vector", "keyword", "hybrid")
K = TypeVar("K", bound=Hashable)
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


def fts_terms(text: str) -> list[str]:
    """Words of ``text`` as quoted FTS5 terms, lower-cased, each once, in order of first use (the
    store ORs them: BM25 ranks documents matching more and rarer words first)."""
    return ['"' + w.replace('"', '""') + '"' for w in dict.fromkeys(w.lower() for w in _WORD.findall(text))]


def rrf(rankings: dict[str, Sequence[K]], weights: dict[str, float], rrf_k: float) -> list[tuple[K, float, dict[str, int]]]:
    """Fuse ranked id lists: ``[(id, score, {signal: rank}), ...]`` best first (ties: first seen)."""
    scores: dict[K, float] = {}
    found: dict[K, dict[str, int]] = {}
    for signal, ids in rankings.items():
        w = weights.get(signal, 1.0)
        for rank, key in enumerate(ids, start=1):
            scores[key] = scores.get(key, 0.0) + w / (rrf_k + rank)
            found.setdefault(key, {})[signal] = rank
    order = sorted(scores, key=lambda key: -scores[key])
    return [(key, scores[key], found[key]) for key in order]


Ranked = list[tuple[int, float, dict | None]]  # (id, score, found_by), best first


def ranked(pairs: Sequence[tuple[int, float]], signal: str) -> Ranked:
    """``(id, score)`` pairs, best first, tagged with the rank ``signal`` gave each."""
    return [(i, score, {signal: rank}) for rank, (i, score) in enumerate(pairs, 1)]


def fuse(vector: Sequence[tuple[int, float]], keyword: Sequence[tuple[int, float]], mode: str, fusion: Fusion,
         k: int) -> Ranked:
    """The ``k`` best ids of a ``keyword`` or ``hybrid`` search from the two rankings (a hybrid
    id's score is its RRF score and ``found_by`` has both ranks). Ids only: the caller reads the
    rows for the ``k`` shown, not for every candidate."""
    if mode == "keyword":
        return ranked(keyword[:k], "keyword")
    fused = rrf({"vector": [i for i, _ in vector], "keyword": [i for i, _ in keyword]},
                {"vector": fusion.vector_weight, "keyword": fusion.keyword_weight}, fusion.rrf_k)
    return [(i, round(score, 6), found) for i, score, found in fused[:k]]
