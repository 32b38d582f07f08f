"""File names that are not UTF-8 are stored losslessly and indexed like any other; a record that
cannot be stored is skipped with a reason, never a rolled-back batch that blocks the rest."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from conftest import make_image
from ravl.collection import open_collection
from ravl.ingest.pipeline import index_sources
from ravl.store.db import NewItem


def bytes_folder(tmp_path, n=40):
    root = tmp_path / "d"
    for i in range(n):
        make_image(root / f"{i:02d}.png", (i * 6, 255 - i * 6, 40))
    odd = os.path.join(os.fsencode(root), b"b\xff.png")  # the file: not valid UTF-8
    with open(odd, "wb") as fh:
        fh.write((root / "00.png").read_bytes()[:-1] + b"\0")  # distinct bytes, same picture
    make_image(root / "red.png", (255, 0, 0))
    with open(os.path.join(os.fsencode(root), b"red\xe9.txt"), "wb") as fh:
        fh.write(b"caption file of a latin-1 name\n")
    with open(os.path.join(os.fsencode(root), b"b\xff.txt"), "wb") as fh:
        fh.write(b"red caf\xe9 \xff\n")  # not UTF-8 inside either
    return root, os.fsdecode(odd)


def test_non_utf8_name_is_indexed_and_found(tmp_path, colour_spec):
    root, odd = bytes_folder(tmp_path)
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        report = index_sources(coll, [root], batch_size=16)
        assert report.skipped == [] and report.added == 42 and coll.counts()["images"] == 42
        row = coll.item_by_uri(odd)
        assert row is not None and os.fsencode(row.uri).endswith(b"b\xff.png")
        assert row.captions == ("red caf\ufffd \ufffd",)
        hits = coll.search_text(["red caf"], target="captions", k=1)[0]
        assert hits[0].uri == odd
        again = index_sources(coll, [root], batch_size=16)  # resumes through the same uri
        assert (again.added, again.unchanged, again.skipped) == (0, 42, [])


def test_cli_prints_such_names_as_their_bytes_and_json_as_escapes(tmp_path, colour_spec):
    root, odd = bytes_folder(tmp_path, n=3)
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        index_sources(coll, [root])
        item = coll.item_by_uri(odd).id
    code = ("import sys, fakes; from ravl import registry; registry.register('encoders', 'testcolour', fakes.create); "
            "from ravl.cli.main import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    base = [sys.executable, "-c", code, "search", "-c", str(tmp_path / "c"), "--text", "red caf", "--target",
            "captions", "--k", "1"]
    plain = subprocess.run(base, capture_output=True, env=env, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert b"b\xff.png" in plain.stdout
    as_json = subprocess.run(base + ["--json"], capture_output=True, env=env, timeout=120)
    line = as_json.stdout.decode("utf-8")  # valid UTF-8
    assert json.loads(line)["results"][0]["uri"] == odd
    assert item > 0


def test_a_record_that_cannot_be_stored_is_skipped_not_the_batch(tmp_path, colour_spec):
    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:
        vec, feat = np.ones(4, np.float32) / 2, np.ones(6, np.float32) / 6 ** 0.5
        good = [NewItem(f"/x/{i}.png", f"{i:064d}", 1, 1, 1, 1, vec, feat) for i in range(3)]
        bad = NewItem("/x/bad.png", "f" * 64, 2 ** 70, 1, 1, 1, vec, feat)  # size past int64
        skipped = []
        ids = coll.add_batch([good[0], bad, good[1], good[2]], on_skip=lambda u, why: skipped.append((u, why)))
        assert ids[1] is None and all(isinstance(i, int) for i in ids[::2] + ids[3:])
        assert skipped[0][0] == "/x/bad.png" and "OverflowError" in skipped[0][1]
        assert coll.counts()["images"] == 3
