"""Storing less: float16 vector storage declared per collection, and image features stored once when
they are the embedding (CLIP-family encoders). Real SQLite files, the real CLI for the tiny CLIP."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import fakes
from conftest import make_image
from ravl.collection import open_collection
from ravl.encoders.base import ImageVectors, l2_normalize
from ravl.errors import ConfigError
from ravl.ingest.embeddings import export_collection, import_embeddings
from ravl.ingest.pipeline import index_sources
from ravl.store.codec import VectorCodec, check_dtype
from ravl.store.db import NewItem

DIM = 48
COLOURS = {"red": (230, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 230), "yellow": (230, 230, 20),
           "white": (250, 250, 250), "black": (5, 5, 5)}


class _Wide(fakes.ColourEncoder):
    """A DIM-wide encoder whose vectors these tests write directly (it never encodes an image)."""
    dim = feature_dim = DIM


class _ClipLike(fakes.ColourEncoder):
    """The colour encoder with CLIP's shape: image features are the shared-space embedding."""
    feature_dim = 4

    def embed_pixels(self, pixels):
        emb = super().embed_pixels(pixels).embedding
        return ImageVectors(emb, emb)


def _items(n: int, seed: int, features: str = "same") -> list[NewItem]:
    rng = np.random.default_rng(seed)
    emb = l2_normalize(rng.standard_normal((n, DIM)))
    feat = emb if features == "same" else l2_normalize(rng.standard_normal((n, DIM)))
    cap = l2_normalize(emb + 0.3 * rng.standard_normal((n, DIM)))
    return [NewItem(f"/data/{i:05d}.jpg", f"{i:064x}", 1, 1, 8, 8, emb[i], feat[i], captions=[(f"caption {i}", cap[i])])
            for i in range(n)]


def _collection(path, dtype, items):
    coll = open_collection(path, encoder=_Wide("testwide"), create=True, vector_dtype=dtype)
    coll.add_batch(items)
    return coll


def _blob_lengths(path) -> set[tuple[int, int]]:
    with sqlite3.connect(path / "ravl.sqlite") as conn:
        return set(conn.execute("SELECT length(emb), length(feat) FROM item_vectors").fetchall())


def test_codec_encodes_the_declared_dtype_and_decodes_float32():
    vec = l2_normalize(np.random.default_rng(0).standard_normal((1, 8)))[0]
    for dtype, width in (("float32", 4), ("float16", 2)):
        codec = VectorCodec(dtype)
        data = codec.encode(vec)
        assert len(data) == 8 * width
        back = codec.decode(data)
        assert back.dtype == np.float32 and np.allclose(back, vec, atol=1e-3)
        assert codec.encode_features(data, vec) == b""  # the same vector: stored once
        assert codec.encode_features(data, -vec) == codec.encode(-vec)
        assert codec.decode_rows([data, data]).shape == (2, 8)
    assert check_dtype(" Float16 ") == "float16"
    with pytest.raises(ConfigError, match="one of float32, float16"):
        check_dtype("int8")


def test_float16_collection_answers_like_float32_in_half_the_bytes(tmp_path):
    items = _items(400, seed=1)
    c32, c16 = _collection(tmp_path / "f32", "float32", items), _collection(tmp_path / "f16", "float16", items)
    assert (c32.vector_dtype, c16.vector_dtype) == ("float32", "float16")
    assert _blob_lengths(tmp_path / "f32") == {(4 * DIM, 0)} and _blob_lengths(tmp_path / "f16") == {(2 * DIM, 0)}
    rng = np.random.default_rng(2)
    stored = np.stack([it.embedding for it in items[:20]])
    queries = l2_normalize(stored + 0.2 * rng.standard_normal(stored.shape))
    for index in ("images", "features", "captions"):
        a = c32.search_vectors(queries, index=index, k=10)
        b = c16.search_vectors(queries, index=index, k=10)
        for ra, rb in zip(a, b):
            score_of = {h.id: h.score for h in ra}
            assert ra[0].id == rb[0].id  # the stored vector the query came from
            # the same ids, up to swaps of neighbours whose float32 scores tie within float16's precision
            for pos, (ha, hb) in enumerate(zip(ra, rb)):
                assert ha.id == hb.id or abs(score_of.get(hb.id, ra[-1].score) - ha.score) < 2e-3, (index, pos)
            assert np.allclose([h.score for h in ra], [h.score for h in rb], atol=2e-3)
    _, v16 = c16.item_vectors(which="emb")
    _, v32 = c32.item_vectors(which="emb")
    assert v16.dtype == np.float32 and np.abs(v16 - v32).max() < 1e-3
    c32.close()
    c16.close()


