"""What a search returns (image and caption hits, aligned caption sets) and the checks on a query's
``k``, texts and target; shared by :mod:`ravl.collection` and its callers."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from .errors import ConfigError

Target = Literal["images", "captions"]
TARGETS = ("images", "captions")
MAX_K = 1000


@dataclass(frozen=True)
class ImageHit:
    id: int
    uri: str
    score: float  # in [0, 1]: how likely this is the query's match (docs/search.md)
    captions: tuple[str, ...]
    found_by: dict | None = None  # {signal: rank} for the rankings that found it
    vector_score: float | None = None  # the raw cosine of the vector signal
    keyword_score: float | None = None  # the share of the query's content words its text holds

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["captions"] = list(self.captions)
        return d


@dataclass(frozen=True)
class CaptionHit:
    id: int
    caption: str
    image_id: int
    uri: str
    score: float
    found_by: dict | None = None
    vector_score: float | None = None
    keyword_score: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class CaptionSet:
    """Captions of some items, aligned: caption ids, their item ids, texts and (n, dim) vectors."""

    ids: list[int]
    item_ids: list[int]
    texts: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def check_k(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    return k


def check_texts(texts: Sequence[str]) -> None:
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ConfigError("a text query must be a non-empty string")
    for t in texts:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError("a text query holds bytes that are not UTF-8; pass UTF-8 text") from None


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


#: the largest efSearch / nprobe a query may ask for
MAX_SEARCH_PARAM = 65536
#: the deepest IVF-PQ re-ranking a query may ask for (candidates re-scored exactly per hit)
MAX_RERANK = 1000


@dataclass(frozen=True)
class Knobs:
    """Per-query index knobs, validated; None keeps the value tuned at build time (recall@10 >=
    0.95): ``ef_search`` (HNSW candidates explored), ``nprobe`` (IVF lists visited) and ``rerank``
    (IVF-PQ: candidates per hit re-scored exactly with the stored vectors). A knob an index does
    not have is ignored."""
    ef_search: int | None = None
    nprobe: int | None = None
    rerank: int | None = None

    def __post_init__(self):
        for name, top in (("ef_search", MAX_SEARCH_PARAM), ("nprobe", MAX_SEARCH_PARAM), ("rerank", MAX_RERANK)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top):
                raise ConfigError(f"{name} must be an integer between 1 and {top}, got {value!r}")

    def given(self) -> dict[str, int]:
        """The knobs set, by name."""
        return {k: v for k, v in asdict(self).items() if v is not None}
