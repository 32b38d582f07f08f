"""open_clip: and hf: encoders, loaded through the same spec strings a user writes, on tiny
randomly initialised models built and saved here (no download; conftest blocks the network)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from ravl.encoders import load_encoder
from ravl.errors import ConfigError, MissingDependencyError, ModelNotAvailableError
from tiny_models import TINY_ARCH, TINY_CFG

TEXTS = ["a photo of a cat", "a red rocket on a launch pad", "coffee", ""]

pytestmark = pytest.mark.slow  # real models, servers or subprocesses


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    sizes = [(48, 40), (64, 64), (33, 90)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _check_vectors(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def _unit(t) -> np.ndarray:
    x = t.detach().float().numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- open_clip ----------------------------------------------------------------------------------
def _direct_open_clip(tiny, images, texts):
    import torch

    with torch.inference_mode():
        img = tiny["model"].encode_image(torch.stack([tiny["transform"](im) for im in images]))
        txt = tiny["model"].encode_text(tiny["tokenizer"](texts))
    return _unit(img), _unit(txt)


@pytest.mark.parametrize("form", ["file-pt", "file-safetensors", "local-dir"])
def test_open_clip_loads_saved_weights_through_spec(tiny_open_clip, images, form):
    root = tiny_open_clip["root"]
    spec = {"file-pt": f"open_clip:{TINY_ARCH}/{root / 'tiny.pt'}",
            "file-safetensors": f"open_clip:{TINY_ARCH}/{root / 'tiny.safetensors'}",
            "local-dir": f"open_clip:local-dir:{tiny_open_clip['folder']}"}[form]
    enc = load_encoder(spec)
    assert enc.dim == enc.feature_dim == TINY_CFG["embed_dim"]
    assert enc.spec == spec and enc.image_size_hint == 32
    assert enc.preprocess(images[0]).shape == (3, 32, 32) and enc.preprocess(images[0]).dtype == np.float32

    vecs = enc.embed_images(images)
    texts = enc.encode_texts(TEXTS)
    _check_vectors(vecs.embedding, len(images), enc.dim)
    _check_vectors(texts, len(TEXTS), enc.dim)
    np.testing.assert_array_equal(vecs.features, vecs.embedding)  # CLIP: features == embeddings

    want_img, want_txt = _direct_open_clip(tiny_open_clip, images, TEXTS)
    np.testing.assert_allclose(vecs.embedding, want_img, atol=1e-5)
    np.testing.assert_allclose(texts, want_txt, atol=1e-5)
    np.testing.assert_array_equal(enc.encode_texts(TEXTS), texts)  # deterministic
    np.testing.assert_allclose(enc.encode_texts(TEXTS[1:2])[0], texts[1], atol=1e-6)  # batch-independent
    assert enc.encode_texts([]).shape == (0, enc.dim)


def test_open_clip_relative_path_is_made_absolute(tiny_open_clip, monkeypatch):
    monkeypatch.chdir(tiny_open_clip["root"])
    enc = load_encoder(f"open_clip:{TINY_ARCH}/./tiny.safetensors?batch_size=4")
    assert enc.spec == f"open_clip:{TINY_ARCH}/{tiny_open_clip['root'] / 'tiny.safetensors'}?batch_size=4"
    assert enc.batch_size == 4 and "batch_size" not in enc.fingerprint
    enc = load_encoder("open_clip:local-dir:tiny-dir")
    assert enc.spec == f"open_clip:local-dir:{tiny_open_clip['folder']}"


def test_open_clip_cached_tag_loads_offline_with_the_tags_preprocessing(tiny_open_clip, images, tmp_path,
                                                                         monkeypatch):
    """A tag whose weights sit in the Hugging Face cache loads with no network access, and the tag's
    own normalisation is used."""
    import huggingface_hub.constants
    import open_clip.pretrained
    import torch

    snap = tmp_path / "models--ravl-test--tiny-clip" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (tmp_path / "models--ravl-test--tiny-clip" / "refs").mkdir()
    (tmp_path / "models--ravl-test--tiny-clip" / "refs" / "main").write_text("abc123")
    (snap / "open_clip_model.safetensors").write_bytes((tiny_open_clip["root"] / "tiny.safetensors").read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_ARCH, {"ravltest": {
        "url": "", "hf_hub": "ravl-test/tiny-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "interpolation": "bicubic", "resize_mode": "shortest"}})

    enc = load_encoder(f"open_clip:{TINY_ARCH}/RavlTest")
    assert enc.spec == f"open_clip:{TINY_ARCH}/ravltest"
    x = torch.from_numpy(enc.preprocess(images[1]))
    raw = torch.from_numpy(np.asarray(images[1].resize((32, 32), Image.BICUBIC), np.float32) / 255).permute(2, 0, 1)
    np.testing.assert_allclose(x.numpy(), ((raw - 0.5) / 0.5).numpy(), atol=0.05)  # mean = std = 0.5
    want_img, want_txt = _direct_open_clip(tiny_open_clip, images[:1], TEXTS)
    np.testing.assert_allclose(enc.encode_texts(TEXTS), want_txt, atol=1e-5)


def test_open_clip_uncached_tag_offline_says_how_to_use_a_local_copy(tiny_open_clip, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError) as err:
        load_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")
    msg = str(err.value)
    assert "open_clip:ViT-B-32/laion2b_s34b_b79k" in msg and "local-dir:" in msg and "weights" in msg


def test_open_clip_spec_errors(tiny_open_clip, tmp_path):
    with pytest.raises(ConfigError, match=r"ViT-B-32") as err:
        load_encoder("open_clip:ViT-B-33/openai")
    assert "unknown open_clip architecture 'ViT-B-33'" in str(err.value)
    with pytest.raises(ConfigError, match=r"laion2b_s34b_b79k"):
        load_encoder("open_clip:ViT-B-32/no-such-tag")
    with pytest.raises(ConfigError, match=r"names no weights"):
        load_encoder("open_clip:ViT-B-32")
    with pytest.raises(ConfigError, match=r"unknown option"):
        load_encoder("open_clip:ViT-B-32/openai?colour=red")
    with pytest.raises(ModelNotAvailableError, match=r"does not exist"):
        load_encoder(f"open_clip:{TINY_ARCH}/{tmp_path / 'missing.pt'}")
    with pytest.raises(ModelNotAvailableError, match=r"does not exist"):
        load_encoder(f"open_clip:local-dir:{tmp_path / 'nowhere'}")
    with pytest.raises(ModelNotAvailableError, match=r"open_clip_config.json"):
        load_encoder(f"open_clip:local-dir:{tmp_path}")
    # weights for another architecture: a clear ConfigError, not a torch traceback
    with pytest.raises(ConfigError, match=r"do not fit architecture ViT-B-32"):
        load_encoder(f"open_clip:ViT-B-32/{tiny_open_clip['root'] / 'tiny.pt'}")


def test_open_clip_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(MissingDependencyError, match=r"ravl\[clip\]"):
        load_encoder("open_clip:ViT-B-32/openai?batch_size=7")  # a spec not cached by load_encoder


# --- hf: transformers CLIPModel / SiglipModel -----------------------------------------------------
def _direct_hf(tiny, kind, images, texts):
    import torch

    model, tok = tiny[kind]["model"], tiny["tokenizer"]
    with torch.inference_mode():
        px = tiny[kind]["processor"](images=images, return_tensors="pt")["pixel_values"]
        img = model.get_image_features(pixel_values=px).pooler_output
        if kind == "siglip":
            ids = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
            txt = model.get_text_features(input_ids=ids["input_ids"]).pooler_output
        else:
            txt = model.get_text_features(**tok(texts, padding=True, return_tensors="pt")).pooler_output
    return _unit(img), _unit(txt)


@pytest.mark.parametrize("kind,dim", [("clip", 16), ("siglip", 32)])
def test_hf_loads_saved_folder_through_spec(tiny_hf, images, kind, dim):
    folder = tiny_hf[kind]["folder"]
    enc = load_encoder(f"hf:{folder}")
    assert enc.spec == f"hf:{folder}" and enc.model_type == kind
    assert enc.dim == enc.feature_dim == dim and enc.image_size_hint == 32
    assert enc.preprocess(images[2]).shape == (3, 32, 32)

    vecs = enc.embed_images(images)
    texts = enc.encode_texts(TEXTS)
    _check_vectors(vecs.embedding, len(images), dim)
    _check_vectors(texts, len(TEXTS), dim)
    np.testing.assert_array_equal(vecs.features, vecs.embedding)

    want_img, want_txt = _direct_hf(tiny_hf, kind, images, TEXTS)
    np.testing.assert_allclose(vecs.embedding, want_img, atol=1e-5)
    np.testing.assert_allclose(texts, want_txt, atol=1e-5)
    np.testing.assert_array_equal(enc.encode_texts(TEXTS), texts)
    # a text's vector does not depend on what else is in the batch (padding is handled)
    np.testing.assert_allclose(enc.encode_texts(TEXTS[2:3])[0], texts[2], atol=1e-5)


def test_hf_relative_folder_is_made_absolute_and_loads_quietly(tiny_hf, monkeypatch, capfd):
    monkeypatch.chdir(tiny_hf["clip"]["folder"].parent)
    capfd.readouterr()
    assert load_encoder("hf:./clip").spec == f"hf:{tiny_hf['clip']['folder']}"
    assert "Loading weights" not in capfd.readouterr().err  # no progress bar from library code


def test_hf_errors(tiny_hf, tmp_path):
    from ravl.encoders.text_minilm import model_path as minilm_path

    with pytest.raises(ModelNotAvailableError) as err:  # offline and not cached: no hang, no network
        load_encoder("hf:ravl-test/not-a-cached-model")
    msg = str(err.value)
    assert "hf:ravl-test/not-a-cached-model" in msg and "hf:/path/to" in msg and "download" in msg
    with pytest.raises(ModelNotAvailableError, match=r"does not exist"):
        load_encoder(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(ModelNotAvailableError, match=r"config.json"):
        load_encoder(f"hf:{tmp_path}")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_bytes((tiny_hf["clip"]["folder"] / "config.json").read_bytes())
    with pytest.raises(ModelNotAvailableError, match=r"incomplete"):
        load_encoder(f"hf:{tmp_path / 'half'}")
    with pytest.raises(ConfigError, match=r"folder"):
        load_encoder(f"hf:{tiny_hf['clip']['folder'] / 'config.json'}")
    with pytest.raises(ConfigError, match=r"'bert'.*clip, siglip"):
        load_encoder(f"hf:{minilm_path()}")
