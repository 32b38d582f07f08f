"""Keeping a collection in step with the folders it indexes, as methods of
:class:`~ravl.collection.core.Collection`: the ingest write with moves and replaced sidecar
captions, removal in bounded chunks, items whose file is gone, and the collection's caption
languages."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..progress import Progress
from ..store.db import Database, NewItem
from ..store.sqlite_errors import translating_sqlite_errors

#: meta key: the languages of sidecar lines that are indexed (comma-separated, e.g. 'en,fr')
CAPTION_LANGS_KEY = "caption_langs"


class CollectionSync:
    """Mixed into :class:`~ravl.collection.core.Collection`."""

    path: Path
    _db: Database
    _search_facts: tuple[int, dict] | None

    @translating_sqlite_errors
    def write_files(self, new_items: Sequence[NewItem], touched: Sequence[tuple[int, int, int]] = (),
                    extra_captions: Sequence[tuple[int, str, np.ndarray, str]] = (),
                    on_skip: Callable[[str, str], None] | None = None, *, moves: Sequence[tuple[int, str]] = (),
                    drop_captions: Sequence[tuple[int, str]] = (),
                    photos: Sequence[tuple[int, dict]] = ()) -> list[int | None]:
        """One ingest batch in one transaction: new and changed files, moved items (id, new uri),
        unchanged files (id, size, mtime_ns), captions dropped (item id, text) and added (item id,
        text, vector, source) and photo metadata set (item id, columns). The ids of ``new_items``
        (None for one that could not be stored)."""
        return self._db.write_batch(new_items, touched, extra_captions, on_skip, moves=moves,
                                    drop_captions=drop_captions, photos=photos)

    def caption_sources(self) -> dict[int, dict[str, str]]:
        """item id -> {caption text: source tag} of every caption."""
        return self._db.caption_sources()

    @translating_sqlite_errors
    def remove_items(self, item_ids: Sequence[int], on_chunk: Callable[[int], None] | None = None) -> int:
        """Delete items with their vectors and captions, in bounded transactions (index caches
        catch up from the change log); returns how many were removed."""
        return self._db.delete_items(item_ids, on_chunk=on_chunk)

    @translating_sqlite_errors
    def missing_items(self) -> list[tuple[int, str]]:
        """(id, uri) of every item whose file is gone (a file that exists but cannot be read is
        not missing)."""
        return [(item_id, uri) for uri, (item_id, *_rest) in self._db.file_states().items()
                if not os.path.lexists(uri)]

    def caption_langs(self) -> tuple[str, ...]:
        """The languages of tagged sidecar lines that are indexed (English unless set)."""
        value = self._db.get_meta().get(CAPTION_LANGS_KEY)
        return tuple(v for v in value.split(",") if v) if value else ("en",)

    @translating_sqlite_errors
    def set_caption_langs(self, langs: Sequence[str]) -> None:
        with self._db.transaction() as c:
            self._db.set_meta({CAPTION_LANGS_KEY: ",".join(langs)}, c)
        self._search_facts = None  # the stopwords of searches follow (cached per generation)

    @translating_sqlite_errors
    def prune_missing(self, *, dry_run: bool = False, progress: Progress | None = None) -> list[tuple[int, str]]:
        """Remove every item whose file is gone, whatever source indexed it (``ravl prune``);
        returns their (id, uri). ``dry_run`` only lists them. ``progress`` hears the steps of an
        index rebuilt after the removal (:meth:`refresh_indexes`)."""
        gone = self.missing_items()
        if gone and not dry_run:
            self.remove_items([i for i, _ in gone])
            self.refresh_indexes(lazy=True, progress=progress)  # type: ignore[attr-defined]  # Collection's
        return gone
