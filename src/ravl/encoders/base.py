"""The encoder contract every backend implements.

An encoder maps images and texts into one shared space. Every method returns L2-normalised
``float32`` arrays of shape ``(n, dim)``. Image encoding is split in two so that the ingest
pipeline can overlap decoding with the model: :meth:`Encoder.preprocess` (pure CPU work on one
PIL image, safe to call from worker threads) and :meth:`Encoder.embed_pixels` (one batched
forward pass over preprocessed arrays).

Besides the shared-space ``embedding``, an image also gets ``features`` used for image->image
search. For CLIP-family models these are the same vectors; the offline ``default`` encoder returns
the CNN's pooled 1280-d features there, which are far better for finding similar pictures than
its zero-shot bridge.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageVectors:
    embedding: np.ndarray  # (n, dim) float32, L2-normalised, shared with texts
    features: np.ndarray  # (n, feature_dim) float32, L2-normalised, for image->image search

    def take(self, i: int) -> ImageVectors:
        """Row ``i`` as a one-image ``ImageVectors``."""
        return ImageVectors(self.embedding[i:i + 1], self.features[i:i + 1])


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class Encoder(ABC):
    #: canonical spec string; stored in a collection and compared on open
    spec: str
    #: dimension of the shared image/text space
    dim: int
    #: dimension of image->image features (equals ``dim`` when they are the same vectors)
    feature_dim: int
    #: batch size the ingest pipeline should use
    batch_size: int = 32
    #: shortest image side the model needs; the loader may decode JPEGs at reduced scale down to it
    image_size_hint: int = 256

    @property
    def fingerprint(self) -> str:
        """Identifies the exact vectors this encoder makes (weights + recipe). A collection refuses
        an encoder whose fingerprint differs from the one it was built with. Override when one
        spec can produce different vectors (e.g. a changed bridge recipe)."""
        return self.spec

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB PIL image -> the model's input array (CPU only, thread-safe)."""

    @abstractmethod
    def embed_pixels(self, pixels: np.ndarray) -> ImageVectors:
        """A batch of preprocessed arrays stacked on axis 0 -> image vectors."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) float32, L2-normalised."""

    # --- conveniences built on the abstract methods -------------------------------------------
    def embed_images(self, images: Sequence[Image.Image]) -> ImageVectors:
        if len(images) == 0:
            return ImageVectors(np.zeros((0, self.dim), np.float32), np.zeros((0, self.feature_dim), np.float32))
        out_e, out_f = [], []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            vecs = self.embed_pixels(np.stack([self.preprocess(im.convert("RGB")) for im in chunk]))
            out_e.append(vecs.embedding)
            out_f.append(vecs.features)
        return ImageVectors(np.concatenate(out_e), np.concatenate(out_f))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images -> (n, dim) float32, L2-normalised, in the shared space."""
        return self.embed_images(images).embedding

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images -> (n, feature_dim) float32, L2-normalised, for image->image search."""
        return self.embed_images(images).features

    def top_labels(self, images: Sequence[Image.Image], k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely class names with their probabilities, best first, per image.
        Encoders that can name classes (e.g. the ImageNet-based ``default``) override this; the
        others return no labels."""
        return [[] for _ in images]

    def warm_up(self) -> None:
        """Prepare for a long run of calls (a server, an ingest), where a one-shot process would
        rather start fast: e.g. swap quick-start model sessions for fully optimised ones. Most
        encoders have nothing to do."""
        return None

    def describe(self) -> dict:
        """Extra facts for ``ravl info`` (override to add labels, e.g. top classes)."""
        return {"spec": self.spec, "fingerprint": self.fingerprint, "dim": self.dim,
                "feature_dim": self.feature_dim}


@lru_cache(maxsize=4)
def _cached(spec: str) -> Encoder:
    from .. import registry

    return registry.create("encoders", spec)


def load_encoder(spec: str = "default") -> Encoder:
    """Build (and cache per process) the encoder named by ``spec``."""
    return _cached(spec.strip())
