"""The encoder contract, run over every encoder family the tests can build: the real offline
``default`` encoder, tiny open_clip and Hugging Face CLIP / SigLIP models saved locally and loaded
through their spec strings, and the fake colour encoder the pipeline tests use. Every encoder
returns L2-normalised float32 arrays of shape (n, dim) (images also (n, feature_dim) features),
handles empty input, and gives the same vectors whatever the batch size."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ravl.encoders import load_encoder
from ravl.encoders.base import Encoder, ImageVectors

TEXTS = ["a photo of a cat", "a red rocket on a launch pad", "coffee", "x" * 600]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    out = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in [(48, 40), (64, 64), (33, 90)]]
    out.append(Image.new("RGBA", (40, 30), (200, 10, 10, 128)))  # transparency and another mode
    out.append(Image.new("L", (24, 24), 90))
    return out


@pytest.fixture(params=[
    "fake",
    pytest.param("default", marks=pytest.mark.slow),
    pytest.param("open_clip", marks=pytest.mark.slow),
    pytest.param("hf-clip", marks=pytest.mark.slow),
    pytest.param("hf-siglip", marks=pytest.mark.slow),
])
def encoder(request) -> Encoder:
    if request.param == "fake":
        return load_encoder(request.getfixturevalue("colour_spec"))
    if request.param == "default":  # eager torch: the onnx path is the same contract behind an export
        return load_encoder("default?runtime=torch")
    if request.param == "open_clip":
        return load_encoder(f"open_clip:local-dir:{request.getfixturevalue('tiny_open_clip')['folder']}")
    tiny = request.getfixturevalue("tiny_hf")
    return load_encoder(f"hf:{tiny[request.param.removeprefix('hf-')]['folder']}")


def _unit_float32(x: np.ndarray, shape: tuple[int, int]) -> None:
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == shape
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_declares_what_it_is(encoder):
    assert isinstance(encoder.spec, str) and encoder.spec
    assert isinstance(encoder.fingerprint, str) and encoder.fingerprint
    assert encoder.dim > 0 and encoder.feature_dim > 0 and encoder.batch_size > 0
    info = encoder.describe()
    assert info["spec"] == encoder.spec and info["dim"] == encoder.dim


def test_texts_are_unit_float32(encoder):
    _unit_float32(encoder.encode_texts(TEXTS), (len(TEXTS), encoder.dim))


def test_images_are_unit_float32(encoder, images):
    vecs = encoder.embed_images(images)
    assert isinstance(vecs, ImageVectors)
    _unit_float32(vecs.embedding, (len(images), encoder.dim))
    _unit_float32(vecs.features, (len(images), encoder.feature_dim))
    np.testing.assert_allclose(encoder.encode_images(images), vecs.embedding, atol=1e-5)
    np.testing.assert_allclose(encoder.image_features(images), vecs.features, atol=1e-5)
    pixels = encoder.preprocess(images[0].convert("RGB"))
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, encoder.preprocess(images[0].convert("RGB")))  # deterministic


def test_empty_input(encoder):
    assert encoder.encode_texts([]).shape == (0, encoder.dim)
    assert encoder.encode_texts([]).dtype == np.float32
    empty = encoder.embed_images([])
    assert empty.embedding.shape == (0, encoder.dim) and empty.features.shape == (0, encoder.feature_dim)


def test_batch_size_does_not_change_the_vectors(encoder, images):
    together = encoder.embed_images(images)
    one_by_one = [encoder.embed_images([im]) for im in images]
    np.testing.assert_allclose(np.concatenate([v.embedding for v in one_by_one]), together.embedding, atol=1e-4)
    np.testing.assert_allclose(np.concatenate([v.features for v in one_by_one]), together.features, atol=1e-4)
    texts = encoder.encode_texts(TEXTS)
    np.testing.assert_allclose(np.concatenate([encoder.encode_texts([t]) for t in TEXTS]), texts, atol=1e-4)


def test_top_labels_is_part_of_the_contract(encoder, images):
    labels = encoder.top_labels(images[:2], k=3)
    assert len(labels) == 2
    for row in labels:
        assert len(row) <= 3 and all(isinstance(n, str) and 0 <= p <= 1 for n, p in row)
