"""The collection database: items, captions and their vectors in one SQLite file (WAL mode)."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CollectionError
from .schema import migrate

DB_NAME = "ravl.sqlite"


@dataclass(frozen=True)
class ItemRow:
    id: int
    uri: str
    sha256: str
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    metadata: dict
    captions: tuple[str, ...] = ()


@dataclass
class NewItem:
    """One image ready to be written: file facts, vectors and captions (with their vectors)."""
    uri: str
    sha256: str
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    embedding: np.ndarray
    features: np.ndarray
    metadata: dict = field(default_factory=dict)
    captions: list[tuple[str, np.ndarray]] = field(default_factory=list)
    source: str = ""


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class Database:
    """One SQLite file; each thread gets its own connection, so a reader never sees another
    thread's uncommitted transaction (WAL gives every connection a consistent snapshot)."""

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            conn = self.conn
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise CollectionError(f"cannot open collection database {self.path}: {exc}; "
                                  "is this a ravl collection folder?") from exc

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=30)
            else:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt included)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every read inside sees one consistent state of the database."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    # --- meta ---------------------------------------------------------------------------------
    def get_meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, object], conn: sqlite3.Connection | None = None) -> None:
        target = conn or self.conn
        target.executemany("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                           [(k, str(v)) for k, v in values.items()])

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def bump_generation(self, conn: sqlite3.Connection) -> None:
        """Mark the vectors changed (inside ``conn``'s transaction): index caches rebuild on next use."""
        conn.execute("INSERT INTO meta(key, value) VALUES('generation', '1') ON CONFLICT(key) "
                     "DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    # --- vector change log (index caches catch up from it) -------------------------------------
    def change_seq(self) -> int:
        """The last change-log sequence number ever assigned (0 for none)."""
        try:
            row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='vector_changes'").fetchone()
        except sqlite3.OperationalError:  # a schema-1 database opened read-only: no change log
            return 0
        return int(row[0]) if row else 0

    def changes_pruned_through(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='changes_pruned_through'").fetchone()
        return int(row[0]) if row else 0

    def changed_rows(self, target: str, after_seq: int) -> list[int]:
        """Distinct ids of ``target`` ('item' | 'caption') whose vectors changed after ``after_seq``."""
        rows = self.conn.execute("SELECT DISTINCT row_id FROM vector_changes WHERE target=? AND seq>? ORDER BY row_id",
                                 (target, after_seq))
        return [r[0] for r in rows]

    def prune_changes(self, through_seq: int) -> None:
        """Forget changes every index cache already covers."""
        with self.transaction() as c:
            c.execute("DELETE FROM vector_changes WHERE seq <= ?", (through_seq,))
            c.execute("INSERT INTO meta(key, value) VALUES('changes_pruned_through', ?) ON CONFLICT(key) DO UPDATE "
                      "SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))", (through_seq,))

    # --- reads --------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        items = self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        caps = self.conn.execute("SELECT COUNT(*) FROM captions").fetchone()[0]
        return {"images": items, "captions": caps}

    def file_states(self) -> dict[str, tuple[int, int, int, str]]:
        """uri -> (id, size, mtime_ns, sha256) for the incremental fast path."""
        rows = self.conn.execute("SELECT uri, id, size, mtime_ns, sha256 FROM items")
        return {uri: (i, size, mt, sha) for uri, i, size, mt, sha in rows}

    def captions_by_item(self, item_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
        if item_ids is None:
            rows = self.conn.execute("SELECT item_id, text FROM captions ORDER BY id")
        else:
            ids = list(item_ids)
            if not ids:
                return {}
            marks = ",".join("?" * len(ids))
            rows = self.conn.execute(f"SELECT item_id, text FROM captions WHERE item_id IN ({marks}) ORDER BY id", ids)
        out: dict[int, list[str]] = {}
        for item_id, text in rows:
            out.setdefault(item_id, []).append(text)
        return out

    def items(self, ids: Sequence[int]) -> dict[int, ItemRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT id, uri, sha256, size, mtime_ns, width, height, metadata FROM items WHERE id IN ({marks})", list(ids))
        caps = self.captions_by_item(ids)
        return {r[0]: ItemRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], metadata=json.loads(r[7]),
                               captions=tuple(caps.get(r[0], ()))) for r in rows}

    def item_by_uri(self, uri: str) -> ItemRow | None:
        row = self.conn.execute("SELECT id FROM items WHERE uri=?", (uri,)).fetchone()
        return self.items([row[0]])[row[0]] if row else None

    def caption_rows(self, caption_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        """caption id -> (text, item_id, item uri)."""
        if not caption_ids:
            return {}
        marks = ",".join("?" * len(caption_ids))
        rows = self.conn.execute(
            f"SELECT c.id, c.text, c.item_id, i.uri FROM captions c JOIN items i ON i.id=c.item_id WHERE c.id IN ({marks})",
            list(caption_ids))
        return {cid: (text, item_id, uri) for cid, text, item_id, uri in rows}

    def item_vectors(self, item_ids: Sequence[int] | None = None, which: str = "emb") -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for ``which`` in {'emb', 'feat'}; all items when ``item_ids`` is None."""
        col = {"emb": "emb", "feat": "feat"}[which]
        if item_ids is None:
            rows = self.conn.execute(f"SELECT item_id, {col} FROM item_vectors ORDER BY item_id").fetchall()
        else:
            marks = ",".join("?" * len(item_ids))
            rows = self.conn.execute(f"SELECT item_id, {col} FROM item_vectors WHERE item_id IN ({marks})",
                                     list(item_ids)).fetchall()
        return _stack(rows)

    def caption_vectors(self, caption_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if caption_ids is None:
            rows = self.conn.execute("SELECT id, emb FROM captions ORDER BY id").fetchall()
        else:
            marks = ",".join("?" * len(caption_ids))
            rows = self.conn.execute(f"SELECT id, emb FROM captions WHERE id IN ({marks})", list(caption_ids)).fetchall()
        return _stack(rows)

    def caption_ids_for_items(self, item_ids: Sequence[int], exclude_source: str | None = None) -> dict[int, list[int]]:
        """item id -> its caption ids, optionally leaving out captions of one source (e.g. 'ocr')."""
        if not item_ids:
            return {}
        marks = ",".join("?" * len(item_ids))
        out: dict[int, list[int]] = {}
        for cid, item_id in self.conn.execute(
                f"SELECT id, item_id FROM captions WHERE item_id IN ({marks}) AND source != ? ORDER BY id",
                [*item_ids, exclude_source or ""]):
            out.setdefault(item_id, []).append(cid)
        return out

    def export_rows(self, chunk: int) -> Iterator[list[dict]]:
        """Every item with its vectors and captions (with theirs), ``chunk`` items at a time, by id."""
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT i.id, i.uri, i.sha256, i.size, i.mtime_ns, i.width, i.height, i.metadata, v.emb, v.feat "
                "FROM items i JOIN item_vectors v ON v.item_id = i.id WHERE i.id > ? ORDER BY i.id LIMIT ?",
                (last, chunk)).fetchall()
            if not rows:
                return
            caps: dict[int, list[tuple[str, str, bytes]]] = {}
            for item_id, text, source, emb in self.conn.execute(
                    "SELECT item_id, text, source, emb FROM captions WHERE item_id BETWEEN ? AND ? ORDER BY id",
                    (rows[0][0], rows[-1][0])):
                caps.setdefault(item_id, []).append((text, source, emb))
            out = []
            for r in rows:
                mine = caps.get(r[0], [])
                out.append({"id": r[0], "uri": r[1], "sha256": r[2], "size": r[3], "mtime_ns": r[4], "width": r[5],
                            "height": r[6], "metadata": r[7], "embedding": np.frombuffer(r[8], np.float32),
                            "features": np.frombuffer(r[9], np.float32), "captions": [c[0] for c in mine],
                            "caption_sources": [c[1] for c in mine],
                            "caption_embeddings": [np.frombuffer(c[2], np.float32) for c in mine]})
            yield out
            last = rows[-1][0]

    # --- writes -------------------------------------------------------------------------------
    def write_batch(self, new_items: Sequence[NewItem], touched: Sequence[tuple[int, int, int]] = (),
                    extra_captions: Sequence[tuple[int, str, np.ndarray, str]] = ()) -> list[int]:
        """Upsert ``new_items`` (by uri), refresh (id, size, mtime_ns) of unchanged files, and add
        captions to existing items — all in ONE transaction. Returns the ids of ``new_items``."""
        ids: list[int] = []
        now = time.time()
        with self.transaction() as c:
            for it in new_items:
                row = c.execute("SELECT id FROM items WHERE uri=?", (it.uri,)).fetchone()
                if row:  # changed file: replace vectors, keep id and captions
                    item_id = row[0]
                    c.execute("UPDATE items SET sha256=?, size=?, mtime_ns=?, width=?, height=?, metadata=? WHERE id=?",
                              (it.sha256, it.size, it.mtime_ns, it.width, it.height, json.dumps(it.metadata), item_id))
                    c.execute("UPDATE item_vectors SET emb=?, feat=? WHERE item_id=?",
                              (_blob(it.embedding), _blob(it.features), item_id))
                else:
                    cur = c.execute("INSERT INTO items(uri, sha256, size, mtime_ns, width, height, metadata, added_at) "
                                    "VALUES(?,?,?,?,?,?,?,?)", (it.uri, it.sha256, it.size, it.mtime_ns, it.width,
                                                                it.height, json.dumps(it.metadata), now))
                    item_id = cur.lastrowid
                    c.execute("INSERT INTO item_vectors(item_id, emb, feat) VALUES(?,?,?)",
                              (item_id, _blob(it.embedding), _blob(it.features)))
                ids.append(item_id)
                c.executemany("INSERT OR IGNORE INTO captions(item_id, text, source, emb) VALUES(?,?,?,?)",
                              [(item_id, text, it.source, _blob(vec)) for text, vec in it.captions])
            c.executemany("UPDATE items SET size=?, mtime_ns=? WHERE id=?", [(s, m, i) for i, s, m in touched])
            c.executemany("INSERT OR IGNORE INTO captions(item_id, text, source, emb) VALUES(?,?,?,?)",
                          [(i, text, src, _blob(vec)) for i, text, vec, src in extra_captions])
            if new_items or extra_captions:
                self.bump_generation(c)
        return ids

    def delete_items(self, item_ids: Sequence[int]) -> int:
        if not item_ids:
            return 0
        marks = ",".join("?" * len(item_ids))
        with self.transaction() as c:
            n = c.execute(f"DELETE FROM items WHERE id IN ({marks})", list(item_ids)).rowcount
            if n:
                self.bump_generation(c)
        return n


def _stack(rows: list) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return ids, vecs
