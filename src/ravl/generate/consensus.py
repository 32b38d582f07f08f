"""The no-model generator: consensus caption re-ranking (Devlin et al., 2015).

Among the captions of an image's nearest neighbours, the consensus caption is the candidate
with the highest mean similarity to the *other* candidates. Similarity is the cosine of the
caption vectors when they are given, otherwise an n-gram overlap (CIDEr-style: the cosine of
1- to 4-gram count vectors, averaged over the orders present, without IDF weighting — IDF over a handful of
candidates would down-weight exactly the words they agree on).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError, GenerationError, InputError
from ..specs import Spec, declare
from .base import GenerationParams, Generator, OnText

_TOKEN = re.compile(r"\w+", re.UNICODE)
_MAX_N = 4
_TIE_TOLERANCE = 1e-9


def _ngrams(text: str) -> list[Counter]:
    tokens = _TOKEN.findall(text.lower())
    return [Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)) for n in range(1, _MAX_N + 1)]


def _cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    dot = sum(count * b[gram] for gram, count in a.items() if gram in b)
    if not dot:
        return 0.0
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm


def _gram_similarity(grams_a: list[Counter], grams_b: list[Counter]) -> float:
    # Orders that neither caption is long enough to have are left out, so "a dog" ~ "a dog" is 1.
    pairs = [(x, y) for x, y in zip(grams_a, grams_b) if x or y]
    return sum(_cosine(x, y) for x, y in pairs) / len(pairs) if pairs else 0.0


def ngram_similarity(a: str, b: str) -> float:
    """Mean over n = 1..4 of the cosine between two captions' n-gram count vectors, in [0, 1]."""
    return _gram_similarity(_ngrams(a), _ngrams(b))


def _similarity_matrix(candidates: Sequence[str], vectors: np.ndarray | None) -> np.ndarray:
    n = len(candidates)
    if vectors is None:
        grams = [_ngrams(c) for c in candidates]
        sims = np.eye(n, dtype=np.float64)
        for i in range(n):
            for j in range(i + 1, n):
                sims[i, j] = sims[j, i] = _gram_similarity(grams[i], grams[j])
        return sims
    vecs = np.asarray(vectors, dtype=np.float64)
    if vecs.ndim != 2 or vecs.shape[0] != n:
        raise InputError(
            f"consensus needs one vector per candidate: got {n} candidates and vectors of shape "
            f"{tuple(vecs.shape)}; pass an (n, dim) array or vectors=None"
        )
    if not np.all(np.isfinite(vecs)):
        raise InputError("consensus vectors contain NaN or infinity; re-encode the captions")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs / np.where(norms > 0, norms, 1.0)  # tolerate vectors that are not quite unit length
    return vecs @ vecs.T


def consensus_select(candidates: Sequence[str], vectors: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """Pick the consensus caption.

    Returns ``(best_index, mean_scores)``: ``mean_scores[i]`` is candidate ``i``'s mean
    similarity to the other candidates (0.0 for a lone candidate), and ``best_index`` is the
    first candidate whose score is the highest (ties go to the earlier, i.e. better retrieved,
    candidate). ``vectors`` are the candidates' (n, dim) L2-normalised text embeddings, or
    ``None`` for n-gram overlap.
    """
    if isinstance(candidates, str):
        raise InputError("consensus_select takes a list of candidate captions, not one string")
    candidates = list(candidates)
    if not candidates:
        raise InputError("no candidate captions to choose from; the nearest images have no captions")
    n = len(candidates)
    sims = _similarity_matrix(candidates, vectors)
    if n == 1:
        return 0, np.zeros(1, dtype=np.float64)
    scores = (sims.sum(axis=1) - np.diag(sims)) / (n - 1)
    best = int(np.flatnonzero(scores >= scores.max() - _TIE_TOLERANCE)[0])
    return best, scores


class ConsensusGenerator(Generator):
    """Selects the consensus caption among retrieved ones; writes nothing, so answers no questions."""

    spec = "consensus"
    supports_images = False
    is_language_model = False

    def select(self, candidates: Sequence[str], vectors: np.ndarray | None = None) -> tuple[int, np.ndarray]:
        """Same as :func:`consensus_select`."""
        return consensus_select(candidates, vectors)

    def execute(self, prompt: str, *, params: GenerationParams, image: Image.Image | None,
                on_text: OnText | None) -> str:
        raise GenerationError(
            "the 'consensus' generator selects one of the retrieved captions and cannot write "
            "answers or new text; pass a language model with --generator (e.g. 'hf:/path/to/model')"
        )

    def __repr__(self) -> str:
        return "ConsensusGenerator()"


@declare()
def create(spec: Spec) -> ConsensusGenerator:
    """No model: picks the retrieved caption the others agree with most (answers no questions)."""
    if spec.name or spec.options:
        raise ConfigError(f"the consensus generator takes no model or options; use plain 'consensus', not {str(spec)!r}")
    return ConsensusGenerator()
