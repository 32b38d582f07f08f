"""One shard behind a Ray Serve deployment: an ordinary collection opened read-only, answering the
router's three questions (the query's vectors, its candidates, the winners' hits). Plain Python:
:mod:`ravl.shards.deploy` wraps it in a deployment; tests may call it directly."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..collection.sharding import Evidence, evidence, query_vectors, render
from ..encoders.base import ImageVectors
from ..request import SearchRequest


class ShardWorker:
    """A read-only collection serving one shard; the encoder loads on first use (once per replica)."""

    def __init__(self, path: str | Path, name: str):
        from ..collection import open_collection

        self.name = name
        self.coll = open_collection(path, readonly=True)

    def facts(self) -> dict:
        """What the router checks before it fans out: the encoder (and tuned bridge) fingerprint,
        dimensions and counts."""
        c = self.coll
        return {"name": self.name, "path": str(c.path), "fingerprint": c.active_fingerprint, "dim": c.dim,
                "feature_dim": c.feature_dim, **c.counts()}

    def warm(self) -> str:
        """Load the encoder now (a replica does this at start, not on its first query)."""
        return self.coll.encoder.fingerprint

    def vectors(self, request: SearchRequest) -> tuple[np.ndarray | None, ImageVectors | None]:
        return query_vectors(self.coll, request)

    def evidence(self, request: SearchRequest, qvec: np.ndarray | None, images: Sequence[ImageVectors] = (),
                 exclude: Iterable[int] = ()) -> Evidence:
        return evidence(self.coll, request, qvec, images, exclude)

    def render(self, target: str, scored: list[tuple[int, float, dict]]) -> list:
        return render(self.coll, target, scored)

    def check(self) -> None:
        """Health: the database answers (raises otherwise)."""
        self.coll.generation()

    def close(self) -> None:
        self.coll.close()
