"""SQLite schema and forward migrations, versioned with ``PRAGMA user_version``.

SQLite is the source of truth for everything, vectors included: a batch of items, captions and
their vectors is written in one transaction, so a crash (Ctrl-C, kill -9, power loss) leaves
either the whole batch or none of it. FAISS index files are caches of it, caught up from the
change log (``vector_changes``) or rebuilt from here.
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

# Incremental index updates (docs/scale.md, "Incremental updates"). Every change to a stored vector
# (insert, update, delete: cascades and raw SQL included) appends its row id to ``vector_changes``,
# so an index cache stamped with the last ``seq`` it covers is caught up from the rows it lacks
# instead of being rebuilt. ``generations`` records, for every generation this database has been
# through, its random ``state`` token and the last ``seq`` then: a cache is caught up only when its
# (generation, state, seq) is one of this database's own past states (a copy of the database that
# diverged after the cache was written has other tokens), and only while the log still reaches back
# that far (``meta.changes_pruned_through``).
_V4_CHANGES = """
CREATE TABLE vector_changes(
  seq    INTEGER PRIMARY KEY AUTOINCREMENT,
  target TEXT NOT NULL,
  row_id INTEGER NOT NULL
);
CREATE INDEX vector_changes_target ON vector_changes(target, seq);
-- COUNT(*) of item_vectors walks every (vector-sized) row without it: 0.1 s per 100k rows
CREATE INDEX item_vectors_count ON item_vectors(item_id);
CREATE TRIGGER item_vectors_log_insert AFTER INSERT ON item_vectors BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES ('item', new.item_id);
END;
CREATE TRIGGER item_vectors_log_update AFTER UPDATE ON item_vectors BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES ('item', old.item_id);
  INSERT INTO vector_changes(target, row_id) VALUES ('item', new.item_id);
END;
CREATE TRIGGER item_vectors_log_delete AFTER DELETE ON item_vectors BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES ('item', old.item_id);
END;
CREATE TRIGGER captions_log_insert AFTER INSERT ON captions BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES ('caption', new.id);
END;
CREATE TRIGGER captions_log_update AFTER UPDATE OF id, emb ON captions BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES ('caption', old.id);
  INSERT INTO vector_changes(target, row_id) VALUES ('caption', new.id);
END;
CREATE TRIGGER captions_log_delete AFTER DELETE ON captions BEGIN
  INSERT INTO vector_changes(target, row_id) VALUES ('caption', old.id);
END;
CREATE TABLE generations(
  generation INTEGER PRIMARY KEY,
  state      TEXT NOT NULL,
  seq        INTEGER NOT NULL
);
INSERT INTO generations(generation, state, seq)
  SELECT COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key='generation'), 0), value, 0
  FROM meta WHERE key='state';
"""

# Photo metadata read at ingest (EXIF), as columns that filters use through indexes: when the photo
# was taken (wall-clock seconds where it was taken, as if UTC, so "2019-06-01" means that local
# day; ``taken_offset`` minutes east of UTC when the EXIF says), where (WGS84 degrees), the camera
# ("Make Model"); ``photo_read`` = 1 once the file's metadata was read (older items are back-filled
# once by the next ingest that sees them unchanged). The folder filter uses the uri index.
_V5_PHOTOS = """
ALTER TABLE items ADD COLUMN taken_at REAL;
ALTER TABLE items ADD COLUMN taken_offset INTEGER;
ALTER TABLE items ADD COLUMN lat REAL;
ALTER TABLE items ADD COLUMN lon REAL;
ALTER TABLE items ADD COLUMN camera TEXT;
ALTER TABLE items ADD COLUMN photo_read INTEGER NOT NULL DEFAULT 0;
CREATE INDEX items_taken ON items(taken_at);
CREATE INDEX items_geo ON items(lat, lon);
CREATE INDEX items_camera ON items(camera COLLATE NOCASE);
"""

# Storing less (docs/scale.md, "Storing less"): ``meta.vector_dtype`` names how every vector blob
# is encoded (``float32``, or ``float16`` for a collection created so; see :mod:`.codec`), and an
# empty ``item_vectors.feat`` blob means "the same as ``emb``" (features stored once). A database
# from before holds float32 blobs and full features: it is recorded as float32. The version bump
# also keeps an older ravl from misreading float16 blobs or an empty ``feat``.
_V6_STORE_LESS = """
INSERT OR IGNORE INTO meta(key, value) VALUES('vector_dtype', 'float32');
"""

# One index for features stored once (docs/scale.md, "Storing less"): ``meta.features_separate``
# is set once any item holds features of its own (:data:`.codec.FEATURES_SEPARATE`, kept by the
# write path); while it is absent the ``features`` index is the ``images`` index. A database that
# already holds such an item gets it here (one scan until the first non-empty ``feat``: the first
# row of any collection from before step 6).
_V7_FEATURES_SEPARATE = """
INSERT OR IGNORE INTO meta(key, value)
  SELECT 'features_separate', '1' WHERE EXISTS (SELECT 1 FROM item_vectors WHERE length(feat) > 0);
"""

#: version -> SQL that brings a database from version-1 to version
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3_FTS, 4: _V4_CHANGES, 5: _V5_PHOTOS, 6: _V6_STORE_LESS,
                              7: _V7_FEATURES_SEPARATE}
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
