"""Bulk reads over a whole collection: every item for ``ravl export``, the caption/image pairs
``ravl tune`` learns from, keyword evidence and a caption sample for search calibration. Plain
functions over a :class:`~ravl.store.db.Database`."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .codec import FEAT_SQL
from .db import Database


def export_rows(db: Database, chunk: int) -> Iterator[list[dict]]:
    """Every item with its vectors and captions (with theirs), ``chunk`` items at a time, by id."""
    last = -1
    codec = db.codec
    while True:
        rows = db.conn.execute(
            "SELECT i.id, i.uri, i.sha256, i.size, i.mtime_ns, i.width, i.height, i.metadata, v.emb, v.feat "
            "FROM items i JOIN item_vectors v ON v.item_id = i.id WHERE i.id > ? ORDER BY i.id LIMIT ?",
            (last, chunk)).fetchall()
        if not rows:
            return
        caps: dict[int, list[tuple[str, str, bytes]]] = {}
        for item_id, text, source, emb in db.conn.execute(
                "SELECT item_id, text, source, emb FROM captions WHERE item_id BETWEEN ? AND ? ORDER BY id",
                (rows[0][0], rows[-1][0])):
            caps.setdefault(item_id, []).append((text, source, emb))
        out = []
        for r in rows:
            mine = caps.get(r[0], [])
            out.append({"id": r[0], "uri": r[1], "sha256": r[2], "size": r[3], "mtime_ns": r[4], "width": r[5],
                        "height": r[6], "metadata": r[7], "embedding": codec.decode(r[8]),
                        "features": codec.decode(r[9] or r[8]), "captions": [c[0] for c in mine],
                        "caption_sources": [c[1] for c in mine],
                        "caption_embeddings": [codec.decode(c[2]) for c in mine]})
        yield out
        last = rows[-1][0]


def training_pairs(db: Database) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(owner item ids, texts, text vectors) of every caption not read by OCR, in id order."""
    rows = db.conn.execute("SELECT item_id, text, emb FROM captions WHERE source != 'ocr' ORDER BY id").fetchall()
    owners = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = db.codec.decode_rows([r[2] for r in rows])
    return owners, [r[1] for r in rows], vecs


def item_hashes(db: Database) -> dict[int, str]:
    return dict(db.conn.execute("SELECT id, sha256 FROM items").fetchall())


def keyword_evidence(db: Database, terms: Sequence[str], limit: int):
    """Ranked rows, document frequencies, caption count and the terms each row's caption holds
    (see :meth:`.keywords.KeywordSearch.evidence`), from one database state."""
    with db.snapshot() as conn:
        return db._keywords.evidence(conn, terms, limit)


def caption_sample(db: Database, n: int, seed: int, exclude_source: str | None = None) -> list[tuple[int, int, str]]:
    """Up to ``n`` (caption id, item id, text): a seeded pseudo-random sample, in id order."""
    rows = db.conn.execute("SELECT id, item_id, text FROM captions WHERE source IS NOT ? "
                           "ORDER BY (id * 2654435761 + ?) % 4294967296 LIMIT ?", (exclude_source, seed, n)).fetchall()
    return sorted((int(a), int(b), str(t)) for a, b, t in rows)


def item_sample(db: Database, n: int, seed: int) -> list[int]:
    """Up to ``n`` item ids: a seeded pseudo-random sample, in id order."""
    rows = db.conn.execute("SELECT id FROM items ORDER BY (id * 2654435761 + ?) % 4294967296 LIMIT ?", (seed, n))
    return sorted(int(r[0]) for r in rows)


_VECTOR_TABLES = {"emb": ("item_vectors", "item_id", "emb"), "feat": ("item_vectors", "item_id", FEAT_SQL),
                  "captions": ("captions", "id", "emb")}


def id_pages(db: Database, which: str, chunk: int) -> Iterator[list[int]]:
    """Every id of the ``which`` vectors ('emb', 'feat' of items; 'captions'), ``chunk`` at a time, ascending."""
    table, key, _ = _VECTOR_TABLES[which]
    last = -(2 ** 63)
    while True:
        ids = [int(r[0]) for r in db.conn.execute(f"SELECT {key} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
                                                  (last, chunk))]
        if not ids:
            return
        yield ids
        last = ids[-1]


def vector_pages(db: Database, which: str, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of every ``which`` vector, ``chunk`` rows at a time in id order: a build reads
    the collection in pages, never whole (1M x 384 read at once took 4.8 GB of RAM)."""
    table, key, col = _VECTOR_TABLES[which]
    last = -(2 ** 63)
    while True:
        rows = db.conn.execute(f"SELECT {key}, {col} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
                               (last, chunk)).fetchall()
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = db.codec.decode_rows([r[1] for r in rows])
        del rows
        yield ids, vecs
        last = int(ids[-1])
