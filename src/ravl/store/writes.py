"""Writes to the collection database, as methods of :class:`~ravl.store.db.Database`: an ingest
batch (new, changed, moved and unchanged files and their captions) in one transaction, caption
replacement, and deletion in bounded chunks. Every vector change reaches the change log through
the schema's triggers, so index caches catch up instead of rebuilding."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .codec import FEATURES_SEPARATE, SAME_AS_EMB, VectorCodec

#: photo metadata columns (schema step 5), as :class:`ravl.ingest.photo_meta.PhotoMeta` names them
PHOTO_COLUMNS = ("taken_at", "taken_offset", "lat", "lon", "camera")
_SET_PHOTO = f"UPDATE items SET {', '.join(c + '=?' for c in PHOTO_COLUMNS)}, photo_read=1 WHERE id=?"

#: items deleted per transaction: a big sync never holds the write lock for long, and each chunk is
#: whole or absent after a crash (re-running the sync finishes the job)
DELETE_CHUNK = 1000


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
    caption_sources: dict[str, str] = field(default_factory=dict)  # caption -> its source, when not ``source``
    photo: dict | None = None  # PHOTO_COLUMNS read from the file's EXIF (None: not read)


def uri_param(uri: str) -> str | bytes:
    """How a uri is stored: as text when it is valid UTF-8, else as the file name's raw bytes (a
    BLOB in the uri column; names that are not UTF-8 are kept losslessly and stay unique)."""
    try:
        uri.encode("utf-8")
        return uri
    except UnicodeEncodeError:
        return os.fsencode(uri)


class WritesMixin:
    """Methods of :class:`~ravl.store.db.Database` (which provides ``conn``, ``transaction`` and
    ``bump_generation``)."""

    if TYPE_CHECKING:
        @property
        def conn(self) -> sqlite3.Connection: ...
        @property
        def codec(self) -> VectorCodec: ...
        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def bump_generation(self, conn: sqlite3.Connection) -> None: ...

    def write_batch(self, new_items: Sequence[NewItem], touched: Sequence[tuple[int, int, int]] = (),
                    extra_captions: Sequence[tuple[int, str, np.ndarray, str]] = (),
                    on_skip: Callable[[str, str], None] | None = None, *,
                    moves: Sequence[tuple[int, str]] = (),
                    drop_captions: Sequence[tuple[int, str]] = (),
                    photos: Sequence[tuple[int, dict]] = ()) -> list[int | None]:
        """Upsert ``new_items`` (by uri), give moved items (id, new uri) their new uri, refresh
        (id, size, mtime_ns) of unchanged files, drop captions (item id, text) and add captions to
        existing items, and set the photo metadata of (id, PHOTO_COLUMNS dict) — all in ONE
        transaction. Returns the ids of ``new_items``; an item that cannot be stored is left out
        (``None``, reason to ``on_skip(uri, reason)``) without losing the rest of the batch."""
        ids: list[int | None] = []
        now = time.time()
        codec = self.codec
        blob = codec.encode
        separate = False  # any item stored with features of its own
        with self.transaction() as c:
            for it in new_items:
                c.execute("SAVEPOINT item")
                try:
                    item_id, own_features = self._upsert(c, it, now, codec)
                    ids.append(item_id)
                    separate = separate or own_features
                except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                        ValueError, OverflowError, TypeError) as exc:  # this record only; disk full etc. abort
                    c.execute("ROLLBACK TO item")
                    ids.append(None)
                    if on_skip:
                        on_skip(it.uri, f"cannot be stored ({type(exc).__name__}: {exc})"[:300])
                c.execute("RELEASE item")
            if separate:  # once per batch; never unset (see codec.FEATURES_SEPARATE)
                c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES(?, '1')", (FEATURES_SEPARATE,))
            c.executemany("UPDATE items SET uri=? WHERE id=?", [(uri_param(u), i) for i, u in moves])
            c.executemany("UPDATE items SET size=?, mtime_ns=? WHERE id=?", [(s, m, i) for i, s, m in touched])
            c.executemany(_SET_PHOTO, [(*(photo.get(k) for k in PHOTO_COLUMNS), i) for i, photo in photos])
            c.executemany("DELETE FROM captions WHERE item_id=? AND text=?", list(drop_captions))
            c.executemany("INSERT OR IGNORE INTO captions(item_id, text, source, emb) VALUES(?,?,?,?)",
                          [(i, text, src, blob(vec)) for i, text, vec, src in extra_captions])
            if any(i is not None for i in ids) or extra_captions or drop_captions or moves:
                self.bump_generation(c)
        return ids

    @staticmethod
    def _upsert(c: sqlite3.Connection, it: NewItem, now: float, codec: VectorCodec) -> tuple[int, bool]:
        """Write one item; its id, and whether its features were stored apart from its embedding."""
        uri = uri_param(it.uri)
        emb = codec.encode(it.embedding)
        feat = codec.encode_features(emb, it.features)  # stored once when they are the embedding
        row = c.execute("SELECT id FROM items WHERE uri=?", (uri,)).fetchone()
        if row:  # changed file: replace vectors, keep id and captions
            item_id = row[0]
            c.execute("UPDATE items SET sha256=?, size=?, mtime_ns=?, width=?, height=?, metadata=? WHERE id=?",
                      (it.sha256, it.size, it.mtime_ns, it.width, it.height, json.dumps(it.metadata), item_id))
            c.execute("UPDATE item_vectors SET emb=?, feat=? WHERE item_id=?", (emb, feat, item_id))
        else:
            cur = c.execute("INSERT INTO items(uri, sha256, size, mtime_ns, width, height, metadata, added_at) "
                            "VALUES(?,?,?,?,?,?,?,?)", (uri, it.sha256, it.size, it.mtime_ns, it.width,
                                                        it.height, json.dumps(it.metadata), now))
            item_id = cur.lastrowid
            assert item_id is not None
            c.execute("INSERT INTO item_vectors(item_id, emb, feat) VALUES(?,?,?)", (item_id, emb, feat))
        c.executemany("INSERT OR IGNORE INTO captions(item_id, text, source, emb) VALUES(?,?,?,?)",
                      [(item_id, text, it.caption_sources.get(text, it.source), codec.encode(vec))
                       for text, vec in it.captions])
        if it.photo is not None:
            c.execute(_SET_PHOTO, (*(it.photo.get(k) for k in PHOTO_COLUMNS), item_id))
        return item_id, feat != SAME_AS_EMB

    def replace_captions(self, source: str, batch: Sequence[tuple[int, Sequence[tuple[str, np.ndarray]], dict]]) -> int:
        """For each ``(item_id, [(text, vector), ...], metadata)``: drop the item's captions of
        ``source``, add the given ones and set its metadata — all in ONE transaction. Returns the
        number of captions added."""
        added = 0
        blob = self.codec.encode
        with self.transaction() as c:
            for item_id, captions, metadata in batch:
                c.execute("DELETE FROM captions WHERE item_id=? AND source=?", (item_id, source))
                rows = [(item_id, text, source, blob(vec)) for text, vec in captions]
                added += max(c.executemany("INSERT OR IGNORE INTO captions(item_id, text, source, emb) VALUES(?,?,?,?)",
                                           rows).rowcount, 0)
                c.execute("UPDATE items SET metadata=? WHERE id=?", (json.dumps(metadata), item_id))
            if batch:
                self.bump_generation(c)  # the caption index cache is rebuilt on next use
        return added

    def delete_items(self, item_ids: Sequence[int], chunk: int = DELETE_CHUNK,
                     on_chunk: Callable[[int], None] | None = None) -> int:
        """Delete items (their vectors and captions cascade, the change log records each) in
        transactions of at most ``chunk`` items; returns how many were deleted."""
        ids = sorted({int(i) for i in item_ids})
        done = 0
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            marks = ",".join("?" * len(part))
            with self.transaction() as c:
                n = c.execute(f"DELETE FROM items WHERE id IN ({marks})", part).rowcount
                if n:
                    self.bump_generation(c)
            done += n
            if on_chunk:
                on_chunk(done)
        return done

    def caption_sources(self) -> dict[int, dict[str, str]]:
        """item id -> {caption text: source} of every caption."""
        out: dict[int, dict[str, str]] = {}
        for item_id, text, source in self.conn.execute("SELECT item_id, text, source FROM captions ORDER BY id"):
            out.setdefault(item_id, {})[text] = source
        return out
