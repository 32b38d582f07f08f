"""Issue 22 item 5: a collection this user cannot write (a read-only mount, a DVD, a container
image) is searched as it is: SQLite's immutable mode, no lock, no file written, index caches used
when their seals verify, else exact search in memory; a permission problem says so. The reader
runs as the unprivileged user 'nobody' (setpriv) on folders it cannot write."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources

CHILD = """
import sys, fakes
from ravl import registry
registry.register('encoders', 'testcolour', fakes.create)
from ravl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}


def as_reader(*args, home: Path) -> subprocess.CompletedProcess:
    """Run the CLI as 'nobody' when this process is root (else as this user, on chmod'ed folders)."""
    env = {"PATH": os.environ.get("PATH", ""), "RAVL_HOME": str(home), "HOME": str(home),
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-c", CHILD, *map(str, args)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def freeze(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


@pytest.fixture
def frozen(colour_spec):
    """A finished collection (sealed index caches) in a folder everyone can read and nobody can write."""
    base = Path(tempfile.mkdtemp(prefix="ravl-ro-"))
    base.chmod(0o755)
    for name, rgb in COLOURS.items():
        make_image(base / "images" / f"{name}.png", rgb)
        (base / "images" / f"{name}.txt").write_text(f"a {name} square\n")
    with open_collection(base / "coll", encoder=colour_spec, create=True) as coll:
        index_sources(coll, [str(base / "images")])
        coll.refresh_indexes()
    (base / "coll" / "ravl.lock").unlink(missing_ok=True)
    home = base / "home"
    home.mkdir()
    home.chmod(0o777)
    yield base
    for p in [base, *base.rglob("*")]:
        if not p.is_symlink():
            p.chmod(stat.S_IRWXU | (p.stat().st_mode & 0o777))
    shutil.rmtree(base)


def search(coll: Path, home: Path) -> list[str]:
    proc = as_reader("search", "-c", coll, "--text", "red", "--k", "3", "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    rows = rows["results"] if isinstance(rows, dict) else rows
    hits = rows[0]["hits"] if isinstance(rows[0], dict) and "hits" in rows[0] else rows
    return [Path(h["uri"]).name for h in hits]


def test_unwritable_collection_is_searched_without_writing(frozen):
    coll = frozen / "coll"
    assert (coll / "index").is_dir() and any((coll / "index").glob("*.faiss"))
    freeze(coll)
    before = snapshot(coll)
    assert search(coll, frozen / "home")[0] == "red.png"
    info = as_reader("info", "-c", coll, "--json", home=frozen / "home")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["images"] == 3
    assert snapshot(coll) == before  # no -shm, no lock, no cache written


STATS = """
import json, sys, fakes
from ravl import registry
registry.register('encoders', 'testcolour', fakes.create)
from ravl.collection import open_collection
with open_collection(sys.argv[1], readonly=True) as c:
    hits = c.search_text(['red'], k=3, mode='vector')[0]
    print(json.dumps({'immutable': c._db.immutable, 'first': hits[0].uri, 'stats': c.index_stats()}))
"""


def test_sealed_caches_are_loaded_not_rebuilt(frozen):
    coll = frozen / "coll"
    freeze(coll)
    env = {"PATH": os.environ.get("PATH", ""), "RAVL_HOME": str(frozen / "home"),
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    cmd = [sys.executable, "-c", STATS, str(coll)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["immutable"] and got["first"].endswith("red.png")
    assert got["stats"]["images"]["loaded"] == 1 and got["stats"]["images"]["built"] == 0


def test_unwritable_collection_without_caches_searches_exactly(frozen):
    coll = frozen / "coll"
    shutil.rmtree(coll / "index")
    freeze(coll)
    before = snapshot(coll)
    assert search(coll, frozen / "home")[0] == "red.png"
    assert snapshot(coll) == before


def test_a_permission_problem_says_so(frozen):
    if os.geteuid() != 0:
        pytest.skip("needs another user to own the folder")
    coll = frozen / "coll"
    coll.chmod(0o700)  # root's alone: 'nobody' cannot enter it
    proc = as_reader("search", "-c", coll, "--text", "red", home=frozen / "home")
    assert proc.returncode == 2
    assert "permission denied" in proc.stderr and "damaged" not in proc.stderr