def test_features_equal_to_the_embedding_are_stored_once_and_read_back(tmp_path, colour_spec):
    from ravl import registry

    registry.register("encoders", "testcliplike", _ClipLike)
    root = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        make_image(root / f"{name}.png", rgb)
    for dtype in ("float32", "float16"):
        coll = open_collection(tmp_path / dtype, encoder="testcliplike", create=True, vector_dtype=dtype)
        index_sources(coll, [root])
        assert {feat for _, feat in _blob_lengths(tmp_path / dtype)} == {0}
        ids, emb = coll.item_vectors(which="emb")
        ids_f, feat = coll.item_vectors(ids.tolist(), which="feat")
        assert ids_f.tolist() == ids.tolist() and np.array_equal(emb, feat)
        rows = [r for chunk in coll.export_rows(4) for r in chunk]
        assert all(np.array_equal(r["features"], r["embedding"]) and len(r["features"]) == 4 for r in rows)
        red = coll.item_by_uri(str(root / "red.png"))
        hits = coll.search_vectors(feat[ids.tolist().index(red.id)][None, :], index="features", k=1)
        assert hits[0][0].id == red.id
        coll.close()


def test_an_encoder_with_its_own_features_keeps_them(tmp_path, colour_spec):
    root = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        make_image(root / f"{name}.png", rgb)
    coll = open_collection(tmp_path / "c", encoder=colour_spec, create=True, vector_dtype="float16")
    index_sources(coll, [root])
    assert _blob_lengths(tmp_path / "c") == {(2 * 4, 2 * 6)}  # colour encoder: 4-d embedding, 6-d features
    # same width as the embedding but different values: kept too
    other = _collection(tmp_path / "wide", "float16", _items(5, seed=3, features="own"))
    assert _blob_lengths(tmp_path / "wide") == {(2 * DIM, 2 * DIM)}
    _, emb = other.item_vectors(which="emb")
    _, feat = other.item_vectors(which="feat")
    assert not np.allclose(emb, feat)
    want = np.stack([it.features for it in _items(5, seed=3, features="own")])
    assert np.abs(feat - want).max() < 1e-3
    coll.close()
    other.close()


