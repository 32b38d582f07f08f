"""A learned bridge from stored image features to the text space (``ravl tune``), applied in numpy.

A collection's images keep their *base* vectors in the store (the encoder's own ``embedding`` and
``features``). A tuned bridge maps the features to the shared space and is fused with the base
embedding: ``normalise(w * base + (1 - w) * normalise(bridge(features)))``, with ``w`` chosen on
validation pairs. Applying it needs only numpy, so the query path stays free of torch.

Kinds: ``linear`` (``x W + b``), ``mlp`` (``relu(x W1 + b1) W2 + b2``) and ``conse`` (a re-learned
ConSE class-text matrix over the CNN's own classifier: ``topk-softmax((s x Wc + bc) / T) C``, where
``s`` stands in for the feature norm the store does not keep). When
input and output share one space (CLIP-family encoders) ``residual`` adds ``x`` to the output, so a
zero-initialised bridge starts at the base model.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import BridgeError
from .base import Encoder, ImageVectors, l2_normalize

METHODS = ("linear", "mlp", "conse")
FORMAT_VERSION = 1


@dataclass
class Bridge:
    method: str
    weight: float  # w: share of the base embedding in the fused vector
    residual: bool
    tensors: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)  # training hash, figures, dims, base fingerprint ...

    def project(self, features: np.ndarray) -> np.ndarray:
        """Features (n, in) -> bridge output (n, out), L2-normalised (before fusion)."""
        x = np.asarray(features, dtype=np.float32)
        t = self.tensors
        if self.method == "linear":
            y = x @ t["W"] + t["b"]
        elif self.method == "mlp":
            y = np.maximum(x @ t["W1"] + t["b1"], 0.0) @ t["W2"] + t["b2"]
        elif self.method == "conse":
            logits = (x @ t["Wc"] * float(t["scale"][0]) + t["bc"]) / float(t["temperature"][0])
            y = topk_softmax(logits, int(t["topk"][0])) @ t["C"]
        else:  # guarded by from_bytes
            raise BridgeError(f"unknown bridge method {self.method!r}")
        if self.residual:
            y = y + x
        return l2_normalize(y)

    def apply(self, base: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The fused shared-space vectors for images with these base embeddings and features."""
        base = np.asarray(base, dtype=np.float32)
        if len(base) == 0:
            return base.reshape(0, self.out_dim)
        return fuse(base, self.project(features), self.weight)

    @property
    def in_dim(self) -> int:
        return int(self.info["in_dim"])

    @property
    def out_dim(self) -> int:
        return int(self.info["out_dim"])

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        meta = {"format": str(FORMAT_VERSION), "method": self.method, "weight": repr(float(self.weight)),
                "residual": "1" if self.residual else "0", "info": json.dumps(self.info, sort_keys=True)}
        return save({k: np.ascontiguousarray(v) for k, v in self.tensors.items()}, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> Bridge:
        from safetensors.numpy import load

        try:
            tensors = load(data)
            meta = _metadata(data)
            if meta.get("format") != str(FORMAT_VERSION):
                raise ValueError(f"format {meta.get('format')!r}")
            method = meta["method"]
            if method not in METHODS:
                raise ValueError(f"method {method!r}")
            bridge = cls(method, float(meta["weight"]), meta["residual"] == "1", dict(tensors),
                         json.loads(meta["info"]))
            probe = bridge.project(np.zeros((1, bridge.in_dim), np.float32))
            if probe.shape != (1, bridge.out_dim) or not 0.0 <= bridge.weight <= 1.0:
                raise ValueError("shapes do not match")
        except BridgeError:
            raise
        except Exception as exc:
            raise BridgeError(f"the stored tuned bridge cannot be read ({exc}); run 'ravl tune --reset' "
                              "to return to the base encoder") from exc
        return bridge


def _metadata(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__", {})


def fuse(base: np.ndarray, tuned: np.ndarray, weight: float) -> np.ndarray:
    return l2_normalize(weight * np.asarray(base, np.float32) + (1.0 - weight) * np.asarray(tuned, np.float32))


def topk_softmax(logits: np.ndarray, k: int) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if k < p.shape[1]:
        cut = -np.partition(-p, k - 1, axis=1)[:, k - 1:k]
        p = np.where(p >= cut, p, 0.0)
    return p.astype(np.float32)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TunedEncoder(Encoder):
    """An encoder whose image embeddings go through a collection's tuned bridge; texts, features and
    everything else come from the base encoder unchanged."""

    def __init__(self, inner: Encoder, bridge: Bridge, bridge_sha256: str):
        self.inner = inner
        self.bridge = bridge
        self.bridge_sha256 = bridge_sha256
        self.spec, self.dim, self.feature_dim = inner.spec, inner.dim, inner.feature_dim
        self.batch_size, self.image_size_hint = inner.batch_size, inner.image_size_hint

    @property
    def fingerprint(self) -> str:
        return f"{self.inner.fingerprint}+tuned-{self.bridge.method}-{self.bridge_sha256[:12]}"

    def preprocess(self, image) -> np.ndarray:
        return self.inner.preprocess(image)

    def embed_pixels(self, pixels: np.ndarray) -> ImageVectors:
        vecs = self.inner.embed_pixels(pixels)
        return ImageVectors(self.bridge.apply(vecs.embedding, vecs.features), vecs.features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_texts(texts)

    def top_labels(self, images, k: int = 5) -> list[list[tuple[str, float]]]:
        return self.inner.top_labels(images, k=k)

    def describe(self) -> dict:
        info = self.inner.describe()
        info.update(fingerprint=self.fingerprint, base_fingerprint=self.inner.fingerprint,
                    bridge={"method": self.bridge.method, "weight": self.bridge.weight,
                            "sha256": self.bridge_sha256,
                            **{k: v for k, v in self.bridge.info.items() if k in ("trained_at", "data_sha256",
                                                                                   "pairs", "figures")}})
        return info

    def __getattr__(self, name: str):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
