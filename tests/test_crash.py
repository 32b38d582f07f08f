"""`ravl index` killed (SIGKILL, no cleanup) at creation, in the middle of a batch and while
writing an index cache: the next run finishes the job and every search answers exactly what a
clean build answers. The kill points are set by patching ravl's own functions in the child."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import make_image
from ravl.cli.main import main
from ravl.collection import open_collection

WORDS = ("red", "green", "blue", "white", "yellow", "black")
#: child: register the fake encoder, install the kill point, run `ravl index`
CHILD = """
import os, signal, sys, fakes
from ravl import registry
registry.register('encoders', 'testcolour', fakes.create)
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
calls = {'n': 0}
def after(n, real):
    def wrapped(*a, **k):
        calls['n'] += 1
        if calls['n'] > n:
            die()
        return real(*a, **k)
    return wrapped
point = sys.argv[1]
if point == 'creation':  # inside the transaction that creates schema + metadata
    from ravl.store import schema
    schema._statements = after(0, schema._statements)
elif point == 'batch':  # the 3rd batch, after two of its items were written
    from ravl.store.db import Database
    Database._upsert = staticmethod(after(5, Database._upsert))
elif point == 'cache':  # between an index file and its seal
    from ravl.store import integrity
    real = integrity.atomic_write_stream
    def write(path, data):
        out = real(path, data)
        if str(path).endswith('features.faiss'):
            die()
        return out
    integrity.atomic_write_stream = write
from ravl.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def answers(coll_dir) -> list:
    with open_collection(coll_dir, readonly=True) as coll:
        out = [[(h.uri, round(h.score, 5)) for h in coll.search_text([w], k=6)[0]] for w in WORDS]
        out += [[(h.caption, round(h.score, 5)) for h in coll.search_text([w], target="captions", k=6)[0]]
                for w in WORDS]
        probe = coll.search_item(1, k=4)
    return out + [[(h.uri, round(h.score, 5)) for h in probe]]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash") / "photos"
    for i in range(9):
        rgb = ((i * 97) % 256, (i * 53) % 256, (i * 31) % 256)
        make_image(root / f"{i}.png", rgb, size=(16 + i, 12))
        (root / f"{i}.txt").write_text(f"{WORDS[i % 6]} thing number {i}\n")
    return root


@pytest.fixture(scope="module")
def clean(photos, tmp_path_factory):
    import fakes
    from ravl import registry

    registry.register("encoders", "testcolour", fakes.create)
    coll = tmp_path_factory.mktemp("clean") / "c"
    assert main(["index", str(photos), "-c", str(coll), "--encoder", "testcolour", "--batch-size", "2"]) == 0
    return answers(coll)


@pytest.mark.parametrize("point", ["creation", "batch", "cache"])
def test_killed_index_resumes_to_a_clean_build(tmp_path, photos, clean, point):
    coll = tmp_path / "c"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", CHILD, point, "index", str(photos), "-c", str(coll), "--encoder",
                           "testcolour", "--batch-size", "2"], capture_output=True, env=env, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-500:]
    conn = sqlite3.connect(coll / "ravl.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if point == "creation":
        assert tables == set()  # nothing half-made: no tables without metadata
    else:
        kept = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        assert kept == (4 if point == "batch" else 9)  # whole batches only
    conn.close()
    if point == "cache":  # a reader before any repair already answers right
        assert answers(coll) == clean
    assert main(["index", str(photos), "-c", str(coll), "--encoder", "testcolour", "--batch-size", "2"]) == 0
    assert answers(coll) == clean
