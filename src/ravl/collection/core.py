"""The :class:`Collection` class: store access (the one door), index caches and search."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..encoders.base import Encoder, load_encoder
from ..encoders.bridge import Bridge, TunedEncoder
from ..errors import EncoderMismatchError, ItemNotFoundError
from ..fsutil import WriterLock
from ..hits import CaptionHit, CaptionSet, ImageHit, Knobs, check_k
from ..progress import Progress
from ..store import bulk
from ..store.db import OCR_SOURCE, Database, ItemRow, NewItem
from ..store.indexes import IndexSet
from ..store.integrity import clean_stale_tmp
from ..store.sqlite_errors import translating_sqlite_errors
from ..store.vectors import SearchIndex
from .photos import CollectionPhotos
from .search import Searching
from .sync import CollectionSync


class Collection(Searching, CollectionSync, CollectionPhotos):
    """Open with :func:`open_collection`."""

    def __init__(self, path: Path, db: Database, *, encoder: Encoder | None = None):
        self.path = path
        self._db = db  # private: everything outside store/ goes through the methods below
        meta = db.get_meta()
        self.encoder_spec = meta["encoder_spec"]
        self.fingerprint = meta["encoder_fingerprint"]
        self.dim = int(meta["dim"])
        self.feature_dim = int(meta["feature_dim"])
        #: how vectors are stored ('float32' or 'float16'); every read gives float32
        self.vector_dtype = db.codec.dtype
        self._encoder = encoder
        self._indexes = IndexSet(db, path / "index", {"images": self.dim, "features": self.feature_dim,
                                                      "captions": self.dim},
                                 readers={"images": self.item_embeddings},  # through the tuned bridge, if any
                                 extra_binding=self._extra_binding,
                                 queries={"images": self.text_query_sample, "captions": self.image_query_sample})
        self._bridge: tuple[int, tuple[Bridge, str] | None] | None = None  # (generation, (bridge, sha256))
        self._tuned: TunedEncoder | None = None
        self._search_facts: tuple[int, dict] | None = None  # (generation, facts): see search_facts()
        self._roots: tuple[int, tuple[Path, ...]] | None = None  # (generation, roots): see image_roots()
        self._lock = threading.Lock()
        self._writer_lock: WriterLock | None = None  # held while opened with create=True

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()
        lock, self._writer_lock = getattr(self, "_writer_lock", None), None
        if lock:
            lock.release()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def base_encoder(self) -> Encoder:
        """The encoder the collection was built with, loaded on first use and checked against the
        stored fingerprint (no tuned bridge: what ingest stores)."""
        with self._lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.encoder_spec)
            check_fingerprint(self.path, self.fingerprint, self._encoder)
            return self._encoder

    # --- facts --------------------------------------------------------------------------------
    @translating_sqlite_errors
    def info(self) -> dict:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        meta = self._db.get_meta()
        return {"path": str(self.path), **self._db.counts(), "encoder": self.encoder_spec,
                "fingerprint": self.active_fingerprint, "dim": self.dim, "feature_dim": self.feature_dim,
                "vector_dtype": self.vector_dtype, "created_at": meta.get("created_at"), "ravl_version": meta.get("ravl_version"),
                "generation": self._db.generation(), "size_bytes": size, "tuned": self.tuned_info(),
                "index": self._indexes.settings(), "indexes": self._indexes.facts(),
                "search": {"calibration": self.calibration().to_dict(), "stopword_langs": list(self.stopword_langs())}}

    @translating_sqlite_errors
    def get_item(self, item_id: int) -> ItemRow:
        row = self._db.items([item_id]).get(item_id) if _valid_id(item_id) else None
        if row is None:
            raise ItemNotFoundError(f"no item with id {item_id} in {self.path}; list ids with 'ravl search'")
        return row

    @translating_sqlite_errors
    def delete(self, item_ids: Sequence[int]) -> int:
        return self._db.delete_items([i for i in item_ids if _valid_id(i)])

    # --- store access: the one door (the SQL lives in store/) ---------------------------------
    def counts(self) -> dict[str, int]:
        """``{"images": n, "captions": m}``."""
        return self._db.counts()

    def generation(self) -> int:
        """Bumped by every write; caches keyed on it are valid while it is unchanged."""
        return self._db.generation()

    def file_states(self) -> dict[str, tuple[int, int, int, str]]:
        """uri -> (item id, size, mtime_ns, sha256) of every item."""
        return self._db.file_states()

    def image_roots(self) -> tuple[Path, ...]:
        """The folders the items' files live in (the smallest covering set), per database state."""
        generation = self._db.generation()
        cached = self._roots
        if cached is None or cached[0] != generation:
            parents = sorted({Path(uri).parent.resolve() for uri in self._db.file_states()}, key=lambda p: len(p.parts))
            roots: list[Path] = []
            for p in parents:
                if not any(p.is_relative_to(r) for r in roots):
                    roots.append(p)
            cached = self._roots = (generation, tuple(roots))
        return cached[1]

    def item_by_uri(self, uri: str) -> ItemRow | None:
        return self._db.item_by_uri(uri)

    def items(self, item_ids: Sequence[int]) -> dict[int, ItemRow]:
        """item id -> row (uri, hashes, size, metadata, captions) for the ids that exist."""
        return self._db.items(item_ids)

    def item_metadata(self, item_ids: Iterable[int] | None = None) -> list[tuple[int, str, dict]]:
        """(id, uri, metadata) of every item, or of ``item_ids``, by id."""
        return self._db.item_metadata(item_ids)

    def captions_by_item(self, item_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
        """item id -> caption texts (all items when ``item_ids`` is None)."""
        return self._db.captions_by_item(item_ids)

    def caption_rows(self, caption_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        """caption id -> (text, item id, item uri)."""
        return self._db.caption_rows(caption_ids)

    def item_vectors(self, item_ids: Sequence[int] | None = None, which: str = "emb") -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of items' shared-space embeddings (``emb``) or image features (``feat``)."""
        return self._db.item_vectors(item_ids, which)

    def caption_vectors(self, caption_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of captions (all when ``caption_ids`` is None)."""
        return self._db.caption_vectors(caption_ids)

    def export_rows(self, chunk: int) -> Iterator[list[dict]]:
        """Every item with its captions and vectors, ``chunk`` items at a time, in id order."""
        return bulk.export_rows(self._db, chunk)

    def add_batch(self, new_items: Sequence[NewItem], touched: Sequence[tuple[int, int, int]] = (),
                  extra_captions: Sequence[tuple[int, str, np.ndarray, str]] = (),
                  on_skip: Callable[[str, str], None] | None = None) -> list[int | None]:
        """Write one ingest batch in one transaction (see :meth:`Database.write_batch`); the ids of
        ``new_items`` (None for one that could not be stored, its reason sent to ``on_skip``)."""
        return self._db.write_batch(new_items, touched, extra_captions, on_skip=on_skip)

    def replace_captions(self, source: str, batch: Sequence[tuple[int, Sequence[tuple[str, np.ndarray]], dict]]) -> int:
        """Replace the captions of one ``source`` (e.g. ``'ocr'``) and the metadata of some items in
        one transaction; returns how many captions were added."""
        return self._db.replace_captions(source, batch)

    # --- indexes ------------------------------------------------------------------------------
    def _index(self, name: str) -> SearchIndex:
        """The ``name`` index for the database as it is now (from its sealed cache file when that
        verifies, else built as the recorded index settings ask)."""
        return self._indexes.get(name)

    def index_binding(self, name: str) -> dict:
        """What the ``name`` index cache must be sealed to now (collection id, generation, count,
        dim, the index plan's kind and factory string, and for ``images`` the tuned bridge)."""
        return self._indexes.binding(name)

    def _extra_binding(self, name: str) -> dict:
        # a cache built from float32 vectors is never taken for one of float16 vectors (and back);
        # float32 adds nothing, so caches sealed before the option stay valid
        extra: dict[str, str | None] = {} if self.vector_dtype == "float32" else {"vector_dtype": self.vector_dtype}
        if name == "images":  # its vectors go through the tuned bridge, if any
            extra["bridge"] = self._db.get_meta().get("bridge_sha256")
        return extra

    @translating_sqlite_errors
    def clean_stale_index_files(self) -> int:
        """Remove index ``*.tmp`` files a killed writer left (older than ``STALE_TMP_SECONDS``)."""
        return clean_stale_tmp(self.path / "index")

    @translating_sqlite_errors
    def refresh_indexes(self, *, lazy: bool = False, progress: Progress | None = None) -> None:
        """Bring every index cache file up to date and record the facts of those built (shown by
        :meth:`info`). ``lazy``, for a writer that is about to exit (the end of an ingest): a cache
        that its next reader can catch up from the change log, and that would not be rewritten
        now, is left as it is instead of being loaded here. ``progress`` hears the steps of each
        index built ("index images: adding", counted in vectors)."""
        self._indexes.refresh(lazy=lazy, progress=progress)
        self.refit_calibration(lazy=lazy)

    # --- index kinds ----------------------------------------------------------------------------
    @translating_sqlite_errors
    def index_config(self) -> dict:
        """``{"kind": 'auto'|'flat'|'hnsw'|'ivfpq', "memory_budget": bytes or None}``, as recorded."""
        return self._indexes.settings()

    @translating_sqlite_errors
    def set_index_config(self, kind: str | None = None, memory_budget: int | str | None = None) -> dict:
        """Record the index kind and memory budget ('2GB', bytes; 0 = none; None keeps the recorded
        value) after checking them against the collection's size (a ConfigError says what would
        fit). The indexes are built that way at the next write's end, or by :meth:`reindex`."""
        return self._indexes.set_settings(kind, memory_budget)

    @translating_sqlite_errors
    def reindex(self, kind: str | None = None, memory_budget: int | str | None = None, *,
                progress: Progress | None = None) -> dict[str, dict]:
        """:meth:`set_index_config`, then rebuild every index from the stored vectors (IVF-PQ is
        retrained); returns :meth:`index_facts`. ``progress`` hears each build's steps."""
        return self._indexes.rebuild(kind, memory_budget, progress=progress)

    @translating_sqlite_errors
    def index_facts(self) -> dict[str, dict]:
        """index name -> kind, FAISS factory, parameters, vector count, build seconds, bytes, tuned
        search parameters and recall@10 measured at build time (as recorded)."""
        return self._indexes.facts()

    def index_stats(self) -> dict[str, dict[str, int]]:
        """index name -> how many times this process found it ``held`` in memory, ``loaded`` it
        from its cache file, ``caught_up`` a held or cached index from the change log, or ``built`` it."""
        return self._indexes.stats()

    # --- captions -----------------------------------------------------------------------------
    def scene_captions(self, item_ids: Sequence[int]) -> CaptionSet:
        """The captions of ``item_ids`` (in that order, then by caption id) that describe the scene:
        text that ``ravl index --ocr`` read from an image is left out."""
        cap_ids = self._db.caption_ids_for_items(list(item_ids), exclude_source=OCR_SOURCE)
        pairs = [(cid, item) for item in item_ids for cid in cap_ids.get(item, [])]
        if not pairs:
            return CaptionSet([], [], [], np.zeros((0, self.dim), np.float32))
        ids, vecs = self._db.caption_vectors([cid for cid, _ in pairs])
        by_id = dict(zip(ids.tolist(), vecs))
        rows = self._db.caption_rows([cid for cid, _ in pairs])
        return CaptionSet([cid for cid, _ in pairs], [item for _, item in pairs], [rows[cid][0] for cid, _ in pairs],
                          np.stack([by_id[cid] for cid, _ in pairs]))

    # --- search (the rest in .search) ----------------------------------------------------------
    @translating_sqlite_errors
    def search_vectors(self, queries: np.ndarray, *, index: str, k: int, exclude_items: Iterable[int] = (),
                       knobs: Knobs | None = None) -> list[list[ImageHit] | list[CaptionHit]]:
        """Search the ``images``, ``features`` or ``captions`` index with raw query vectors; a hit's
        score is the raw inner product. ``knobs`` (:class:`~ravl.hits.Knobs`: HNSW ``ef_search``,
        IVF-PQ ``nprobe`` and ``rerank``) override the defaults tuned at build time for these
        queries; exact indexes ignore them."""
        check_k(k)
        raw = self._nearest(queries, index, k, exclude_items, knobs)
        return self._hits("captions" if index == "captions" else "images", [[(i, s, {}) for i, s in r] for r in raw])


def _valid_id(item_id) -> bool:
    """Ids are SQLite integers: anything outside int64 (or not an int) names no item."""
    return isinstance(item_id, int) and not isinstance(item_id, bool) and 0 <= item_id < 2**63


def check_fingerprint(path: Path, stored: str, encoder: Encoder) -> None:
    if encoder.fingerprint != stored:
        raise EncoderMismatchError(
            f"collection {path} was built with encoder {stored!r}, but {encoder.fingerprint!r} is loaded; "
            "re-index into a new --collection folder to use this encoder"
        )
