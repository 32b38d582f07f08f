"""The collection database: items, captions and their vectors in one SQLite file (WAL mode)."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .changelog import ChangeLogMixin
from .codec import FEAT_SQL, VectorCodec, codec_for
from .index_meta import IndexMetaMixin
from .keywords import KeywordSearch
from .readonly import check_no_pending_log, writable
from .schema import LATEST, migrate, schema_version
from .sqlite_errors import DB_NAME, sqlite_errors, translating_sqlite_errors  # noqa: F401  (re-exported)
from .writes import NewItem, WritesMixin, uri_param  # noqa: F401  (re-exported)


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


def uri_value(value: str | bytes) -> str:
    """A stored uri back as the str Python uses for that path (undecodable bytes as surrogates)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value
#: caption source of text read from the image (``ravl index --ocr``): it describes the image's print,
#: not its scene, so it is never used as a caption of a neighbour
OCR_SOURCE = "ocr"
_SQL_CHUNK = 5000  # ids per SQL "IN (...)" query, well under SQLite's variable limit


class Database(WritesMixin, IndexMetaMixin, ChangeLogMixin):
    """One SQLite file; each thread gets its own connection, so a reader never sees another
    thread's uncommitted transaction (WAL gives every connection a consistent snapshot)."""

    def __init__(self, path: Path, *, readonly: bool = False, initial_meta: dict[str, object] | None = None):
        """``initial_meta`` is written in the same transaction that creates the schema of a new
        database: a database has its tables and its metadata, or nothing."""
        self.path = Path(path)
        self.readonly = readonly
        #: opened with SQLite's ``immutable=1``: a reader of a collection it cannot write (a read-only
        #: mount, a DVD, a container image): no lock, no -shm file, no index cache written
        self.immutable = readonly and not writable(self.path)
        if self.immutable:
            check_no_pending_log(self.path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._keywords = KeywordSearch()
        self._codec: VectorCodec | None = None
        try:
            with sqlite_errors(self.path):
                conn = self.conn
                if not readonly:
                    conn.execute("PRAGMA journal_mode=WAL")
                    migrate(conn, initial_meta)
                elif schema_version(conn) < LATEST and not self.immutable:
                    self._upgrade_for_reading()
        except BaseException:
            self.close()
            raise

    def _upgrade_for_reading(self) -> None:
        """Apply pending forward migrations before a read-only open (reads need the current
        tables); a file this process cannot write is read as it is."""
        try:
            rw = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error:
            return
        try:
            migrate(rw)
        except sqlite3.OperationalError:
            pass  # read-only file or folder
        finally:
            rw.close()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                flag = "immutable=1" if self.immutable else "mode=ro"
                conn = sqlite3.connect(f"file:{quote(os.fsencode(self.path))}?{flag}", uri=True, isolation_level=None,
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
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt included);
        SQLite failures (disk full, locked, damaged) become CollectionErrors."""
        with sqlite_errors(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    @property
    def codec(self) -> VectorCodec:
        """How this database stores vectors (``meta.vector_dtype``, fixed when it was created)."""
        if self._codec is None:
            meta = dict(self.conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('vector_dtype', 'encoder_spec')").fetchall())
            codec = codec_for(meta)
            if "encoder_spec" not in meta:
                return codec  # creation not finished: finish_meta may still record the dtype
            self._codec = codec
        return self._codec

    # --- meta ---------------------------------------------------------------------------------
    def get_meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, object], conn: sqlite3.Connection | None = None) -> None:
        target = conn or self.conn
        target.executemany("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                           [(k, str(v)) for k, v in values.items()])

    def finish_meta(self, initial: dict[str, object]) -> dict[str, str]:
        """Write ``initial`` metadata unless another process already has (finishing an interrupted
        creation); returns the stored metadata."""
        with self.transaction() as c:
            if "encoder_spec" not in dict(c.execute("SELECT key, value FROM meta").fetchall()):
                self.set_meta(initial, c)
            self._codec = None
            return dict(c.execute("SELECT key, value FROM meta").fetchall())

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def bump_generation(self, conn: sqlite3.Connection) -> None:
        """Mark the vectors changed (inside ``conn``'s transaction, after its changes): index caches
        catch up (or rebuild) on next use. ``state`` becomes a fresh random token too, so a restored
        backup that later reaches the same generation number still never matches a cache built from
        another history; the new (generation, state, seq) goes into the history."""
        conn.execute("INSERT INTO meta(key, value) VALUES('generation', '1') ON CONFLICT(key) "
                     "DO UPDATE SET value = CAST(value AS INTEGER) + 1")
        conn.execute("INSERT INTO meta(key, value) VALUES('state', lower(hex(randomblob(8)))) "
                     "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
        self.record_generation(conn)

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one consistent state of the database."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # --- reads --------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        items = self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        caps = self.conn.execute("SELECT COUNT(*) FROM captions").fetchone()[0]
        return {"images": items, "captions": caps}

    def file_states(self) -> dict[str, tuple[int, int, int, str]]:
        """uri -> (id, size, mtime_ns, sha256) for the incremental fast path."""
        rows = self.conn.execute("SELECT uri, id, size, mtime_ns, sha256 FROM items")
        return {uri_value(uri): (i, size, mt, sha) for uri, i, size, mt, sha in rows}

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
        out: dict[int, ItemRow] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT id, uri, sha256, size, mtime_ns, width, height, metadata FROM items WHERE id IN ({marks})", chunk)
            caps = self.captions_by_item(chunk)
            out.update({r[0]: ItemRow(r[0], uri_value(r[1]), r[2], r[3], r[4], r[5], r[6], metadata=json.loads(r[7]),
                                      captions=tuple(caps.get(r[0], ()))) for r in rows})
        return out

    def item_metadata(self, item_ids: Iterable[int] | None = None) -> list[tuple[int, str, dict]]:
        """(id, uri, metadata) of every item (or of ``item_ids``), by id."""
        rows = self.conn.execute("SELECT id, uri, metadata FROM items ORDER BY id").fetchall()
        wanted = None if item_ids is None else set(item_ids)
        return [(i, uri_value(uri), json.loads(meta or "{}")) for i, uri, meta in rows if wanted is None or i in wanted]

    def item_by_uri(self, uri: str) -> ItemRow | None:
        row = self.conn.execute("SELECT id FROM items WHERE uri=?", (uri_param(uri),)).fetchone()
        return self.items([row[0]])[row[0]] if row else None

    def caption_rows(self, caption_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        """caption id -> (text, item_id, item uri)."""
        out: dict[int, tuple[str, int, str]] = {}
        for chunk in _chunks(caption_ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT c.id, c.text, c.item_id, i.uri FROM captions c JOIN items i ON i.id=c.item_id "
                f"WHERE c.id IN ({marks})", chunk)
            out.update({cid: (text, item_id, uri_value(uri)) for cid, text, item_id, uri in rows})
        return out

    def item_vectors(self, item_ids: Sequence[int] | None = None, which: str = "emb") -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for ``which`` in {'emb', 'feat'}; all items when ``item_ids`` is None."""
        col = {"emb": "emb", "feat": FEAT_SQL}[which]
        if item_ids is None:
            rows = self.conn.execute(f"SELECT item_id, {col} FROM item_vectors ORDER BY item_id").fetchall()
        else:
            rows = []
            for chunk in _chunks(item_ids):
                marks = ",".join("?" * len(chunk))
                rows += self.conn.execute(f"SELECT item_id, {col} FROM item_vectors WHERE item_id IN ({marks})",
                                          chunk).fetchall()
        return self._stack(rows)

    def caption_vectors(self, caption_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if caption_ids is None:
            rows = self.conn.execute("SELECT id, emb FROM captions ORDER BY id").fetchall()
        else:
            rows = []
            for chunk in _chunks(caption_ids):
                marks = ",".join("?" * len(chunk))
                rows += self.conn.execute(f"SELECT id, emb FROM captions WHERE id IN ({marks})", chunk).fetchall()
        return self._stack(rows)

    def _stack(self, rows: list) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 vectors) of (id, stored blob) rows."""
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, self.codec.decode_rows([r[1] for r in rows])

    def caption_ids_for_items(self, item_ids: Sequence[int], exclude_source: str | None = None) -> dict[int, list[int]]:
        """item id -> its caption ids, optionally leaving out captions of one source (e.g. 'ocr')."""
        if not item_ids:
            return {}
        marks = ",".join("?" * len(item_ids))
        where, args = (" AND source != ?", [*item_ids, exclude_source]) if exclude_source else ("", list(item_ids))
        out: dict[int, list[int]] = {}
        for cid, item_id in self.conn.execute(
                f"SELECT id, item_id FROM captions WHERE item_id IN ({marks}){where} ORDER BY id", args):
            out.setdefault(item_id, []).append(cid)
        return out

    def has_keyword_index(self) -> bool:
        """False for a collection created before keyword search that was only opened read-only since."""
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE name='captions_fts'").fetchone() is not None

    def keyword_search(self, terms: Sequence[str], limit: int) -> list[tuple[int, int, float]]:
        """(caption id, item id, BM25 score, higher is better), best first (see :mod:`.keywords`)."""
        with self.snapshot():  # the memo of common words and the ranking see one database state
            return self._keywords.search(self.conn, terms, limit)

    # --- writes -------------------------------------------------------------------------------
    def set_bridge(self, name: str | None, sha256: str | None) -> None:
        """Record (or with None, forget) the tuned bridge file in use, and mark the vectors changed."""
        with self.transaction() as c:
            if name is None:
                c.execute("DELETE FROM meta WHERE key IN ('bridge_file', 'bridge_sha256')")
            else:
                self.set_meta({"bridge_file": name, "bridge_sha256": sha256}, c)
            self.bump_generation(c)


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    """``ids`` in pieces small enough for one ``IN (...)`` query (SQLite limits its variables)."""
    ids = [int(i) for i in ids]
    return [ids[start:start + _SQL_CHUNK] for start in range(0, len(ids), _SQL_CHUNK)]

