"""Photo metadata of a collection's items, as methods of :class:`~ravl.collection.core.Collection`:
the items a :class:`~ravl.filters.Filters` allows, each item's date (for sorting), and the items
whose metadata ingest has yet to back-fill."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..filters import Filters
from ..store import photos
from ..store.db import Database
from ..store.sqlite_errors import translating_sqlite_errors


class CollectionPhotos:
    """Mixed into :class:`~ravl.collection.core.Collection`."""

    path: Path
    _db: Database

    @translating_sqlite_errors
    def allowed_items(self, filters: Filters | None) -> np.ndarray | None:
        """Sorted int64 ids of the items ``filters`` allows; None when there is no filter (all are)."""
        if filters is None or filters.empty:
            return None
        with self._db.snapshot() as conn:
            return photos.allowed_ids(conn, after=filters.after, before=filters.before, folder=filters.folder,
                                      near=filters.near, camera=filters.camera)

    @translating_sqlite_errors
    def item_dates(self, item_ids: Sequence[int] | None = None) -> dict[int, float]:
        """item id -> its date for sorting: when the photo was taken (EXIF), else its file's
        modification time; wall-clock seconds where it was taken, as if UTC."""
        return photos.item_dates(self._db.conn, item_ids)

    @translating_sqlite_errors
    def photo_metadata(self, item_ids: Sequence[int]) -> dict[int, dict]:
        """item id -> {taken_at, taken_offset, lat, lon, camera} (for display)."""
        return photos.photo_rows(self._db.conn, item_ids)

    def photo_unread(self) -> set[int]:
        """Ids of items whose photo metadata was never read (back-filled by the next ingest)."""
        return photos.unread_ids(self._db.conn)
