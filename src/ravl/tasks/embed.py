"""The embedding job (``POST /v1/embeddings``, the retrievers): the vectors a collection searches
with. A text gets its query vector (the collection's text encoder, as a plain query); an image gets
its shared-space embedding as the collection sees it (its tuned bridge applied, if any), not the
image features used for image-to-image search. ``model`` names them: the encoder fingerprint plus
the bridge (:attr:`Collection.active_fingerprint`)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..collection import Collection, check_texts
from ..errors import InputError

#: inputs per call (OpenAI's own limit is 2048)
MAX_INPUTS = 2048


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, dim) float32, L2-normalised, in input order
    model: str
    kinds: list[str]  # "text" or "image" per input


def embed(collection: Collection, inputs: Sequence[str | Image.Image]) -> Embeddings:
    """Texts (``str``) and images (PIL) in any order -> their vectors in input order."""
    if not inputs:
        raise InputError("'input' is empty; send a string or a list of strings")
    if len(inputs) > MAX_INPUTS:
        raise InputError(f"{len(inputs)} inputs in one request; send at most {MAX_INPUTS}")
    texts = [(n, x) for n, x in enumerate(inputs) if isinstance(x, str)]
    images = [(n, x) for n, x in enumerate(inputs) if not isinstance(x, str)]
    out = np.zeros((len(inputs), collection.dim), np.float32)
    if texts:
        check_texts([t for _, t in texts])
        vecs = collection.encoder.encode_texts([t for _, t in texts])
        out[[n for n, _ in texts]] = vecs
    if images:
        base = collection.base_encoder.embed_images([im.convert("RGB") for _, im in images])
        out[[n for n, _ in images]] = collection.bridged(base).embedding
    kinds = ["text" if isinstance(x, str) else "image" for x in inputs]
    return Embeddings(out, collection.active_fingerprint, kinds)
