"""Hybrid search helpers: which words of a query are keyword evidence, how much of a query a caption
covers, and the fusion of the vector and keyword signals.

A ranking by reciprocal rank fusion (RRF) gives a result found only by the vector ranking at most
1/61, so any keyword match, even on "a" or "of", outranked the image the vectors put first
(docs/search.md). ravl fuses scores instead: ``cosine + w * coverage``, where ``coverage`` in
[0, 1] is the IDF-weighted share of the query's content words that the item's best caption holds
(stopwords and words in half the captions do not count), and ``w`` is fitted per collection on
its own captioned pairs (:mod:`ravl.scores`). A query with no content word is pure vector search.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

from .errors import ConfigError

K = TypeVar("K")  # an item id, or (shard, id) at the shard router

MODES = ("auto", "vector", "keyword", "hybrid")
_WORD = re.compile(r"\w+", re.UNICODE)
#: the stopword lists used: English plus the collection's caption languages (ISO 639-1)
DEFAULT_LANGS = ("en",)


@dataclass(frozen=True)
class Fusion:
    """How ``hybrid`` mode mixes the two signals: an item ranks by ``cosine + keyword_weight *
    coverage``. ``keyword_weight=None`` uses the weight fitted on the collection's own captioned
    pairs (or the quality suite's default when it has too few)."""
    keyword_weight: float | None = None

    def __post_init__(self):
        w = self.keyword_weight
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1000):
            raise ConfigError(f"the keyword weight must be a number between 0 and 1000, got {w!r}")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"search mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def fold(word: str) -> str:
    """Lower case without diacritics (as the keyword index's tokenizer folds them)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


@lru_cache(maxsize=16)
def stopwords(langs: tuple[str, ...] = DEFAULT_LANGS) -> frozenset[str]:
    """Folded stopwords of ``langs`` from the maintained ``stopwordsiso`` lists (words that name
    things people photograph, such as "man", "fire" or "home", are kept: they are evidence)."""
    import stopwordsiso

    words: set[str] = set()
    for lang in langs:
        if stopwordsiso.has_lang(lang):
            words |= {fold(w) for w in stopwordsiso.stopwords(lang)}
    return frozenset(words - _KEEP)


#: words of stopwordsiso's long English list that are the subject of a photo, not filler
_KEEP = frozenset("""man men woman women home house world fire face faces water car computer light line lines
side top bottom front back hand hands head heads eye eyes door room rooms table tree trees sun moon star stars
play show game games name names number numbers office school church city cities state states country air sky
land sea box boxes book books paper group groups boy boys girl girls child children kid kids baby people person
family friend friends member members money picture pictures place places night day days morning evening year
years month week time times end ends case cases part parts point points area areas field fields order orders
world life lives work works board bill cup glass glasses bed kitchen garden street road roads window windows
big small large little old new young long short high low open full empty red black white""".split())


def content_words(text: str, langs: tuple[str, ...] = DEFAULT_LANGS) -> list[str]:
    """The words of ``text`` that can be keyword evidence (folded, each once, stopwords out)."""
    stop = stopwords(langs)
    return [w for w in dict.fromkeys(fold(w) for w in _WORD.findall(text)) if w not in stop and not w.isdigit()]


def fts_terms(words: Iterable[str]) -> list[str]:
    """``words`` as quoted FTS5 terms (the store ORs them)."""
    return ['"' + w.replace('"', '""') + '"' for w in words]


def idf(df: int, total: int) -> float:
    """BM25's inverse document frequency, floored at a small positive value."""
    return max(1e-3, math.log((total - df + 0.5) / (df + 0.5) + 1.0))


def coverage(matched: Sequence[bool], weights: Sequence[float]) -> float:
    """The IDF-weighted share of the query's words that a caption holds, in [0, 1]."""
    total = sum(weights)
    return sum(w for m, w in zip(matched, weights) if m) / total if total > 0 else 0.0


def best_coverage(rows: Sequence[tuple[int, int, float]], held: dict[int, set[str]], live: Sequence[str],
                  weights: Sequence[float], key: Callable[[int, int], int | None]) -> dict[int, tuple[float, float]]:
    """``key(caption id, item id)`` -> (coverage, BM25) of its best caption among the keyword
    ``rows``; ``key`` returns None for a row to leave out."""
    out: dict[int, tuple[float, float]] = {}
    for cid, item, bm25 in rows:
        k = key(cid, item)
        if k is None:
            continue
        cov = coverage([t in held[cid] for t in live], weights)
        if k not in out or (cov, bm25) > out[k]:
            out[k] = (cov, bm25)
    return out


def fuse(ids: Iterable[K], mode: str, cos: Mapping[K, float], keyword: Mapping[K, tuple[float, float]],
         ranks: Mapping[str, Mapping[K, int]], w: float) -> list[tuple[K, float, dict]]:
    """The ranking of ``ids`` in ``mode``, best first: by cosine (``vector``), coverage (``keyword``,
    ties broken by BM25) or ``cosine + w × coverage`` (``hybrid``). ``keyword`` maps an id to
    (coverage, BM25) of its best caption, ``ranks`` each side's rank of the ids it found. Each entry
    is (id, raw score, evidence: ``found_by``, ``vector_score``, ``keyword_score``)."""
    scored: list[tuple[K, float, dict]] = []
    for i in ids:
        c = cos.get(i)
        cov = keyword.get(i, (0.0, 0.0))[0]
        raw = (c or 0.0) if mode == "vector" else cov if mode == "keyword" else (c or 0.0) + w * cov
        extras: dict = {"found_by": {side: r[i] for side, r in ranks.items() if i in r}}
        if c is not None:
            extras["vector_score"] = round(float(c), 6)
        if mode != "vector":
            extras["keyword_score"] = round(cov, 6)
        scored.append((i, float(raw), extras))
    if mode == "keyword":
        scored.sort(key=lambda s: (-s[1], -keyword[s[0]][1]))
    else:
        scored.sort(key=lambda s: -s[1])
    return scored
