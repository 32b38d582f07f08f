"""A LlamaIndex retriever over a ravl collection (``pip install 'ravl[llamaindex]'``)::

    from ravl.integrations.llamaindex import RavlRetriever
    retriever = RavlRetriever("my-collection", k=5)
    for hit in retriever.retrieve("a red bicycle -people"):
        print(hit.score, hit.node.image_path, hit.node.text)

Each hit is a ``NodeWithScore`` holding an ``ImageNode``: ``text`` is the item's captions (or the
caption, with ``target="captions"``), ``image_path`` the file, ``metadata`` the uri, item id, score
and how it was found. Queries take ravl's arithmetic ('beach -people').
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle

from ..collection import Collection
from .hits import RetrieverOptions, hit_records, open_for_retrieval


class RavlRetriever(BaseRetriever):
    """Retrieve a ravl collection's images (or captions) for a text query."""

    def __init__(self, collection: str | Path | Collection, *, k: int = 5, target: str = "images",
                 mode: str = "auto", min_score: float = 0.0, filters: Any = None, **kwargs: Any):
        self.collection = open_for_retrieval(collection)
        self.options = RetrieverOptions(k=k, target=target, mode=mode, min_score=min_score, filters=filters)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        out = []
        for r in hit_records(self.collection, query_bundle.query_str, self.options):
            node = ImageNode(id_=r.id, text=r.text, image_path=r.uri, metadata=r.metadata,
                             excluded_embed_metadata_keys=list(r.metadata),
                             excluded_llm_metadata_keys=[k for k in r.metadata if k != "uri"])
            out.append(NodeWithScore(node=node, score=r.score))
        return out
