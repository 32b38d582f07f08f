"""What the CLIP-family backends (``open_clip:`` and ``hf:``) share: spec options, offline
detection, error wording and the base class of a two-tower text/image encoder."""
from __future__ import annotations

import functools
import os
import socket
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


def _offline_env() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def _hub_unreachable() -> str:
    """'' when the Hub endpoint accepts a TCP connection within 3 s, else why not (checked once
    per process, so an unreachable Hub fails at once instead of after a minute of retries)."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=3).close()
        return ""
    except Exception as exc:  # DNS failure, refused, timeout, or a sandbox that forbids sockets
        return f"the Hugging Face Hub ({host}) is unreachable: {exc}"


def offline() -> bool:
    """True when nothing can be downloaded: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set,
    or the Hub does not answer (see :func:`offline_reason`)."""
    return _offline_env() or bool(_hub_unreachable())


def offline_reason() -> str:
    """Why :func:`offline` is true, for error messages."""
    return "HF_HUB_OFFLINE is set" if _offline_env() else (_hub_unreachable() or "downloads are possible")


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
