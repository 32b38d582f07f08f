"""What the CLIP-family backends (``open_clip:`` and ``hf:``) share: spec options, offline
detection, error wording and the base class of a two-tower text/image encoder."""
from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..specs import Option, Spec, fingerprint_spec, parse_options
from .base import Encoder

#: spec options that change how a model runs, not the vectors it makes
RUNTIME = (
    Option("device", str, "cpu", "torch device: cpu, cuda, cuda:N, mps", fingerprint=False),
    Option("batch_size", int, 32, "images per forward pass", fingerprint=False, minimum=1),
)
RUNTIME_OPTIONS = tuple(o.name for o in RUNTIME)
TEXT_BATCH = 256


def offline() -> bool:
    """True when the environment forbids downloads (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def runtime_options(spec: Spec, options: tuple[Option, ...] = RUNTIME) -> dict[str, Any]:
    """``spec``'s options checked against ``options``: ``device``, ``batch_size`` and any others."""
    return parse_options(spec, options)


def fingerprint_of(spec: Spec, options: tuple[Option, ...] = RUNTIME) -> str:
    """The spec without runtime-only options: what identifies the vectors."""
    return str(fingerprint_spec(spec, options))


def short_message(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TowerEncoder(Encoder):
    """A CLIP-style model with an image tower and a text tower; features == embeddings.
    Subclasses set ``image_size_hint`` and implement preprocessing, ``embed_pixels`` and
    ``_encode_text_batch``; this class measures ``dim`` and batches texts."""

    def __init__(self, spec: str, model, tokenizer, *, device: str = "cpu", batch_size: int = 32,
                 fingerprint: str | None = None):
        self.spec = spec
        self._fingerprint = fingerprint or spec
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size

    def _measure_dim(self) -> None:
        self.dim = self.feature_dim = int(self._encode_text_batch([""]).shape[1])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @abstractmethod
    def _encode_text_batch(self, texts: Sequence[str]) -> np.ndarray:
        """At most TEXT_BATCH texts -> (n, dim) float32, L2-normalised."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate([self._encode_text_batch(texts[i : i + TEXT_BATCH])
                               for i in range(0, len(texts), TEXT_BATCH)])

    def describe(self) -> dict:
        return {**super().describe(), "image_size": self.image_size_hint, "device": self.device}
