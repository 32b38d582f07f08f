"""SQLite schema and forward migrations, versioned with ``PRAGMA user_version``.

SQLite is the source of truth for everything, vectors included: a batch of items, captions and
their vectors is written in one transaction, so a crash (Ctrl-C, kill -9, power loss) leaves
either the whole batch or none of it. FAISS index files are caches rebuilt from here.
"""
from __future__ import annotations

import sqlite3

from ..errors import SchemaVersionError

_V1 = """
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE items(
  id       INTEGER PRIMARY KEY,
  uri      TEXT NOT NULL UNIQUE,
  sha256   TEXT NOT NULL,
  size     INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  width    INTEGER,
  height   INTEGER,
  metadata TEXT NOT NULL DEFAULT '{}',
  added_at REAL NOT NULL
);
CREATE INDEX items_sha256 ON items(sha256);
CREATE TABLE item_vectors(
  item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
  emb     BLOB NOT NULL,
  feat    BLOB NOT NULL
);
CREATE TABLE captions(
  id      INTEGER PRIMARY KEY,
  item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
  text    TEXT NOT NULL,
  source  TEXT NOT NULL DEFAULT '',
  emb     BLOB NOT NULL,
  UNIQUE(item_id, text)
);
CREATE INDEX captions_item ON captions(item_id);
"""

# Identity of this database (index caches are sealed to it, so a cache can never be used with a
# replaced database) and a token that changes with every write alongside ``generation``.
_V2 = """
INSERT OR IGNORE INTO meta(key, value) VALUES('collection_id', lower(hex(randomblob(16))));
INSERT OR IGNORE INTO meta(key, value) VALUES('state', lower(hex(randomblob(8))));
"""

# Keyword search (FTS5) over every caption, sidecar and OCR text; triggers keep it in the same
# transactions as the rows (deletes cascading from items included).
_V3_FTS = """
CREATE VIRTUAL TABLE captions_fts USING fts5(text, content='captions', content_rowid='id',
  tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER captions_fts_insert AFTER INSERT ON captions BEGIN
  INSERT INTO captions_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER captions_fts_delete AFTER DELETE ON captions BEGIN
  INSERT INTO captions_fts(captions_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER captions_fts_update AFTER UPDATE OF text ON captions BEGIN
  INSERT INTO captions_fts(captions_fts, rowid, text) VALUES ('delete', old.id, old.text);
  INSERT INTO captions_fts(rowid, text) VALUES (new.id, new.text);
END;
INSERT INTO captions_fts(captions_fts) VALUES ('rebuild');
"""

#: version -> SQL that brings a database from version-1 to version
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3_FTS}
LATEST = max(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version; refuses databases newer than this code."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > LATEST:
        raise SchemaVersionError(
            f"this collection uses schema version {current}, newer than this ravl understands ({LATEST}); "
            "upgrade ravl (pip install -U ravl) to open it"
        )
    return current


def _statements(script: str) -> list[str]:
    """Split a migration script into complete statements (triggers with inner ';' stay whole)."""
    out, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out


def migrate(conn: sqlite3.Connection, initial_meta: dict[str, object] | None = None) -> int:
    """Apply every pending forward migration in ONE transaction (a process killed part-way leaves
    the database as it was); refuse databases newer than this code. Two processes migrating at
    once serialise on the write lock, and the second finds nothing left to do. ``initial_meta``
    goes into ``meta`` in the same transaction when this call creates the schema."""
    if schema_version(conn) >= LATEST:
        return LATEST
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = schema_version(conn)
        for version in range(start + 1, LATEST + 1):
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
        if start == 0 and initial_meta:
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
                             [(k, str(v)) for k, v in initial_meta.items()])
        conn.execute(f"PRAGMA user_version = {LATEST}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return LATEST
