"""A LangChain retriever over a ravl collection (``pip install 'ravl[langchain]'``)::

    from ravl.integrations.langchain import RavlRetriever
    retriever = RavlRetriever.from_collection("my-collection", k=5)
    docs = retriever.invoke("a red bicycle -people")

Each ``Document`` has the item's captions (or the caption, with ``target="captions"``) as
``page_content``, ``id`` "ravl:item:ID", and ``metadata`` with the uri, item id, score in [0, 1]
and how it was found. Queries take ravl's arithmetic ('beach -people').
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, field_validator

from ..collection import Collection
from .hits import RetrieverOptions, hit_records, open_for_retrieval


class RavlRetriever(BaseRetriever):
    """Retrieve a ravl collection's images (or captions) for a text query."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    collection: Any
    k: int = 5
    target: str = "images"
    mode: str = "auto"
    min_score: float = 0.0
    filters: Any = None

    @field_validator("collection", mode="before")
    @classmethod
    def _open(cls, value: Any) -> Collection:
        return open_for_retrieval(value)

    @classmethod
    def from_collection(cls, collection: str | Path | Collection, **options: Any) -> RavlRetriever:
        """A retriever over a collection folder (opened read-only) or an open :class:`Collection`."""
        return cls(collection=collection, **options)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        options = RetrieverOptions(k=self.k, target=self.target, mode=self.mode, min_score=self.min_score,
                                   filters=self.filters)
        return [Document(page_content=r.text, metadata=r.metadata, id=r.id)
                for r in hit_records(self.collection, query, options)]