def test_export_import_round_trip_keeps_dtype_and_bytes(tmp_path):
    items = _items(30, seed=4, features="own")[:15] + _items(30, seed=5)[15:]  # features both ways
    src = _collection(tmp_path / "f16", "float16", items)
    export_collection(src, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["vector_dtype"] == "float16"
    for dtype in ("float16", "float32"):
        copy = open_collection(tmp_path / f"copy-{dtype}", encoder=_Wide("testwide"), create=True,
                               vector_dtype=dtype)
        assert import_embeddings(copy, tmp_path / "out").written == 30
        for which in ("emb", "feat"):
            ids_a, a = src.item_vectors(which=which)
            ids_b, b = copy.item_vectors(which=which)
            assert ids_a.tolist() == ids_b.tolist() and np.array_equal(a, b)  # float16 values are exact in float32
        ids_a, a = src.caption_vectors()
        ids_b, b = copy.caption_vectors()
        assert np.array_equal(a, b)
        copy.close()
    with sqlite3.connect(tmp_path / "f16" / "ravl.sqlite") as x, sqlite3.connect(
            tmp_path / "copy-float16" / "ravl.sqlite") as y:
        sql = "SELECT emb, feat FROM item_vectors ORDER BY item_id"
        assert x.execute(sql).fetchall() == y.execute(sql).fetchall()
    src.close()


def test_changing_the_dtype_of_a_collection_is_refused(tmp_path):
    coll = _collection(tmp_path / "c", "float32", _items(3, seed=6))
    coll.close()
    with pytest.raises(ConfigError, match=r"stores float32 vectors, not float16.*ravl export"):
        open_collection(tmp_path / "c", create=True, vector_dtype="float16")
    with open_collection(tmp_path / "c", vector_dtype="float32", readonly=True) as again:
        assert again.info()["vector_dtype"] == "float32"


def test_index_caches_are_bound_to_the_dtype(tmp_path):
    """A float16 collection's cache binding names its dtype; a float32 one's stays as before."""
    c32 = _collection(tmp_path / "f32", "float32", _items(10, seed=7))
    c16 = _collection(tmp_path / "f16", "float16", _items(10, seed=7))
    for name in ("images", "features", "captions"):
        assert "vector_dtype" not in c32.index_binding(name)
        assert c16.index_binding(name)["vector_dtype"] == "float16"
    c32.close()
    c16.close()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ravl.cli.main", *map(str, args)], capture_output=True, text=True)


def test_cli_float16_index_info_export_import(tmp_path, tiny_hf):
    root = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        make_image(root / f"{name}.png", rgb, size=(40, 40))
        (root / f"{name}.txt").write_text(f"a {name} square\n")
    spec = f"hf:{tiny_hf['clip']['folder']}"
    for dtype in ("float32", "float16"):
        out = _cli("index", root, "-c", tmp_path / dtype, "--encoder", spec, "--vector-dtype", dtype, "--json")
        assert out.returncode == 0, out.stderr
    info = json.loads(_cli("info", "-c", tmp_path / "float16", "--json").stdout)
    assert info["vector_dtype"] == "float16" and info["images"] == len(COLOURS)
    assert "vector_dtype: float16" in _cli("info", "-c", tmp_path / "float16").stdout
    assert _blob_lengths(tmp_path / "float16") == {(2 * 16, 0)}  # CLIP: features stored once
    assert _blob_lengths(tmp_path / "float32") == {(4 * 16, 0)}
    with open_collection(tmp_path / "float32", readonly=True) as a, \
            open_collection(tmp_path / "float16", readonly=True) as b:
        for word in COLOURS:
            ha, hb = a.search_text([f"a {word} square"], k=3)[0], b.search_text([f"a {word} square"], k=3)[0]
            assert [h.uri for h in ha] == [h.uri for h in hb]
            assert np.allclose([h.score for h in ha], [h.score for h in hb], atol=5e-3)
    refused = _cli("index", root, "-c", tmp_path / "float16", "--vector-dtype", "float32")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "stores float16 vectors, not float32" in refused.stderr and "ravl export" in refused.stderr
    assert _cli("export", "-c", tmp_path / "float16", "--out", tmp_path / "x").returncode == 0
    out = _cli("import", tmp_path / "x", "-c", tmp_path / "copy", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(_cli("info", "-c", tmp_path / "copy", "--json").stdout)["vector_dtype"] == "float16"
    with sqlite3.connect(tmp_path / "float16" / "ravl.sqlite") as x, sqlite3.connect(
            tmp_path / "copy" / "ravl.sqlite") as y:
        sql = "SELECT i.uri, v.emb, v.feat FROM items i JOIN item_vectors v ON v.item_id = i.id ORDER BY i.uri"
        assert x.execute(sql).fetchall() == y.execute(sql).fetchall()


def test_a_collection_from_before_the_option_reads_as_float32(tmp_path):
    """A schema-5 database (float32 blobs, features stored in full) is migrated to float32 storage."""
    items = _items(5, seed=8, features="own")
    _collection(tmp_path / "old", "float32", items).close()
    with sqlite3.connect(tmp_path / "old" / "ravl.sqlite") as conn:
        conn.execute("DELETE FROM meta WHERE key='vector_dtype'")
        conn.execute("PRAGMA user_version = 5")
    with open_collection(tmp_path / "old", readonly=True) as coll:
        assert coll.vector_dtype == "float32" and coll.info()["vector_dtype"] == "float32"
        _, feat = coll.item_vectors(which="feat")
        assert np.array_equal(feat, np.stack([it.features for it in items]).astype(np.float32))
    with sqlite3.connect(tmp_path / "old" / "ravl.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='vector_dtype'").fetchone() == ("float32",)
