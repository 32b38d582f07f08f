"""Reference outputs shipped with ravl, against which a fresh ONNX export is checked (no torch needed).

``ravl/data/reference_outputs.npz`` holds, for the ``default`` encoder's two towers, what the torch
definitions (:mod:`.effnet`, :mod:`.text_minilm`: the reference, installed with the dev extras)
output on fixed probes: EfficientNet-Lite0's logits and pooled features for :func:`probe_pixels`,
and MiniLM's sentence vectors for :data:`CHECK_SENTENCES`, each with the sha256 of the
weights it was made from. :func:`write_reference` (torch) makes the file; a test keeps it in step.
"""
from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ModelNotAvailableError

REFERENCE_FILE = "reference_outputs.npz"
#: the fixed sentences a new text export is checked on: short and long (truncated), accents, CJK, odd spacing
CHECK_SENTENCES = (
    "a cat", "a photo of a dog running on the beach with a red ball in its mouth",
    "Café déjà vu: naïve résumé", "一只猫坐在垫子上", "   spaces   and\ttabs\n", "x",
    " ".join(["a long sentence that goes past the truncation limit"] * 30),
    "ImageNet class 'tabby, tabby cat', a cat with a grey or tawny coat mottled with black",
)
#: largest max-abs difference of a fresh CNN export's logits from the reference (logits reach ~15)
CNN_LOGITS_TOLERANCE = 1e-3


def reference_path() -> Path:
    return Path(str(resources.files("ravl") / "data" / REFERENCE_FILE))


def probe_pixels() -> np.ndarray:
    """(2, 3, 224, 224) float32 in [-1, 1], the same on every platform (integer arithmetic only):
    hashed noise, and smooth colour gradients with stripes."""
    n = 3 * 224 * 224
    i = np.arange(n, dtype=np.uint64)
    noise = ((i * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(1 << 32)).astype(np.float64) / float(1 << 32)
    c, y, x = np.meshgrid(np.arange(3), np.arange(224), np.arange(224), indexing="ij")
    smooth = ((x * (c + 1) + 2 * y + 37 * ((x // 16 + y // 16) % 2)) % 256).astype(np.float64) / 255.0
    out = np.stack([noise.reshape(3, 224, 224), smooth]) * 2.0 - 1.0
    return out.astype(np.float32)


@lru_cache(maxsize=1)
def load_reference() -> dict[str, np.ndarray]:
    """The shipped arrays: ``cnn_logits``, ``cnn_features``, ``text_vectors``, ``cnn_weights``, ``text_weights``."""
    path = reference_path()
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"ravl's reference outputs are missing or damaged at {path} ({exc}): "
                                     "pip install --force-reinstall ravl") from exc


def check_cnn(session, weights_sha256: str) -> None:
    """Raise unless ``session`` (an ONNX CNN) reproduces the reference logits on the probes."""
    ref = load_reference()
    if str(ref["cnn_weights"]) != weights_sha256:
        raise RuntimeError("the EfficientNet-Lite0 weights are not the ones ravl's reference outputs were made from")
    logits, _ = session.run(None, {"pixels": probe_pixels()})
    diff = float(np.abs(logits - ref["cnn_logits"]).max())
    if not diff < CNN_LOGITS_TOLERANCE:
        raise RuntimeError(f"exported ONNX model disagrees with the reference outputs by {diff:.2e}")


def check_text(vectors: np.ndarray, weights_sha256: str, tolerance: float) -> None:
    """Raise unless ``vectors`` (the check sentences, encoded) match the reference vectors."""
    ref = load_reference()
    if str(ref["text_weights"]) != weights_sha256:
        raise RuntimeError("the MiniLM weights are not the ones ravl's reference outputs were made from")
    diff = float(np.abs(vectors - ref["text_vectors"]).max())
    if not diff <= tolerance:
        raise RuntimeError(f"exported text model differs from the reference vectors by {diff:.2e} (> {tolerance:g})")


def write_reference(path: Path | None = None) -> Path:
    """Make the reference file with the torch definitions (needs the dev extras: torch, transformers)."""
    import torch

    from ..digests import file_sha256
    from ..fsutil import atomic_write_bytes
    from .effnet import load_efficientnet_lite0
    from .packaged import weights_path
    from .text_minilm import MiniLMTextEncoder, model_path

    with torch.inference_mode():
        logits, features = load_efficientnet_lite0()(torch.from_numpy(probe_pixels()))
    arrays = {"cnn_logits": logits.numpy().astype(np.float32), "cnn_features": features.numpy().astype(np.float32),
              "text_vectors": MiniLMTextEncoder(max_length=128).encode(list(CHECK_SENTENCES)),
              "cnn_weights": np.array(file_sha256(weights_path())),
              "text_weights": np.array(file_sha256(model_path() / "model.safetensors"))}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = path or reference_path()
    atomic_write_bytes(path, buf.getvalue())
    load_reference.cache_clear()
    return path
