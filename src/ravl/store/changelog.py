"""The vector change log and the generation history (schema step 4), as methods of
:class:`~ravl.store.db.Database`: what an index cache stamped with an older database state must
apply to catch up, and whether that state is verifiably one this database has been through."""
from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

#: change-log target of each index
TARGETS = {"images": "item", "features": "item", "captions": "caption"}


class ChangeLogMixin:
    """Methods of :class:`~ravl.store.db.Database` (which provides ``conn`` and ``transaction``)."""

    if TYPE_CHECKING:
        @property
        def conn(self) -> sqlite3.Connection: ...
        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def index_binding(self, name: str) -> dict[str, object]:
        """What an index cache over ``name`` ('images', 'features', 'captions') is built from:
        database identity, generation, write token, last change-log seq and row count (call inside
        :meth:`snapshot`)."""
        meta = dict(self.conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('collection_id', 'generation', 'state')").fetchall())
        table = "captions" if name == "captions" else "item_vectors"
        count = self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return {"collection_id": meta.get("collection_id"), "generation": int(meta.get("generation", 0)),
                "state": meta.get("state"), "seq": self.change_seq(), "index": name, "count": count}

    def change_seq(self) -> int | None:
        """The last change-log sequence number ever assigned (0: none yet); None for a database
        without a change log (created before it and opened read-only)."""
        try:
            row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='vector_changes'").fetchone()
            if row is None:
                self.conn.execute("SELECT 1 FROM vector_changes LIMIT 1")  # the table exists, nothing logged yet
        except sqlite3.OperationalError:
            return None
        return int(row[0]) if row else 0

    def changes_pruned_through(self) -> int:
        """Change-log rows up to this sequence number are gone."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='changes_pruned_through'").fetchone()
        return int(row[0]) if row else 0

    def past_state(self, generation: int) -> tuple[str, int] | None:
        """(state token, last change seq) this database had at ``generation``, if it recorded it."""
        try:
            row = self.conn.execute("SELECT state, seq FROM generations WHERE generation=?", (generation,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return (str(row[0]), int(row[1])) if row else None

    def record_generation(self, conn: sqlite3.Connection) -> None:
        """Record the generation just entered with its state token and last change seq (inside the
        writing transaction, after its vector changes)."""
        conn.execute(
            "INSERT OR REPLACE INTO generations(generation, state, seq) SELECT "
            "(SELECT CAST(value AS INTEGER) FROM meta WHERE key='generation'), (SELECT value FROM meta WHERE "
            "key='state'), COALESCE((SELECT seq FROM sqlite_sequence WHERE name='vector_changes'), 0)")

    def changed_rows(self, index: str, after_seq: int) -> list[int]:
        """Distinct ids whose vectors in ``index``'s table changed after ``after_seq``."""
        rows = self.conn.execute("SELECT DISTINCT row_id FROM vector_changes WHERE target=? AND seq>? ORDER BY row_id",
                                 (TARGETS[index], after_seq))
        return [int(r[0]) for r in rows]

    def change_count(self, index: str, after_seq: int) -> int:
        """How many change-log rows of ``index``'s table lie after ``after_seq``."""
        return int(self.conn.execute("SELECT COUNT(*) FROM vector_changes WHERE target=? AND seq>?",
                                     (TARGETS[index], after_seq)).fetchone()[0])

    def prune_changes(self, through_seq: int) -> None:
        """Forget change-log rows up to ``through_seq`` and the history of generations before it
        (no cache older than that can be caught up any more)."""
        with self.transaction() as c:
            c.execute("DELETE FROM vector_changes WHERE seq <= ?", (through_seq,))
            c.execute("DELETE FROM generations WHERE seq < ?", (through_seq,))
            c.execute("INSERT INTO meta(key, value) VALUES('changes_pruned_through', ?) ON CONFLICT(key) DO UPDATE "
                      "SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))", (str(through_seq),))
