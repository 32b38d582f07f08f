"""The default encoder's MiniLM text tower on onnxruntime, checked against the torch path."""
from __future__ import annotations

import numpy as np
import pytest

from ravl.encoders import load_encoder
from ravl.encoders.default import FallbackTower, text_tower
from ravl.encoders.onnx_cache import data_path, sidecar
from ravl.encoders.text_minilm import MiniLMTextEncoder, model_path
from ravl.encoders.text_onnx import CHECK_SENTENCES, SETTLE_AFTER, OnnxTextTower

TEXTS = [*CHECK_SENTENCES, "", "A Dog", "a dog", "emoji 🐶 and symbols ©®", "tabs\tand\nnewlines",
         *(f"a photo of item number {i} on a {c} table" for i in range(70) for c in ("red",))]


@pytest.fixture(scope="module")
def torch_tower():
    return MiniLMTextEncoder(max_length=128)


def _tower(reference, threads=1):
    return OnnxTextTower(model_path, reference, name="all-MiniLM-L6-v2/mean/max128", dim=384, threads=threads)


def test_tokens_match_transformers(torch_tower):
    _, hf_tokenizer = torch_tower._load()
    tower = _tower(lambda: torch_tower)
    ids, mask = tower.tokenize(TEXTS)
    ref = hf_tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="np")
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    assert ids.shape[1] == 128  # the long check sentence is truncated like the torch path


@pytest.mark.slow
def test_default_text_vectors_match_the_torch_path():
    onnx_enc, torch_enc = load_encoder("default"), load_encoder("default?runtime=torch")
    got, ref = onnx_enc.encode_texts(TEXTS), torch_enc.encode_texts(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    info = onnx_enc.describe()
    assert info["text_runtime"] == "onnx" and "text_onnx_fallback" not in info
    assert torch_enc.describe()["text_runtime"] == "torch"
    assert onnx_enc.fingerprint == torch_enc.fingerprint  # same vectors, same collections
    # order and batching do not change a text's vector
    np.testing.assert_allclose(onnx_enc.encode_texts(TEXTS[::-1])[::-1], got, atol=1e-6)


@pytest.mark.slow
def test_export_cached_checked_and_reexported_when_damaged(ravl_home, torch_tower):
    first = _tower(lambda: torch_tower)
    first.load()
    path = first.cache_path()
    assert first.exported and path.is_file() and data_path(path).is_file() and sidecar(path).is_file()
    again = _tower(lambda: pytest.fail("a cached export must not be checked again"))
    again.load()
    assert not again.exported
    np.testing.assert_array_equal(again.encode(TEXTS[:5]), first.encode(TEXTS[:5]))
    weights = data_path(path)
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\x01" * 64
    weights.write_bytes(bytes(blob))
    fixed = _tower(lambda: torch_tower)
    fixed.load()
    assert fixed.exported
    assert np.abs(fixed.encode(TEXTS) - torch_tower.encode(TEXTS)).max() < 1e-5


class _WrongReference:
    def encode(self, texts):
        out = MiniLMTextEncoder().encode(texts)
        out[:, 0] += 1e-3
        return out


@pytest.mark.slow
def test_export_that_disagrees_with_torch_is_refused(ravl_home, torch_tower):
    primary = _tower(_WrongReference)
    tower = FallbackTower(primary, lambda: torch_tower)
    vecs = tower.encode(["a cat"])  # the export is refused, the torch tower answers
    assert tower.runtime == "torch" and "differs from the reference tower" in tower.fallback_reason
    assert not primary.cache_path().exists() and not data_path(primary.cache_path()).exists()
    np.testing.assert_array_equal(vecs, torch_tower.encode(["a cat"]))


def test_text_tower_runtimes():
    assert text_tower("torch", 1).runtime == "torch"
    assert text_tower("onnx", 1).runtime == "onnx"


@pytest.mark.slow
def test_quick_start_session_is_swapped_for_the_full_one(torch_tower):
    """A one-shot process encodes with a session that starts fast; one that keeps encoding swaps
    it for the fully optimised one, with the same vectors (both within 1e-5 of torch)."""
    tower = _tower(lambda: torch_tower)
    ref = torch_tower.encode(TEXTS)
    quick = tower.encode(TEXTS)
    assert tower._quick and np.abs(quick - ref).max() < 1e-5
    while tower._quick:
        tower.encode(TEXTS)
    full = tower.encode(TEXTS)
    assert tower._encoded > SETTLE_AFTER and np.abs(full - ref).max() < 1e-5
    np.testing.assert_allclose(full, quick, atol=1e-6)
    server = _tower(lambda: torch_tower)  # a long-running process asks for the full session at once
    server.warm_up()
    assert not server._quick
    np.testing.assert_allclose(server.encode(TEXTS), full, atol=1e-6)
