"""The int8 (dynamically quantised) MiniLM tower, ``default?text=minilm-int8``: its own spec,
fingerprint, cache file and ConSE class matrix; vectors close to float32's; real weights."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ravl.collection import open_collection
from ravl.config import cache_dir
from ravl.encoders import load_encoder
from ravl.encoders.text_onnx import INT8_MIN_COSINE
from ravl.errors import ConfigError, RavlError
from ravl.ingest.pipeline import index_sources

pytestmark = pytest.mark.slow  # real models

TEXTS = ["a red bicycle", "a photo of a tabby cat", "an astronaut floating in space", "a cup of coffee"]


@pytest.fixture(scope="module")
def pair():
    return load_encoder("default"), load_encoder("default?text=minilm-int8")


def test_its_own_spec_fingerprint_and_class_matrix(pair):
    f32, int8 = pair
    assert int8.spec == "default?text=minilm-int8" and f32.spec == "default"
    assert f32.fingerprint.startswith("default/efficientnet-lite0+minilm-l6/conse-")  # unchanged
    assert int8.fingerprint != f32.fingerprint and "int8" in int8.fingerprint
    assert int8.describe()["text"] == "minilm-int8"
    int8.encode_texts(["x"])
    assert any(p.name.startswith("text-all-MiniLM-L6-v2-int8-") for p in cache_dir("onnx").glob("*.onnx"))
    assert not np.array_equal(int8.class_matrix, f32.class_matrix)
    assert float((int8.class_matrix * f32.class_matrix).sum(1).min()) > INT8_MIN_COSINE


def test_vectors_close_to_float32_and_rank_the_same(pair):
    f32, int8 = pair
    a, b = f32.encode_texts(TEXTS), int8.encode_texts(TEXTS)
    assert b.dtype == np.float32 and b.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(a, b)
    assert float((a * b).sum(1).min()) > INT8_MIN_COSINE
    assert ((a @ a.T).argsort(1)[:, -2] == (b @ b.T).argsort(1)[:, -2]).all()


def test_torch_runtime_is_refused():
    with pytest.raises(ConfigError, match="onnxruntime only"):
        load_encoder("default?text=minilm-int8&runtime=torch")


def test_a_collection_keeps_its_tower(tmp_path, skimage_photos, pair):
    f32, int8 = pair
    path, manifest = tmp_path / "c", tmp_path / "m.jsonl"
    skimage_photos["coffee"].save(tmp_path / "coffee.png")
    manifest.write_text(json.dumps({"image": str(tmp_path / "coffee.png"), "caption": "a cup of coffee"}) + "\n")
    with open_collection(path, encoder=f32, create=True) as coll:
        assert index_sources(coll, [manifest]).added == 1
    with open_collection(path) as coll:  # reopened without a spec: the float32 tower it was made with
        assert coll.encoder.fingerprint == f32.fingerprint
    with pytest.raises(RavlError):
        open_collection(path, encoder=int8)
