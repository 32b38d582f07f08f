"""Collection creation is atomic, a half-created collection is finished by the next writer (and
explained to readers), concurrent first runs serialise on the writer lock, and SQLite failures
are one-line CollectionErrors."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.errors import CollectionError, CollectionNotFoundError, SchemaVersionError
from ravl.ingest.pipeline import index_sources
from ravl.store.db import DB_NAME, Database

SUBPROCESS = ("import sys, time, fakes; from ravl import registry; "
              "registry.register('encoders', 'testcolour', fakes.create); "
              "from ravl.collection import open_collection; ")


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}


@pytest.fixture
def photos(tmp_path):
    for name, rgb in {"red": (255, 0, 0), "blue": (0, 0, 255)}.items():
        make_image(tmp_path / "p" / f"{name}.png", rgb)
    return tmp_path / "p"


@pytest.mark.parametrize("state", ["empty file", "tables, no metadata"])
def test_half_created_collection_is_explained_then_finished(tmp_path, photos, colour_spec, state):
    coll_dir = tmp_path / "c"
    coll_dir.mkdir()
    if state == "empty file":  # killed right after sqlite created the file
        (coll_dir / DB_NAME).write_bytes(b"")
    else:  # an older ravl killed between its schema and metadata transactions
        Database(coll_dir / DB_NAME).close()
    for readonly in (True, False):
        with pytest.raises(CollectionNotFoundError, match="creation was interrupted.*ravl index"):
            open_collection(coll_dir, readonly=readonly)
    with open_collection(coll_dir, encoder=colour_spec, create=True) as coll:
        assert index_sources(coll, [photos]).added == 2
    with open_collection(coll_dir, readonly=True) as coll:
        assert coll.search_text(["red"], k=1)[0][0].uri.endswith("red.png")
        assert coll.info()["encoder"] == colour_spec


def test_new_database_has_schema_and_metadata_together(tmp_path, colour_spec):
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        meta = coll._db.get_meta()
    assert meta["encoder_spec"] == colour_spec and len(meta["collection_id"]) == 32
    conn = sqlite3.connect(tmp_path / "c" / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 2
    conn.close()


def test_concurrent_first_runs_wait_for_each_other(tmp_path):
    coll_dir = tmp_path / "c"
    holder = subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS + f"c = open_collection({str(coll_dir)!r}, encoder='testcolour', "
         "create=True); print('open', flush=True); sys.stdin.readline(); c.close()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    assert holder.stdout.readline().strip() == "open"
    waiter = subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS + f"c = open_collection({str(coll_dir)!r}, encoder='testcolour', "
         "create=True); print(c._db.get_meta()['encoder_spec']); c.close()"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    message = waiter.stderr.readline()  # blocks until the waiter says it waits
    assert "another process is writing to" in message and "waiting" in message
    assert waiter.poll() is None  # still waiting
    holder.communicate("release\n", timeout=60)
    out, _ = waiter.communicate(timeout=120)
    assert waiter.returncode == 0 and out.strip() == "testcolour"
    assert holder.returncode == 0


def test_same_process_opens_do_not_deadlock(tmp_path, colour_spec):
    first = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    second = open_collection(tmp_path / "c", encoder=colour_spec, create=True)
    second.close()
    first.close()
    open_collection(tmp_path / "c", create=True).close()


def test_damaged_and_future_databases_are_clean_errors(tmp_path, photos, colour_spec):
    coll_dir = tmp_path / "c"
    with open_collection(coll_dir, encoder=colour_spec, create=True) as coll:
        index_sources(coll, [photos])
    conn = sqlite3.connect(coll_dir / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    for readonly in (True, False):  # reads refuse a future schema too
        with pytest.raises(SchemaVersionError, match="upgrade ravl"):
            open_collection(coll_dir, readonly=readonly)
    (coll_dir / DB_NAME).write_bytes(b"this is not a database" * 300)
    with pytest.raises(CollectionError, match="damaged or unreadable|not a database"):
        open_collection(coll_dir, readonly=True)
