"""The offline ``default`` encoder with its real bundled weights (no mocks)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ravl.encoders import load_encoder
from ravl.encoders.default import DefaultEncoder, OnnxRunner, cpu_threads, create, onnx_cache_path
from ravl.errors import RavlError, SourceError
from ravl.specs import parse_spec

CATS = {"tiger cat", "Egyptian cat", "tabby", "Persian cat", "Siamese cat", "lynx"}

pytestmark = pytest.mark.slow  # real models, servers or subprocesses


@pytest.fixture(scope="module")
def enc() -> DefaultEncoder:
    return load_encoder("default")


@pytest.fixture(scope="module")
def photos(skimage_photos):
    return [skimage_photos["chelsea"], skimage_photos["coffee"]]


def test_top5_imagenet_labels(enc, photos):
    chelsea, coffee = enc.top_labels(photos, k=5)
    assert len(chelsea) == 5 and chelsea[0][1] >= chelsea[1][1]
    assert {name for name, _ in chelsea[:3]} <= CATS
    assert sum(p for name, p in chelsea if name in CATS) > 0.8
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.8


def test_contract(enc, photos):
    assert (enc.spec, enc.dim, enc.feature_dim) == ("default", 384, 1280)
    assert enc.fingerprint.startswith("default/efficientnet-lite0+minilm-l6/conse-")
    vecs = enc.embed_images(photos)
    texts = enc.encode_texts(["a cat", "a cup of coffee", "x" * 2000])
    for arr, shape in ((vecs.embedding, (2, 384)), (vecs.features, (2, 1280)), (texts, (3, 384))):
        assert arr.shape == shape and arr.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, 384)
    assert enc.embed_images([]).features.shape == (0, 1280)
    pixels = enc.preprocess(photos[0])
    assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32 and -1 <= pixels.min() < pixels.max() <= 1
    assert enc.describe()["runtime"] == "onnx"


def test_alpha_is_composited_on_white(enc):
    from PIL import Image

    clear = Image.new("RGBA", (300, 260), (0, 0, 0, 0))
    np.testing.assert_allclose(enc.preprocess(clear), 1.0)


def test_onnx_and_torch_agree(enc, photos):
    torch_enc = load_encoder("default?runtime=torch")
    assert torch_enc.spec == "default?runtime=torch" and torch_enc.fingerprint == enc.fingerprint
    a, b = enc.embed_images(photos), torch_enc.embed_images(photos)
    assert torch_enc.describe()["runtime"] == "torch"
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-4)
    np.testing.assert_allclose(a.features, b.features, atol=1e-4)


def test_text_to_image_through_the_bridge(enc, photos):
    images = enc.encode_images(photos)
    scores = enc.encode_texts(["a cat", "a cup of coffee"]) @ images.T
    assert scores[0, 0] > scores[0, 1]  # "a cat": chelsea above coffee
    assert scores[1, 1] > scores[1, 0]  # "a cup of coffee": the reverse


def test_image_to_image_features(enc, photos):
    chelsea = photos[0]
    w, h = chelsea.size
    variant = chelsea.crop((12, 8, w - 20, h - 6)).resize((int(w * 0.8), int(h * 0.8)))
    feats = enc.image_features([variant, *photos])
    assert feats[0] @ feats[1] > feats[0] @ feats[2] + 0.1


def test_spec_options():
    assert create(parse_spec("default?topk=20&runtime=onnx")).spec == "default"
    custom = create(parse_spec("default?topk=5&temperature=1"))
    assert custom.spec == "default?temperature=1&topk=5"
    assert custom.fingerprint != create(parse_spec("default")).fingerprint
    for bad in ("default?colour=red", "default?topk=many", "default:resnet", "default?runtime=tpu", "default?topk=0"):
        with pytest.raises(RavlError):
            create(parse_spec(bad))


def test_onnx_cache_is_reused(enc, photos):
    enc.encode_images(photos[:1])  # make sure the export exists
    path = onnx_cache_path()
    before = path.stat().st_mtime_ns
    runner = OnnxRunner(cpu_threads())
    assert not runner.exported and path.stat().st_mtime_ns == before


def test_corrupt_onnx_cache_is_reexported(enc, photos):
    enc.encode_images(photos[:1])
    path = onnx_cache_path()
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    runner = OnnxRunner(cpu_threads())
    assert runner.exported
    fixed = path.read_bytes()
    assert hashlib.sha256(fixed).hexdigest() == path.with_name(path.name + ".sha256").read_text().strip()
    expected, _ = enc.forward(enc.preprocess(photos[1])[None])
    logits, _ = runner(enc.preprocess(photos[1])[None])
    np.testing.assert_allclose(logits, expected, atol=1e-3)


def test_tuxpaint_stamps(tmp_path):
    from ravl.ingest.tuxpaint import STAMPS_ROOT, load_stamps, split_half

    with pytest.raises(SourceError, match="apt-get install tuxpaint-stamps-default"):
        load_stamps(tmp_path / "missing")
    if not STAMPS_ROOT.is_dir():
        pytest.skip("tuxpaint-stamps-default is not installed")
    stamps = load_stamps()
    assert len(stamps) > 400
    assert not any(s.category.startswith(("symbols/alphabets", "symbols/money")) for s in stamps)
    assert not any(s.image.stem.endswith("_mirror") for s in stamps)
    frog = next(s for s in stamps if s.relpath == "animals/amphibians/frog-1.png")
    assert frog.description == "A frog." and frog.translations["fr"] == "Une grenouille."
    select, report = split_half(stamps)
    assert {s.relpath for s in select} == {s.relpath for s in split_half(stamps[::-1])[0]}
    assert abs(len(select) - len(report)) < 0.2 * len(stamps)
