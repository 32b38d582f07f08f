"""End-to-end: the real `ravl` CLI in subprocesses with the real offline default encoder."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # real models, servers or subprocesses

PHOTOS = {"chelsea": "a tabby cat sitting on a floor", "coffee": "a cup of espresso coffee on a saucer",
          "rocket": "a rocket launching into the sky", "motorcycle": "a parked motor scooter",
          "astronaut": "a woman astronaut in a space suit"}


def ravl(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ})
    if check and proc.returncode != 0:
        raise AssertionError(f"ravl {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, skimage_photos):
    root = tmp_path_factory.mktemp("photos")
    for name, caption in PHOTOS.items():
        skimage_photos[name].save(root / f"{name}.jpg", quality=92)
        (root / f"{name}.txt").write_text(caption + "\n")
    return root


@pytest.fixture(scope="module")
def collection(photo_dir, tmp_path_factory):
    coll = tmp_path_factory.mktemp("coll") / "c"
    proc = ravl("index", photo_dir, "--collection", coll, "--json")
    report = json.loads(proc.stdout)
    assert report["added"] == 5 and report["collection"] == {"images": 5, "captions": 5}
    assert "indexing" in proc.stderr  # progress bar on stderr
    return coll


def test_help_lists_commands():
    out = ravl("--help").stdout
    for cmd in ("index", "search", "caption", "info", "demo"):
        assert cmd in out


def test_text_search_plain_and_json(collection, photo_dir):
    plain = ravl("search", "--collection", collection, "--text", "a cat", "--k", "2").stdout.splitlines()
    score, uri, caption = plain[0].split("\t")
    assert uri == str((photo_dir / "chelsea.jpg").resolve()) and caption == PHOTOS["chelsea"]
    assert float(score) > float(plain[1].split("\t")[0])
    lines = ravl("search", "--collection", collection, "--text", "coffee", "--json", "--k", "3").stdout.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["query"] == {"text": "coffee"} and len(obj["results"]) == 3
    first = obj["results"][0]
    assert set(first) == {"id", "uri", "score", "captions", "found_by", "vector_score", "keyword_score"}
    assert first["uri"].endswith("coffee.jpg") and 0 <= first["score"] <= 1 and "good_match" in obj
    assert set(first["found_by"]) == {"vector", "keyword"}  # hybrid by default: the collection has captions
    assert Path(first["uri"]).is_absolute()


def test_queries_file_in_order_one_model_load(collection, photo_dir, tmp_path):
    Image.open(photo_dir / "rocket.jpg").crop((50, 50, 400, 400)).save(tmp_path / "q.jpg")
    qfile = tmp_path / "queries.jsonl"
    qfile.write_text('{"text": "a cat"}\n{"image": "q.jpg"}\n{"text": "a cup of coffee"}\n')
    out = [json.loads(x) for x in ravl("search", "-c", collection, "--queries", qfile, "--json", "--k", "1").stdout.splitlines()]
    assert [o["query"] for o in out] == [{"text": "a cat"}, {"image": str(tmp_path / "q.jpg")}, {"text": "a cup of coffee"}]
    assert [Path(o["results"][0]["uri"]).stem for o in out] == ["chelsea", "rocket", "coffee"]
    caps = json.loads(ravl("search", "-c", collection, "--image", photo_dir / "coffee.jpg", "--target", "captions",
                           "--json", "--k", "2").stdout)
    assert set(caps["results"][0]) == {"id", "caption", "image_id", "uri", "score", "found_by", "vector_score"}
    assert caps["results"][0]["caption"] == PHOTOS["coffee"]


def test_caption_and_info(collection, skimage_photos, tmp_path):
    new = tmp_path / "cat2.png"
    skimage_photos["chelsea"].resize((300, 200)).save(new)
    out = json.loads(ravl("caption", "-c", collection, new, "--k", "3", "--generator", "consensus", "--json").stdout)
    assert out["caption"] == PHOTOS["chelsea"] and out["method"] == "consensus"
    assert out["neighbours"][0]["uri"].endswith("chelsea.jpg") and len(out["neighbours"]) == 3
    assert all({"caption", "image_id", "score"} <= set(c) for c in out["candidates"])
    info = json.loads(ravl("info", "-c", collection, "--json").stdout)
    assert info["images"] == 5 and info["encoder"] == "default" and info["dim"] == 384
    assert info["size_bytes"] > 0


def test_errors_are_one_line_without_traceback(tmp_path, collection):
    cases = [("search", "-c", tmp_path / "missing", "--text", "x"),
             ("search", "-c", collection, "--text", "x", "--k", "0"),
             ("search", "-c", collection, "--image", tmp_path / "nope.jpg"),
             ("index", tmp_path / "nope", "-c", tmp_path / "c2"),
             ("index", collection.parent, "-c", collection, "--encoder", "open_clip:RN50/openai")]
    for args in cases:
        proc = ravl(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("ravl ") and "error:" in proc.stderr
    assert not (tmp_path / "c2").exists()  # a bad source creates nothing


def test_kill_9_during_index_loses_nothing(tmp_path):
    root = tmp_path / "noise"
    root.mkdir()
    rng = np.random.default_rng(0)
    n = 700
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / f"{i:04d}.png")
        (root / f"{i:04d}.txt").write_text(f"noise picture number {i}\n")
    coll = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "ravl.cli.main", "index", str(root), "-c", str(coll),
                             "--batch-size", "16"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = coll / "ravl.sqlite"
    deadline = time.time() + 240
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                    committed = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            except sqlite3.Error:
                committed = 0
            if committed >= 32:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "indexing finished before it could be killed; raise n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert 32 <= kept < n
    report = json.loads(ravl("index", root, "-c", coll, "--json").stdout)
    assert report["unchanged"] == kept and report["added"] == n - kept
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT uri) FROM items").fetchone() == (n, n)
        assert conn.execute("SELECT COUNT(*) FROM captions").fetchone()[0] == n
    hit = json.loads(ravl("search", "-c", coll, "--image", root / "0500.png", "--json", "--k", "1").stdout)
    assert hit["results"][0]["uri"].endswith("0500.png")
