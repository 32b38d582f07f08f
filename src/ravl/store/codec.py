"""How stored vectors become bytes and back: the one place that knows the storage dtype.

A collection declares its storage dtype when it is created (``meta.vector_dtype``): ``float32``
(the default, and every collection made before the option) or ``float16`` (half the bytes per
vector; a unit vector's components keep about 3 significant digits). Whatever is stored, every
read decodes to float32, so index builds, catch-up and the exact re-ranking of IVF-PQ shortlists
compute in float32 arithmetic.

An item's image features that are byte-for-byte its embedding once encoded (CLIP-family encoders,
whose image features *are* the shared-space embedding) are stored once: the ``feat`` column then
holds an empty blob, read back as the embedding (:data:`SAME_AS_EMB`, :data:`FEAT_SQL`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

#: storage dtypes a collection can declare; the first is the default
VECTOR_DTYPES = ("float32", "float16")
DEFAULT_DTYPE = VECTOR_DTYPES[0]
#: the ``feat`` blob meaning "the same as this item's ``emb``"
SAME_AS_EMB = b""
#: the ``meta`` key set (to '1') once any item is written with features of its own, never unset:
#: while it is absent every item's features are its embedding (schema step 7 sets it for a database
#: that already holds such an item), so the ``features`` index can be the ``images`` index
FEATURES_SEPARATE = "features_separate"
#: SQL for an item's features as stored bytes (the embedding's when stored once)
FEAT_SQL = "CASE WHEN length(feat) = 0 THEN emb ELSE feat END"


def check_dtype(name: object) -> str:
    """``name`` as a storage dtype, or a ConfigError listing the choices."""
    value = str(name).strip().lower()
    if value not in VECTOR_DTYPES:
        raise ConfigError(f"vector dtype {name!r} is not one of {', '.join(VECTOR_DTYPES)}; choose one of them")
    return value


@dataclass(frozen=True)
class VectorCodec:
    """Encode vectors for one collection's storage dtype; decode to float32."""
    dtype: str = DEFAULT_DTYPE

    @property
    def stored(self) -> np.dtype:
        return np.dtype(np.float16 if self.dtype == "float16" else np.float32)

    def encode(self, vec: np.ndarray) -> bytes:
        """One vector as stored bytes."""
        return np.ascontiguousarray(vec, dtype=self.stored).tobytes()

    def encode_features(self, emb_blob: bytes, features: np.ndarray) -> bytes:
        """The ``feat`` blob: :data:`SAME_AS_EMB` when ``features`` encode to exactly ``emb_blob``
        (decided per item, so an encoder with separate features never loses them)."""
        data = self.encode(features)
        return SAME_AS_EMB if data == emb_blob else data

    def decode(self, data: bytes) -> np.ndarray:
        """One stored vector as float32."""
        return np.frombuffer(data, dtype=self.stored).astype(np.float32)

    def decode_rows(self, blobs: Sequence[bytes]) -> np.ndarray:
        """Stored vectors of one dimension as an (n, dim) float32 array."""
        if not blobs:
            return np.zeros((0, 0), np.float32)
        flat = np.frombuffer(b"".join(blobs), dtype=self.stored)
        return flat.reshape(len(blobs), -1).astype(np.float32, copy=False)


#: float32 storage: what a collection without ``meta.vector_dtype`` holds
FLOAT32 = VectorCodec()


def codec_for(meta: dict[str, str]) -> VectorCodec:
    """The codec of a database whose ``meta`` table is ``meta``."""
    return VectorCodec(check_dtype(meta.get("vector_dtype") or DEFAULT_DTYPE))
