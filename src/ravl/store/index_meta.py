"""Index settings and build facts, kept as rows of the database's ``meta`` table (the index caches
themselves are sealed files, see :mod:`.vectors`)."""
from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..errors import CollectionError
from .codec import FEATURES_SEPARATE


class IndexMetaMixin:
    """Methods of :class:`~ravl.store.db.Database` (which provides ``conn``, ``readonly``,
    ``transaction`` and ``set_meta``)."""

    readonly: bool
    if TYPE_CHECKING:
        @property
        def conn(self) -> sqlite3.Connection: ...
        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def set_meta(self, values: dict[str, object], conn: sqlite3.Connection | None = None) -> None: ...

    def index_settings(self) -> dict[str, Any]:
        """The index kind asked for ('auto' when never set) and the memory budget in bytes (or None)."""
        meta = dict(self.conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('index_kind', 'index_memory_budget')").fetchall())
        budget = meta.get("index_memory_budget") or ""
        return {"kind": meta.get("index_kind") or "auto", "memory_budget": int(budget) if budget.isdigit() else None}

    def set_index_settings(self, kind: str, memory_budget: int | None) -> None:
        with self.transaction() as c:
            self.set_meta({"index_kind": kind, "index_memory_budget": memory_budget or ""}, c)

    def features_shared(self) -> bool:
        """Whether every item's features are its embedding (no item was ever written with features
        of its own: ``meta.features_separate`` unset) and no tuned bridge changes the vectors of the
        ``images`` index (``meta.bridge_sha256`` unset): then the ``features`` index is the
        ``images`` index."""
        meta = dict(self.conn.execute("SELECT key, value FROM meta WHERE key IN (?, 'bridge_sha256')",
                                      (FEATURES_SEPARATE,)).fetchall())
        return not meta.get(FEATURES_SEPARATE) and not meta.get("bridge_sha256")

    def record_index_facts(self, facts: dict[str, dict]) -> bool:
        """Store how each index was last built (kind, parameters, seconds, bytes, recall@10, ...);
        False when the database cannot be written now (the facts are informational)."""
        if self.readonly or not facts:
            return False
        try:
            with self.transaction() as c:
                self.set_meta({f"index_facts:{name}": json.dumps(f, sort_keys=True) for name, f in facts.items()}, c)
        except (CollectionError, sqlite3.Error):
            return False
        return True

    def index_facts(self) -> dict[str, dict]:
        """index name -> the facts :meth:`record_index_facts` stored last."""
        out = {}
        for key, value in self.conn.execute("SELECT key, value FROM meta WHERE key > 'index_facts:' AND key < 'index_facts;'"):
            try:
                facts = json.loads(value)
            except ValueError:
                continue
            if isinstance(facts, dict):
                out[key.partition(":")[2]] = facts
        return out
