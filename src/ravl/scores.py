"""One score a person can read: the probability that a hit is the query's match, in [0, 1].

A collection with captioned images calibrates itself (:mod:`ravl.collection.calibration`): each
sampled caption is a query whose match is its own image; its own caption is left out of the
keyword side (else the keyword search finds the query itself). On those pairs ravl picks the
hybrid keyword weight ``w`` (ranking by ``cosine + w * coverage``) that gives the best
Recall@1 + Recall@10, and fits, for each mode, a logistic curve from the raw ranking value to
"this hit is the match". Collections with too few captions use the curves and weight chosen on
the quality suite (``benchmarks/quality.py``; docs/search.md). Image-to-image similarity has no
such pairs: its score is the cosine of the image features, 1 for the same image.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

#: below this many captioned pairs a collection uses the suite's defaults
MIN_PAIRS = 40
#: pairs sampled for a fit
FIT_PAIRS = 250
#: the keyword weights tried (0: vector ranking alone)
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
#: a hit at or above this score is "a good match" (more likely the match than not)
GOOD_MATCH = 0.5


def sigmoid(x: np.ndarray | float, a: float, b: float) -> np.ndarray:
    z = np.clip(a * np.asarray(x, np.float64) + b, -30, 30)
    return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> tuple[float, float]:
    """(a, b) of ``P(y=1 | x) = sigmoid(a x + b)`` by Newton's method with a small L2 penalty on a;
    ``a`` is kept >= 0 so the score never falls as the evidence grows."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * x + b, -30, 30)))
        w = p * (1 - p) + 1e-9
        g = np.array([np.sum((p - y) * x) + l2 * a, np.sum(p - y)])
        h = np.array([[np.sum(w * x * x) + l2, np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        a, b = a - float(step[0]), b - float(step[1])
        if not (math.isfinite(a) and math.isfinite(b)):
            return 1.0, 0.0
        if abs(step).max() < 1e-7:
            break
    if a < 0:  # no monotone relation: a constant at the base rate
        a, b = 0.0, float(math.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6)))
    return round(a, 6), round(b, 6)


@dataclass(frozen=True)
class Calibration:
    """How raw ranking values become scores, per mode, and the hybrid keyword weight."""
    keyword_weight: float
    vector: tuple[float, float]    # cosine -> score
    hybrid: tuple[float, float]    # cosine + weight * coverage -> score
    keyword: tuple[float, float]   # coverage -> score
    source: str = "suite"          # "collection" (fitted on its own pairs) or "suite"
    pairs: int = 0
    generation: int | None = None
    fit: dict = field(default_factory=dict)  # recall of each weight tried, for `ravl info`

    def weight_for(self, requested: float | None) -> float:
        """The hybrid keyword weight a search uses: the request's, else this calibration's."""
        return self.keyword_weight if requested is None else float(requested)

    def score(self, mode: str, raw: np.ndarray | float) -> np.ndarray:
        a, b = {"vector": self.vector, "hybrid": self.hybrid, "keyword": self.keyword}[mode]
        return sigmoid(raw, a, b)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(float(d["keyword_weight"]), tuple(d["vector"]), tuple(d["hybrid"]), tuple(d["keyword"]),
                   str(d.get("source", "collection")), int(d.get("pairs", 0)), d.get("generation"), d.get("fit", {}))


#: chosen on the quality suite (benchmarks/quality.py, the default encoder on Tux Paint stamps);
#: used by collections with fewer than MIN_PAIRS captioned images
SUITE_DEFAULT = Calibration(keyword_weight=0.3, vector=(9.851505, -8.613479), hybrid=(7.996012, -7.50553),
                            keyword=(16.629461, -17.129418))


def image_similarity(cosine: np.ndarray | float) -> np.ndarray:
    """Image-to-image score: the features' cosine, clipped to [0, 1]."""
    return np.clip(np.asarray(cosine, np.float64), 0.0, 1.0)
