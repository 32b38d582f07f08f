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

# Every change to a stored vector (insert, update, delete -- cascades and raw SQL included) appends
# its row id here, so an index cache stamped with the last seq it covers is caught up from the rows
# it lacks instead of being rebuilt. Rows every cache already covers are pruned.
_CHANGE_LOG = """
CREATE TABLE vector_changes(
  seq    INTEGER PRIMARY KEY AUTOINCREMENT,
  target TEXT NOT NULL,            -- 'item' (item_vectors) or 'caption' (captions)
  row_id INTEGER NOT NULL
);
CREATE TRIGGER item_vectors_ins AFTER INSERT ON item_vectors BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES('item', NEW.item_id); END;
CREATE TRIGGER item_vectors_upd AFTER UPDATE ON item_vectors BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES('item', NEW.item_id); END;
CREATE TRIGGER item_vectors_del AFTER DELETE ON item_vectors BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES('item', OLD.item_id); END;
CREATE TRIGGER captions_ins AFTER INSERT ON captions BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES('caption', NEW.id); END;
CREATE TRIGGER captions_upd AFTER UPDATE OF emb ON captions BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES('caption', NEW.id); END;
CREATE TRIGGER captions_del AFTER DELETE ON captions BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES('caption', OLD.id); END;
INSERT OR IGNORE INTO meta(key, value) VALUES('collection_id', lower(hex(randomblob(16))));
"""

#: version -> SQL that brings a database from version-1 to version
MIGRATIONS: dict[int, str] = {1: _V1, 2: _CHANGE_LOG}
LATEST = max(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every pending forward migration; refuse databases newer than this code."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > LATEST:
        raise SchemaVersionError(
            f"this collection uses schema version {current}, newer than this ravl understands ({LATEST}); "
            "upgrade ravl (pip install -U ravl) to open it"
        )
    for version in range(current + 1, LATEST + 1):
        conn.executescript("BEGIN IMMEDIATE;" + MIGRATIONS[version] + f"PRAGMA user_version = {version};COMMIT;")
    return LATEST
