"""One search request: the query's terms with their weights and every search option, validated
once where it enters (CLI, HTTP, page, Python API) and passed unchanged down to the store.

Query arithmetic (rclip-style): ``"beach -people"``, ``"2:sunset + beach"``, ``"pepper NOT red"``.
Terms are separated by ``+``, ``-`` (with spaces around them) or ``NOT``; a word written ``-word``
is a term of its own with a negative weight; ``N:term`` weighs a term by ``N``. Terms combine in
the collection's shared space (text vectors and images' shared-space embeddings): the query
vector is the normalised weighted sum. A negative text term also removes the items whose text
holds its words (keyword matches), so "X but not Y" does not return a captioned Y.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import ConfigError
from .hits import MAX_K, Knobs, check_k, check_target, check_texts
from .hybrid import Fusion, check_mode

TermKind = Literal["text", "image", "item"]
SORTS = ("relevance", "date")
#: a term's weight must lie within this bound (a weight of 0 is refused: drop the term instead)
MAX_WEIGHT = 100.0
_SPLIT = re.compile(r"\s+(?:([+-])|NOT)\s+|^\s*NOT\s+")
_WEIGHT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*:\s*(.+)$", re.S)


@dataclass(frozen=True)
class Term:
    """One part of a query: a text, an image file (``value`` is its path), or a stored item's
    image (``value`` is its id), with a weight (negative: steer away from it)."""
    kind: TermKind
    value: str | int
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in ("text", "image", "item"):
            raise ConfigError(f"a query term is a text, an image or an item, got {self.kind!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < abs(w) <= MAX_WEIGHT:
            raise ConfigError(f"a term's weight must be a non-zero number within ±{MAX_WEIGHT:g}, got {w!r}")
        if self.kind == "item" and (isinstance(self.value, bool) or not isinstance(self.value, int)):
            raise ConfigError(f"an item term needs an item id, got {self.value!r}")
        if self.kind != "item" and (not isinstance(self.value, str) or not self.value.strip()):
            raise ConfigError(f"a {self.kind} term must be a non-empty string")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value, "weight": self.weight}


def parse_query(text: str, weight: float = 1.0) -> tuple[Term, ...]:
    """The text terms of a query string (see the module's doc); ``weight`` multiplies them all (a
    negative ``weight``: the string is subtracted from a query that has other terms)."""
    check_texts([text])
    terms: list[Term] = []
    sign = 1.0
    pos = 0
    for m in [*_SPLIT.finditer(text), None]:
        part = text[pos:m.start() if m else len(text)]
        terms += _segment(part, sign * weight)
        if m is not None:
            sign = 1.0 if m.group(1) == "+" else -1.0
            pos = m.end()
    if not terms:
        raise ConfigError(f"the query {text!r} has no terms; write words, e.g. 'beach -people' or '2:sunset + beach'")
    if weight > 0 and all(t.weight < 0 for t in terms):
        raise ConfigError(f"the query {text!r} only subtracts; add something to look for, e.g. 'beach -people'")
    return tuple(terms)


def _segment(part: str, weight: float) -> list[Term]:
    m = _WEIGHT.match(part)
    if m:
        weight *= float(m.group(1))
        part = m.group(2)
    words = part.split()
    negatives = [w[1:] for w in words if len(w) > 1 and w.startswith("-") and not _is_number(w)]
    positives = " ".join(w for w in words if not (len(w) > 1 and w.startswith("-") and not _is_number(w)))
    out = [Term("text", positives, weight)] if positives.strip() else []
    return out + [Term("text", w, -abs(weight)) for w in negatives]


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class SearchRequest:
    """Everything a search needs besides the collection. ``filters`` is a
    :class:`ravl.filters.Filters` (photo date, folder, place, camera) or None."""
    terms: tuple[Term, ...]
    target: str = "images"
    k: int = 10
    mode: str = "auto"
    fusion: Fusion = field(default_factory=Fusion)
    min_score: float = 0.0
    ef_search: int | None = None
    nprobe: int | None = None
    rerank: int | None = None
    filters: Any = None
    sort: str = "relevance"

    def __post_init__(self):
        if not isinstance(self.terms, tuple) or not self.terms or not all(isinstance(t, Term) for t in self.terms):
            raise ConfigError("a search needs at least one query term (a text, an image or an item)")
        if all(t.weight < 0 for t in self.terms):
            raise ConfigError("a query cannot only subtract; add a term to look for")
        check_target(self.target)
        if isinstance(self.k, bool):
            raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {self.k!r}")
        check_k(self.k)
        check_mode(self.mode)
        ms = self.min_score
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0.0 <= ms <= 1.0:
            raise ConfigError(f"min_score must be a number between 0 and 1, got {ms!r}")
        self.knobs()  # checks them
        if self.sort not in SORTS:
            raise ConfigError(f"sort must be one of {', '.join(SORTS)}, got {self.sort!r}")
        if self.mode == "keyword" and any(t.kind != "text" for t in self.terms):
            raise ConfigError("keyword mode searches text only; drop the image terms or use --mode auto")

    @classmethod
    def of_text(cls, text: str, **options) -> SearchRequest:
        """A request for one query string (with its arithmetic)."""
        return cls(parse_query(text), **options)

    def with_terms(self, *terms: Term) -> SearchRequest:
        return replace(self, terms=self.terms + terms)

    @property
    def texts(self) -> list[Term]:
        return [t for t in self.terms if t.kind == "text"]

    @property
    def simple_text(self) -> str | None:
        """The text when the query is one text term of weight 1 (the batched fast path), else None."""
        t = self.terms
        return str(t[0].value) if len(t) == 1 and t[0].kind == "text" and t[0].weight == 1.0 else None

    @property
    def single_image(self) -> bool:
        """One image or item term of positive weight: image similarity on image features."""
        return len(self.terms) == 1 and self.terms[0].kind in ("image", "item") and self.terms[0].weight > 0

    def knobs(self) -> Knobs:
        """The index knobs this request sets (validated)."""
        return Knobs(self.ef_search, self.nprobe, self.rerank)

    def describe(self) -> dict:
        """The query as JSON output shows it."""
        if self.simple_text is not None:
            return {"text": self.simple_text}
        if len(self.terms) == 1 and self.terms[0].weight == 1.0:
            return {self.terms[0].kind: self.terms[0].value}
        return {"terms": [t.to_dict() for t in self.terms]}
