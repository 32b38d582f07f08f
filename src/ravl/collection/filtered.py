"""Search filters (photo date, folder, place, camera: :class:`ravl.filters.Filters`) applied before
top-k, and results sorted by date. Mixed into :class:`~ravl.collection.core.Collection`.

How a filter meets the vector index: when the filter allows at most ``EXACT_FILTER_LIMIT`` items,
their stored vectors are scored exactly (every allowed item is considered, whatever the index
kind); above that, the index is asked for ever deeper candidate lists (4x each round) until ``k``
allowed hits are found or the whole index has been read, so a filtered search returns ``k`` hits
whenever ``k`` allowed items exist.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..filters import Filters
from ..hits import Knobs
from .calibration import Calibrating

#: filters allowing at most this many items are searched exactly over those items' vectors
EXACT_FILTER_LIMIT = 50_000


class Filtering(Calibrating):
    """Filters and date sort of :class:`~ravl.collection.core.Collection`."""

    if TYPE_CHECKING:  # defined by CollectionPhotos (later in Collection's bases: no stub may shadow them)
        def allowed_items(self, filters: Filters | None) -> np.ndarray | None: ...
        def item_dates(self, item_ids: Sequence[int] | None = None) -> dict[int, float]: ...

    def allowed_set(self, filters: Filters | None) -> set[int] | None:
        """The item ids ``filters`` allows, or None when every item is allowed."""
        if filters is None:
            return None
        if not isinstance(filters, Filters):
            from ..errors import ConfigError

            raise ConfigError(f"filters must be a ravl.filters.Filters, got {type(filters).__name__}")
        ids = self.allowed_items(filters)
        return None if ids is None else set(ids.tolist())

    def _filtered_nearest(self, query: np.ndarray, index: str, k: int, allowed: set[int], excluded: set[int],
                          knobs: Knobs | None) -> list[tuple[int, float]]:
        """The ``k`` nearest among ``allowed`` items (caption ids for ``captions``), best first."""
        items = sorted(allowed - excluded)
        if not items:
            return []
        if len(items) <= EXACT_FILTER_LIMIT:
            if index == "captions":
                cids = [c for ids in self._db.caption_ids_for_items(items).values() for c in ids]
                if not cids:
                    return []
                ids, vecs = self.caption_vectors(cids)
            elif index == "features":
                ids, vecs = self.item_vectors(items, which="feat")
            else:
                ids, vecs = self.item_embeddings(items)
            if not len(ids):
                return []
            scores = vecs @ np.asarray(query, np.float32).reshape(-1)
            order = np.argsort(-scores, kind="stable")[:k]
            return [(int(ids[i]), float(scores[i])) for i in order]
        total = self.search_facts()["captions" if index == "captions" else "images"]
        depth = 4 * k
        while True:
            found = self._nearest(np.asarray(query, np.float32).reshape(1, -1), index, min(depth, total),
                                  list(excluded), knobs)[0]
            owner = self._owners(index, [i for i, _ in found])
            hits = [(i, s) for i, s in found if owner[i] in allowed]
            if len(hits) >= k or depth >= total:
                return hits[:k]
            depth *= 4

    def _owners(self, index: str, ids: list[int]) -> dict[int, int]:
        """id -> its item id (a caption's owner for ``captions``)."""
        if index != "captions":
            return {i: i for i in ids}
        return {c: row[1] for c, row in self.caption_rows(ids).items()}

    def _by_date(self, target: str, scored: list) -> list:
        """``scored`` (id, score, extras) reordered newest first (undated last, by score)."""
        owner = self._owners("captions" if target == "captions" else "images", [i for i, _, _ in scored])
        dates = self.item_dates(sorted(set(owner.values())))
        return sorted(scored, key=lambda s: -dates.get(owner.get(s[0], -1), float("-inf")))
