"""A CLIP collection's ``features`` index is its ``images`` index (docs/scale.md, "Storing less"):
while every item's features are stored once (they are its embedding) and no tuned bridge changes the
images vectors, no second index is built, written or held; image -> image answers are what a
second, separately built copy gave; the first item with features of its own starts a features
index of its own; an encoder with its own features is unaffected."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_image
from ravl.collection import open_collection
from ravl.encoders.base import l2_normalize
from test_vector_dtype import COLOURS, _items, _Wide


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True, text=True)


def _meta(path, key):
    with sqlite3.connect(path / "ravl.sqlite") as conn:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return row[0] if row else None


def _index_files(path):
    return sorted(p.name for p in (path / "index").iterdir() if not p.name.endswith(".tmp"))


def _similar(coll, k=3):
    """Image -> similar images of every item, by its stored features."""
    ids, feat = coll.item_vectors(which="feat")
    hits = coll.search_vectors(feat, index="features", k=k)
    return {int(i): [(h.id, round(h.score, 5)) for h in row] for i, row in zip(ids, hits)}


def test_clip_collection_serves_features_from_the_images_index(tmp_path, tiny_hf):
    root = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        make_image(root / f"{name}.png", rgb, size=(40, 40))
    spec = f"hf:{tiny_hf['clip']['folder']}"
    for name in ("shared", "separate"):
        out = _cli("index", root, "-c", tmp_path / name, "--encoder", spec, "--vector-dtype", "float16", "--json")
        assert out.returncode == 0, out.stderr
    assert _meta(tmp_path / "shared", "features_separate") is None
    assert _index_files(tmp_path / "shared") == ["captions.faiss", "captions.faiss.seal.json", "images.faiss",
                                                 "images.faiss.seal.json"]
    # "before": the same collection made to build its features index as a copy of its own
    with sqlite3.connect(tmp_path / "separate" / "ravl.sqlite") as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES('features_separate', '1')")
    with open_collection(tmp_path / "shared") as a, open_collection(tmp_path / "separate") as b:
        assert _similar(a) == _similar(b)
        assert a.index_stats()["features"]["built"] == 0 and b.index_stats()["features"]["built"] == 1
        b.refresh_indexes()  # records the facts of the copy built
        assert a.info()["indexes"]["features"]["shared_with"] == "images"
        assert "shared_with" not in b.info()["indexes"]["features"]
        from PIL import Image

        images = [Image.open(root / f"{name}.png") for name in COLOURS]
        got, want = a.search_image(images, k=3), b.search_image(images, k=3)
        assert [[(h.id, round(h.score, 5)) for h in row] for row in got] == \
            [[(h.id, round(h.score, 5)) for h in row] for row in want]
        assert got[0][0].id == a.item_by_uri(str(root / "red.png")).id
    assert "features" in _index_files(tmp_path / "separate")[2]
    info = _cli("info", "-c", tmp_path / "shared")
    assert "index features: shared: the images index answers" in info.stdout, info.stdout
    # ravl import builds the images and captions indexes, with progress on stderr, and no features copy
    assert _cli("export", "-c", tmp_path / "shared", "--out", tmp_path / "x").returncode == 0
    out = _cli("import", tmp_path / "x", "-c", tmp_path / "copy", "--json")
    assert out.returncode == 0, out.stderr
    assert "index images: adding" in out.stderr and "index captions: adding" in out.stderr
    assert "index features:" not in out.stderr and json.loads(out.stdout)["written"] == len(COLOURS)
    assert _index_files(tmp_path / "copy") == _index_files(tmp_path / "shared")


def test_the_first_item_with_its_own_features_gets_its_own_index(tmp_path):
    coll = open_collection(tmp_path / "c", encoder=_Wide("testwide"), create=True)
    coll.add_batch(_items(40, seed=1))  # features stored once
    coll.refresh_indexes()
    assert "features.faiss" not in _index_files(tmp_path / "c")
    before = _similar(coll)
    ids, emb = coll.item_vectors(which="emb")
    assert all(row[0][0] == i for i, row in before.items())  # each item finds itself first
    own = _items(41, seed=2, features="own")[40]  # a new uri, features unlike its embedding
    [new_id] = coll.add_batch([own])
    assert _meta(tmp_path / "c", "features_separate") == "1"
    hit = coll.search_vectors(own.features[None, :], index="features", k=1)[0][0]
    assert hit.id == new_id and abs(hit.score - 1.0) < 1e-5  # its features, not its embedding
    ids, feat = coll.item_vectors(which="feat")
    exact = feat @ own.features
    got = coll.search_vectors(own.features[None, :], index="features", k=5)[0]
    assert [h.id for h in got] == ids[np.argsort(-exact)[:5]].tolist()
    coll.refresh_indexes()
    assert "features.faiss" in _index_files(tmp_path / "c")
    assert coll.index_stats()["features"]["built"] == 1
    assert "shared_with" not in coll.info()["indexes"]["features"]
    coll.close()


def test_an_encoder_with_its_own_features_is_unaffected(tmp_path, colour_spec):
    root = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        make_image(root / f"{name}.png", rgb)
    from ravl.ingest.pipeline import index_sources

    with open_collection(tmp_path / "c", encoder=colour_spec, create=True) as coll:  # 4-d embedding, 6-d features
        index_sources(coll, [root])
    assert _meta(tmp_path / "c", "features_separate") == "1"
    with open_collection(tmp_path / "c", encoder=colour_spec) as coll:
        assert "shared_with" not in coll.info()["indexes"]["features"]
        _, feat = coll.item_vectors(which="feat")
        assert feat.shape[1] == 6
        assert all(row[0][0] == i for i, row in _similar(coll).items())
    assert "features.faiss" in _index_files(tmp_path / "c")
    # same width as the embedding, features of their own: separate from the first write
    wide = open_collection(tmp_path / "w", encoder=_Wide("testwide"), create=True)
    wide.add_batch(_items(20, seed=3, features="own"))
    wide.refresh_indexes()
    assert _meta(tmp_path / "w", "features_separate") == "1" and "features.faiss" in _index_files(tmp_path / "w")
    wide.close()


def test_a_tuned_bridge_ends_the_sharing(tmp_path):
    coll = open_collection(tmp_path / "c", encoder=_Wide("testwide"), create=True)
    coll.add_batch(_items(10, seed=4))
    assert coll._indexes.shared()
    coll._db.set_bridge("bridge-x.safetensors", "0" * 64)  # the images index would hold bridged vectors
    assert not coll._indexes.shared()
    coll._db.set_bridge(None, None)
    assert coll._indexes.shared()
    coll.close()


def test_migration_marks_databases_that_hold_separate_features(tmp_path):
    for name, features in (("own", "own"), ("once", "same")):
        coll = open_collection(tmp_path / name, encoder=_Wide("testwide"), create=True)
        coll.add_batch(_items(5, seed=5, features=features))
        coll.close()
        with sqlite3.connect(tmp_path / name / "ravl.sqlite") as conn:  # as schema step 6 left it
            conn.execute("DELETE FROM meta WHERE key='features_separate'")
            conn.execute("PRAGMA user_version = 6")
        open_collection(tmp_path / name, readonly=True).close()
    assert _meta(tmp_path / "own", "features_separate") == "1"
    assert _meta(tmp_path / "once", "features_separate") is None


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_image_searches_answer_as_a_features_index_of_its_own_did(tmp_path, kind):
    """The images index is tuned on text queries (the captions); a features index of its own was
    tuned on stored vectors: the shared index keeps both sets of knobs and answers image queries
    with the second, so they get exactly what the copy gave."""
    rng = np.random.default_rng(9)  # captions unlike the images: text queries need more search effort
    items = [dataclasses.replace(it, captions=[(text, l2_normalize(rng.standard_normal((1, it.embedding.size)))[0])
                                               for text, _ in it.captions]) for it in _items(2000, seed=6)]
    colls = {}
    for name in ("shared", "separate"):
        coll = colls[name] = open_collection(tmp_path / name, encoder=_Wide("testwide"), create=True)
        coll.set_index_config(kind)
        coll.add_batch(items)
        if name == "separate":
            with sqlite3.connect(tmp_path / name / "ravl.sqlite") as conn:
                conn.execute("INSERT INTO meta(key, value) VALUES('features_separate', '1')")
        coll.refresh_indexes()
    a, b = colls["shared"], colls["separate"]
    facts_a, facts_b = a.index_facts(), b.index_facts()
    assert facts_a["images"]["recall_query_kind"] == "text (captions)"
    if kind == "hnsw":  # text queries asked for a wider search than image queries
        assert facts_a["images"]["search"] != facts_a["features"]["search"]
    assert facts_a["features"]["search"] == facts_b["features"]["search"]
    assert facts_a["features"]["recall_at_10"] == facts_b["features"]["recall_at_10"]
    assert _similar(a, k=10) == _similar(b, k=10)
    assert a.index_stats()["features"]["built"] == 0
    for coll in (a, b):
        coll.close()
    with open_collection(tmp_path / "shared") as again:  # the knobs are kept in the images index's file
        assert _similar(again, k=10) == _similar(b := open_collection(tmp_path / "separate"), k=10)
        assert again.index_stats()["images"]["loaded"] == 1
        b.close()
