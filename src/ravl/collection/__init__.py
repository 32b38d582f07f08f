"""A collection: a folder holding the SQLite database and FAISS index caches, plus the encoder
that made its vectors (and, after ``ravl tune``, a tuned bridge). Search across modalities lives
here; ingest lives in :mod:`ravl.ingest`.

:class:`Collection` is the one door to the store: everything outside ``ravl.store`` reads and
writes a collection through its methods. The class is split by job over this package:
:mod:`.core` (store access, indexes, search), :mod:`.tuned` (the tuned bridge) and
:mod:`.opening` (:func:`open_collection`, creation and the writer lock).
"""
from __future__ import annotations

from ..hits import (
                    MAX_K,
                    TARGETS,
                    CaptionHit,
                    CaptionSet,
                    ImageHit,
                    Target,
                    check_k,
                    check_target,
                    check_texts,
)
from ..store.db import OCR_SOURCE, NewItem
from ..store.index_plan import KINDS as INDEX_KINDS
from ..store.index_plan import parse_size as parse_memory_budget
from ..store.indexes import INDEX_NAMES
from ..store.integrity import STALE_TMP_SECONDS
from ..store.sqlite_errors import translating_sqlite_errors
from .core import Collection
from .opening import LOCK_NAME, open_collection

__all__ = ["INDEX_KINDS", "INDEX_NAMES", "LOCK_NAME", "MAX_K", "STALE_TMP_SECONDS", "TARGETS", "CaptionHit",
           "CaptionSet", "Collection", "ImageHit", "NewItem", "OCR_SOURCE", "Target", "check_k",
           "check_target", "check_texts", "open_collection", "parse_memory_budget", "translating_sqlite_errors"]
