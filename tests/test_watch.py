"""Issue 22 item 6: ``ravl watch DIR -c COLL`` follows a folder with real file events (watchdog):
a new image is indexed, a renamed one keeps its item, a deleted one goes, an edited sidecar
replaces its captions; Ctrl-C (SIGINT) stops it cleanly with exit code 0."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import make_image
from ravl.collection import open_collection

pytest.importorskip("watchdog")

CHILD = """
import signal, sys, fakes
# Ctrl-C as in a terminal, even when the test run itself was started in the background (a shell's
# '&' job ignores SIGINT, and its children inherit that, so the watcher would never hear it)
signal.signal(signal.SIGINT, signal.default_int_handler)
from ravl import registry
registry.register('encoders', 'testcolour', fakes.create)
from ravl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def state(coll) -> dict[str, list[str]]:
    with open_collection(coll, readonly=True) as c:
        rows = c.items([s[0] for s in c.file_states().values()])
        return {os.path.basename(r.uri): sorted(r.captions) for r in rows.values()}


def wait_for(predicate, what: str, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_watch_follows_real_file_events(tmp_path, colour_spec):
    photos, coll = tmp_path / "photos", tmp_path / "c"
    make_image(photos / "red.png", (220, 20, 20))
    (photos / "red.txt").write_text("a red square\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "watch", str(photos), "-c", str(coll), "--encoder",
                             "testcolour", "--debounce", "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = wait_for(lambda: proc.stderr.readline(), "the watcher to start")
        before = line
        while "watching" not in line:
            line = proc.stderr.readline()
            assert line, "the watcher exited early"
            before += line
        assert "indexing" in before  # the first pass shows its progress bar, closed before the watch starts
        assert state(coll) == {"red.png": ["a red square"]}
        make_image(photos / "sub" / "blue.png", (20, 20, 220))
        wait_for(lambda: "blue.png" in state(coll), "the new image")
        ids = {}
        with open_collection(coll, readonly=True) as c:
            ids = {os.path.basename(u): s[0] for u, s in c.file_states().items()}
        (photos / "red.png").rename(photos / "crimson.png")
        (photos / "red.txt").rename(photos / "crimson.txt")
        wait_for(lambda: set(state(coll)) == {"crimson.png", "blue.png"}, "the rename")
        with open_collection(coll, readonly=True) as c:
            assert c.item_by_uri(str((photos / "crimson.png").resolve())).id == ids["red.png"]  # the row followed
        (photos / "crimson.txt").write_text("a crimson square\n")
        wait_for(lambda: state(coll).get("crimson.png") == ["a crimson square"], "the edited sidecar")
        (photos / "sub" / "blue.png").unlink()
        wait_for(lambda: set(state(coll)) == {"crimson.png"}, "the deletion")
        with open_collection(coll, readonly=True) as c:
            hits = c.search_text(["blue"], k=5, mode="vector")[0]
            assert [os.path.basename(h.uri) for h in hits] == ["crimson.png"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped after" in err and "1 removed" in err and "1 moved" in err
    assert "Traceback" not in err


def test_serve_watch_keeps_the_served_collection_in_step(tmp_path, colour_spec):
    import httpx

    from test_server_api import Server

    photos, coll = tmp_path / "photos", tmp_path / "c"
    make_image(photos / "red.png", (220, 20, 20))
    from ravl.ingest.pipeline import index_sources

    with open_collection(coll, encoder=colour_spec, create=True) as c:
        index_sources(c, [str(photos)])
    launcher = [sys.executable, "-c", CHILD]
    env = {"PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    srv = Server(coll, "--watch", photos, launcher=launcher, env=env, log_dir=tmp_path)
    try:
        def images() -> int:
            return httpx.get(srv.url + "/info", timeout=10).json()["images"]

        assert images() == 1
        make_image(photos / "blue.png", (20, 20, 220))
        wait_for(lambda: images() == 2, "the served collection to see the new image")
        (photos / "red.png").unlink()
        wait_for(lambda: images() == 1, "the served collection to drop the deleted image")
        assert set(state(coll)) == {"blue.png"}
    finally:
        srv.stop()
    log = srv.log.read_text()
    assert "1 removed" in log and "Traceback" not in log and "watching stopped" not in log
