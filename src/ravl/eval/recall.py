"""Cross-modal retrieval Recall@K, following the CLIP benchmark protocol.

* text -> image: every caption is a query; its own image is the one relevant item.
* image -> text: every image is a query; it is a hit at K when *any* of its captions is in the
  top K. Images without captions are left out as queries (counted in ``n_skipped``) but stay
  candidates for text -> image.

A query's rank is the 1-based position of its first relevant item. Exact score ties are
resolved deterministically by ``ties``: 'pessimistic' (default; tied irrelevant items rank
ahead, so a constant scorer gets no credit), 'optimistic' (tied relevant items rank ahead), or
'index' (tied items in candidate index order, like a stable sort). Recall values are fractions
in [0, 1]; mean and median rank are over the scored queries.
"""
from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError

TIES = ("pessimistic", "optimistic", "index")
DIRECTIONS = ("text_to_image", "image_to_text")
_CHUNK_ELEMENTS = 4_000_000  # rows are processed in blocks of about this many scores


@dataclass(frozen=True)
class DirectionScores:
    """Ranks for one retrieval direction and the figures derived from them."""

    name: str
    ranks: np.ndarray  # 1-based rank of the first relevant item, one per scored query
    ks: tuple[int, ...]
    n_candidates: int
    n_skipped: int = 0  # queries without any relevant item, left out
    n_not_found: int = 0  # ranked-list queries whose relevant items were absent (rank = len + 1)

    @property
    def n_queries(self) -> int:
        return int(self.ranks.size)

    def recall_at(self, k: int) -> float:
        return float(np.mean(self.ranks <= k)) if self.ranks.size else 0.0

    @property
    def recall(self) -> dict[int, float]:
        return {k: self.recall_at(k) for k in self.ks}

    def curve(self, max_k: int | None = None) -> list[float]:
        """Recall@K for K = 1 .. max_k (default: the largest requested K)."""
        max_k = max(self.ks) if max_k is None else int(max_k)
        if not self.ranks.size:
            return [0.0] * max_k
        counts = np.bincount(np.minimum(self.ranks.astype(np.int64), max_k + 1), minlength=max_k + 2)
        return [float(x) for x in np.cumsum(counts)[1:max_k + 1] / self.ranks.size]

    @property
    def mean_rank(self) -> float:
        return float(np.mean(self.ranks)) if self.ranks.size else float("nan")

    @property
    def median_rank(self) -> float:
        return float(np.median(self.ranks)) if self.ranks.size else float("nan")

    def to_dict(self, curve_max_k: int | None = None) -> dict:
        return {
            "recall": {f"R@{k}": v for k, v in self.recall.items()},
            "mean_rank": self.mean_rank,
            "median_rank": self.median_rank,
            "n_queries": self.n_queries,
            "n_candidates": self.n_candidates,
            "n_skipped": self.n_skipped,
            "n_not_found": self.n_not_found,
            "recall_curve": self.curve(curve_max_k),
        }


@dataclass(frozen=True)
class RetrievalScores:
    """Both directions of a cross-modal retrieval benchmark."""

    text_to_image: DirectionScores
    image_to_text: DirectionScores
    ties: str = "pessimistic"

    def to_dict(self, curve_max_k: int | None = None) -> dict:
        return {"ties": self.ties,
                "text_to_image": self.text_to_image.to_dict(curve_max_k),
                "image_to_text": self.image_to_text.to_dict(curve_max_k)}


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(k) for k in ks}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"k values must be positive integers, e.g. ks=(1, 5, 10); got {ks!r}") from exc
    if not out or out[0] < 1:
        raise ConfigError(f"k values must be positive integers, e.g. ks=(1, 5, 10); got {ks!r}")
    return out


