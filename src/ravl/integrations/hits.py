"""What both retrievers return, framework-free: one record per hit of the search task, with the
text a language model reads (the caption, or an image's captions), the file uri, the score in
[0, 1] and metadata."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..collection import Collection
from ..errors import ConfigError


@dataclass(frozen=True)
class HitRecord:
    id: str  # "ravl:item:ID" or "ravl:caption:ID"
    text: str
    uri: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RetrieverOptions:
    """The search options of a retriever (validated when the first query builds its request)."""
    k: int = 5
    target: str = "images"
    mode: str = "auto"
    min_score: float = 0.0
    filters: Any = None  # a ravl.filters.Filters


def open_for_retrieval(collection: str | Path | Collection) -> Collection:
    """A collection given as an open :class:`Collection` or as its folder (opened read-only)."""
    from ..collection import open_collection

    if isinstance(collection, Collection):
        return collection
    if not isinstance(collection, (str, Path)):
        raise ConfigError(f"collection must be a folder path or an open ravl Collection, got {type(collection).__name__}")
    return open_collection(collection, readonly=True)


def hit_records(collection: Collection, query: str, options: RetrieverOptions) -> list[HitRecord]:
    """The search task's answer for ``query`` (with its arithmetic) as records, best first."""
    from ..request import SearchRequest
    from ..tasks.search import search

    request = SearchRequest.of_text(query, k=options.k, target=options.target, mode=options.mode,
                                    min_score=options.min_score, filters=options.filters)
    out = []
    for hit in search(collection, request)["results"]:
        meta = {"uri": hit["uri"], "score": hit["score"], "collection": str(collection.path),
                **{k: hit[k] for k in ("found_by", "vector_score", "keyword_score") if k in hit}}
        if options.target == "captions":
            meta.update(caption_id=hit["id"], item_id=hit["image_id"])
            out.append(HitRecord(f"ravl:caption:{hit['id']}", hit["caption"], hit["uri"], hit["score"], meta))
        else:
            meta.update(item_id=hit["id"], captions=hit["captions"])
            out.append(HitRecord(f"ravl:item:{hit['id']}", "\n".join(hit["captions"]), hit["uri"], hit["score"], meta))
    return out
