"""ConSE bridge (Norouzi et al., 2014): ImageNet class probabilities -> a sentence-embedding vector.

An image's vector is the L2-normalised, probability-weighted sum of the text embeddings of its
top-T classes. Each class embedding averages prompts over *all* its lemmas (several templates)
plus a sentence built from its WordNet gloss; the shipped recipe (all lemmas + gloss, T=20,
softmax temperature 2) was chosen on one half of the Tux Paint stamps. The class matrix is computed once per recipe and
cached as ``.npy`` (with a sha256 sidecar) under ``cache_dir('conse')``; ``benchmarks/conse_recipe.py`` measures recipes.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..config import cache_dir
from ..errors import ConfigError
from .base import l2_normalize
from .imagenet import ImageNetClass, imagenet_classes

#: bump when the way class texts are built changes (invalidates cached matrices and fingerprints)
BUILD_VERSION = 1


@dataclass(frozen=True)
class ConseRecipe:
    """How class texts are built and how class probabilities become a vector.

    Templates use ``{}`` for the lemma and ``{a}`` for it with an indefinite article.
    """

    templates: tuple[str, ...] = ("{}",)
    all_lemmas: bool = True
    definition_weight: float = 1.0  # weight of "a {name}, {definition}" in each class vector
    topk: int = 20  # T: classes combined per image
    temperature: float = 2.0  # softmax temperature on the logits (>1 flattens)

    def __post_init__(self):
        if not 1 <= self.topk <= 1000:
            raise ConfigError(f"ConSE topk must be between 1 and 1000, got {self.topk}")
        if not self.temperature > 0:
            raise ConfigError(f"ConSE temperature must be positive, got {self.temperature}")
        if self.definition_weight < 0 or (not self.templates and self.definition_weight == 0):
            raise ConfigError("ConSE needs prompt templates or a positive definition_weight")

    def class_key(self, text_model: str) -> str:
        """Hash of what the class matrix depends on (not topk/temperature)."""
        parts = {"v": BUILD_VERSION, "model": text_model, "templates": list(self.templates),
                 "all_lemmas": self.all_lemmas, "definition_weight": self.definition_weight,
                 "classes": _class_data_digest()}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def recipe_hash(self, text_model: str) -> str:
        """Hash of everything that changes the image vectors."""
        parts = {"class_key": self.class_key(text_model), "topk": self.topk, "temperature": self.temperature}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


#: the plain ConSE baseline the issue quotes (~15% R@1 on the stamps)
BASELINE = ConseRecipe(templates=("a photo of a {}",), all_lemmas=False, definition_weight=0.0,
                       topk=10, temperature=1.0)
#: the recipe ``default`` ships (chosen on the select half of the Tux Paint stamps)
DEFAULT_RECIPE = ConseRecipe()
#: the recipe ``default?text=multilingual`` ships: the same class texts, more classes per image
#: (chosen on the select half of the stamps over six languages: ``benchmarks/multilingual.py``)
MULTILINGUAL_RECIPE = ConseRecipe(topk=50)


def with_options(recipe: ConseRecipe, **options) -> ConseRecipe:
    """A copy of ``recipe`` with some fields replaced."""
    return replace(recipe, **options)


def recipe_dict(recipe: ConseRecipe) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()}


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


_DIGEST: str | None = None


def _class_data_digest() -> str:
    """Digest of the ImageNet class table (part of every ConSE fingerprint); memoised by the data
    files' identity, so a query process does not parse them just to check a fingerprint."""
    global _DIGEST
    if _DIGEST is None:
        from ..digests import memoised
        from .imagenet import data_files

        def compute() -> str:
            h = hashlib.sha256()
            for c in imagenet_classes():
                h.update(f"{c.synset}\t{','.join(c.lemmas)}\t{c.definition}\n".encode())
            return h.hexdigest()[:16]

        _DIGEST = memoised("imagenet-class-digest-v1", data_files(), compute)
    return _DIGEST


def class_texts(recipe: ConseRecipe, classes: Sequence[ImageNetClass]) -> tuple[list[str], list[int], list[float]]:
    """All class texts with the class index and weight of each (weights sum to 1 per class)."""
    texts, owners, weights = [], [], []
    for c in classes:
        lemmas = c.lemmas if recipe.all_lemmas else c.lemmas[:1]
        prompts = [t.format(lemma, a=_article(lemma)) for t in recipe.templates for lemma in lemmas]
        total = 1.0 + (recipe.definition_weight if c.definition else 0.0) if prompts else 1.0
        items = [(p, 1.0 / len(prompts) / total) for p in prompts]
        if c.definition and recipe.definition_weight > 0:
            items.append((f"{_article(c.name)}, {c.definition}", recipe.definition_weight / total if prompts else 1.0))
        for text, weight in items:
            texts.append(text)
            owners.append(c.index)
            weights.append(weight)
    return texts, owners, weights


def build_class_matrix(recipe: ConseRecipe, encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """(1000, d) L2-normalised class embeddings: weighted mean of each class's text embeddings."""
    classes = imagenet_classes()
    texts, owners, weights = class_texts(recipe, classes)
    vecs = encode(texts) * np.asarray(weights, np.float32)[:, None]
    out = np.zeros((len(classes), vecs.shape[1]), np.float32)
    np.add.at(out, np.asarray(owners), vecs)
    return l2_normalize(out)


def load_class_matrix(recipe: ConseRecipe, encode: Callable[[list[str]], np.ndarray],
                      text_model: str, dim: int) -> np.ndarray:
    """The class matrix from the cache, building and caching it when missing or bad.

    The ``.npy`` is used only when it hashes to the sha256 sidecar written beside it (sidecar
    first, then the matrix, each atomically: see :mod:`.onnx_cache`) and holds (1000, dim) finite
    float32 rows; anything else (a damaged, truncated or foreign file) is rebuilt."""
    from .onnx_cache import verified, write_verified

    path = cache_dir("conse") / f"classes-{recipe.class_key(text_model)}.npy"
    if verified(path):
        try:
            matrix = np.load(path, allow_pickle=False)
            if matrix.shape == (1000, dim) and matrix.dtype == np.float32 and np.isfinite(matrix).all():
                return matrix
        except (OSError, ValueError, EOFError):
            pass
    from ..progress import preparing

    preparing(f"the ConSE class matrix (1,000 ImageNet class names through {text_model})",
              "a few seconds with MiniLM, about a minute with e5")
    matrix = build_class_matrix(recipe, encode)
    buf = io.BytesIO()
    np.save(buf, matrix, allow_pickle=False)
    write_verified(path, buf.getvalue())
    return matrix


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def bridge(logits: np.ndarray, class_matrix: np.ndarray, recipe: ConseRecipe) -> np.ndarray:
    """Logits (n, 1000) -> (n, d) L2-normalised ConSE vectors."""
    probs = softmax(logits, recipe.temperature)
    k = recipe.topk
    if k < probs.shape[1]:
        top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
        weights = np.zeros_like(probs)
        np.put_along_axis(weights, top, np.take_along_axis(probs, top, axis=1), axis=1)
    else:
        weights = probs
    return l2_normalize(weights @ class_matrix)