def ranks_from_similarity(scores, relevant: Sequence[Collection[int]], *, ties: str = "pessimistic") -> np.ndarray:
    """Rank of the first relevant candidate for each query row of ``scores`` (queries x candidates).

    ``relevant[i]`` holds the candidate column indices relevant to query ``i``. Queries with no
    relevant candidate get NaN. Higher score = better.
    """
    if ties not in TIES:
        raise ConfigError(f"unknown tie rule {ties!r}; choose one of {', '.join(TIES)}")
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise InputError(f"the similarity matrix must be 2-D (queries x candidates), got shape {scores.shape}")
    if np.isnan(scores).any():
        raise InputError("the similarity matrix contains NaN; check the embeddings for empty or broken items")
    n_q, n_c = scores.shape
    if len(relevant) != n_q:
        raise InputError(f"{len(relevant)} relevance lists for {n_q} queries; give one per query row")
    ranks = np.full(n_q, np.nan)
    step = max(1, _CHUNK_ELEMENTS // max(1, n_c))
    cols = np.arange(n_c)
    for start in range(0, n_q, step):
        block = scores[start:start + step]
        pos = np.zeros(block.shape, dtype=bool)
        for row, items in enumerate(relevant[start:start + step]):
            if len(items):
                try:
                    pos[row, np.asarray(list(items), dtype=np.int64)] = True
                except (IndexError, ValueError, TypeError) as exc:
                    raise InputError(f"relevant items of query {start + row} must be column indices in "
                                     f"0..{n_c - 1}, got {list(items)[:5]}") from exc
        has_pos = pos.any(axis=1)
        best = np.where(pos, block, -np.inf).max(axis=1, initial=-np.inf)[:, None]
        neg = ~pos
        rank = 1 + ((block > best) & neg).sum(axis=1)
        tied = (block == best) & neg
        if ties == "pessimistic":
            rank += tied.sum(axis=1)
        elif ties == "index":
            first_best = np.argmax(pos & (block == best), axis=1)[:, None]
            rank += (tied & (cols[None, :] < first_best)).sum(axis=1)
        ranks[start:start + step] = np.where(has_pos, rank, np.nan)
    return ranks


def direction_scores(name: str, ranks, ks: Iterable[int] = (1, 5, 10), *, n_candidates: int,
                     n_not_found: int = 0) -> DirectionScores:
    """Wrap per-query ranks (NaN = query without relevant items, left out) into DirectionScores."""
    ranks = np.asarray(ranks, dtype=np.float64)
    keep = ~np.isnan(ranks)
    return DirectionScores(name=name, ranks=ranks[keep].astype(np.int64), ks=_check_ks(ks),
                           n_candidates=int(n_candidates), n_skipped=int((~keep).sum()),
                           n_not_found=int(n_not_found))


def retrieval_scores(similarity, caption_to_image: Sequence[int], *, ks: Iterable[int] = (1, 5, 10),
                     ties: str = "pessimistic") -> RetrievalScores:
    """Recall@K both ways from a (n_captions x n_images) similarity matrix.

    ``caption_to_image[i]`` is the column index of caption ``i``'s image.
    """
    ks = _check_ks(ks)
    sim = np.asarray(similarity)
    if sim.ndim != 2:
        raise InputError(f"the similarity matrix must be 2-D (captions x images), got shape {sim.shape}")
    n_t, n_i = sim.shape
    try:
        owner = np.asarray(caption_to_image, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError("caption_to_image must hold one integer image index per caption") from exc
    if owner.size != n_t:
        raise InputError(f"caption_to_image has {owner.size} entries for {n_t} caption rows; give one per caption")
    if owner.size and (owner.min() < 0 or owner.max() >= n_i):
        raise InputError(f"caption_to_image holds image indices outside 0..{n_i - 1}; "
                         "map each caption to a column of the similarity matrix")
    t2i = ranks_from_similarity(sim, [(int(j),) for j in owner], ties=ties)
    by_image: list[list[int]] = [[] for _ in range(n_i)]
    for i, j in enumerate(owner):
        by_image[j].append(i)
    i2t = ranks_from_similarity(sim.T, by_image, ties=ties)
    return RetrievalScores(text_to_image=direction_scores("text_to_image", t2i, ks, n_candidates=n_i),
                           image_to_text=direction_scores("image_to_text", i2t, ks, n_candidates=n_t),
                           ties=ties)


def ranking_scores(rankings: Mapping[Hashable, Sequence[Hashable]],
                   relevant: Mapping[Hashable, Hashable | Collection[Hashable]], *,
                   ks: Iterable[int] = (1, 5, 10), name: str = "text_to_image",
                   n_candidates: int | None = None) -> DirectionScores:
    """Recall@K from ranked id lists (best first), e.g. what a search engine returned.

    ``relevant[q]`` is one id or a collection of ids (a set/list/tuple). A query whose relevant
    items are absent from its list ranks past the list and past the largest K (``max(len(list),
    K) + 1``) and counts in ``n_not_found`` (mean rank is then a lower bound). Queries without any
    relevant id are left out.
    """
    ks = _check_ks(ks)
    missing = [q for q in rankings if q not in relevant]
    if missing:
        raise InputError(f"{len(missing)} ranked queries have no relevance entry (e.g. {missing[:3]}); "
                         "give relevant ids for every query")
    ranks, not_found, longest = [], 0, 0
    for query, ranked in rankings.items():
        rel = relevant[query]
        rel = set(rel) if isinstance(rel, (set, frozenset, list, tuple)) else {rel}  # type: ignore[arg-type]
        ranked = list(ranked)
        longest = max(longest, len(ranked))
        if not rel:
            ranks.append(np.nan)
            continue
        pos = next((i for i, item in enumerate(ranked, 1) if item in rel), None)
        if pos is None:  # past the list and past every K asked for (a short or empty list is no hit)
            not_found += 1
            pos = max(len(ranked), ks[-1]) + 1
        ranks.append(pos)
    return direction_scores(name, ranks, ks, n_candidates=n_candidates if n_candidates is not None else longest,
                            n_not_found=not_found)
