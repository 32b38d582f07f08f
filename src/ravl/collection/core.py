"""The :class:`Collection` class: store access (the one door), index caches and search."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..encoders.base import Encoder, ImageVectors, load_encoder
from ..encoders.bridge import Bridge, TunedEncoder
from ..errors import ConfigError, EncoderMismatchError, ItemNotFoundError
from ..fsutil import WriterLock
from ..hits import MAX_K, CaptionHit, CaptionSet, ImageHit, Target, check_k, check_search_params, check_target, check_texts
from ..hybrid import Fusion, check_mode, fts_terms, fuse, ranked
from ..store import bulk
from ..store.db import OCR_SOURCE, Database, ItemRow, NewItem
from ..store.indexes import IndexSet
from ..store.integrity import clean_stale_tmp
from ..store.sqlite_errors import translating_sqlite_errors
from ..store.vectors import SearchIndex
from .photos import CollectionPhotos
from .sync import CollectionSync
from .tuned import TunedBridge


class Collection(TunedBridge, CollectionSync, CollectionPhotos):
    """Open with :func:`open_collection`."""

    def __init__(self, path: Path, db: Database, *, encoder: Encoder | None = None):
        self.path = path
        self._db = db  # private: everything outside store/ goes through the methods below
        meta = db.get_meta()
        self.encoder_spec = meta["encoder_spec"]
        self.fingerprint = meta["encoder_fingerprint"]
        self.dim = int(meta["dim"])
        self.feature_dim = int(meta["feature_dim"])
        self._encoder = encoder
        self._indexes = IndexSet(db, path / "index", {"images": self.dim, "features": self.feature_dim,
                                                      "captions": self.dim},
                                 readers={"images": self.item_embeddings},  # through the tuned bridge, if any
                                 extra_binding=self._extra_binding)
        self._bridge: tuple[int, tuple[Bridge, str] | None] | None = None  # (generation, (bridge, sha256))
        self._tuned: TunedEncoder | None = None
        self._text_facts: tuple[int, bool, bool] | None = None  # (generation, keyword index?, any caption?)
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
                "created_at": meta.get("created_at"), "ravl_version": meta.get("ravl_version"),
                "generation": self._db.generation(), "size_bytes": size, "tuned": self.tuned_info(),
                "index": self._indexes.settings(), "indexes": self._indexes.facts()}

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
        if name == "images":  # its vectors go through the tuned bridge, if any
            return {"bridge": self._db.get_meta().get("bridge_sha256")}
        return {}

    @translating_sqlite_errors
    def clean_stale_index_files(self) -> int:
        """Remove index ``*.tmp`` files a killed writer left (older than ``STALE_TMP_SECONDS``)."""
        return clean_stale_tmp(self.path / "index")

    @translating_sqlite_errors
    def refresh_indexes(self, *, lazy: bool = False) -> None:
        """Bring every index cache file up to date and record the facts of those built (shown by
        :meth:`info`). ``lazy``, for a writer that is about to exit (the end of an ingest): a cache
        that its next reader can catch up from the change log, and that would not be rewritten
        now, is left as it is instead of being loaded here."""
        self._indexes.refresh(lazy=lazy)

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
    def reindex(self, kind: str | None = None, memory_budget: int | str | None = None) -> dict[str, dict]:
        """:meth:`set_index_config`, then rebuild every index from the stored vectors (IVF-PQ is
        retrained); returns :meth:`index_facts`."""
        return self._indexes.rebuild(kind, memory_budget)

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

    # --- search -------------------------------------------------------------------------------
    @translating_sqlite_errors
    def search_vectors(self, queries: np.ndarray, *, index: str, k: int, exclude_items: Iterable[int] = (),
                       ef_search: int | None = None,
                       nprobe: int | None = None) -> list[list[ImageHit] | list[CaptionHit]]:
        """Search the ``images``, ``features`` or ``captions`` index with raw query vectors.
        ``ef_search`` (HNSW) and ``nprobe`` (IVF-PQ) override the defaults tuned at build time
        (recall@10 >= 0.95) for this query; exact indexes ignore them."""
        check_k(k)
        raw = self._nearest(queries, index, k, exclude_items, ef_search, nprobe)
        return self._hits("captions" if index == "captions" else "images", [[(i, s, None) for i, s in r] for r in raw])

    def _nearest(self, queries: np.ndarray, index: str, k: int, exclude_items: Iterable[int] = (),
                 ef_search: int | None = None, nprobe: int | None = None) -> list[list[tuple[int, float]]]:
        """(id, score) of the ``k`` nearest per query; ids are caption ids for ``captions``."""
        knobs = check_search_params(ef_search, nprobe)
        excluded = list(exclude_items)
        if index == "captions":
            excluded = [c for ids in self._db.caption_ids_for_items(excluded).values() for c in ids]
        return self._indexes.search(index, queries, k, excluded, **knobs)

    def _hits(self, target: str, ranked_ids: list[list[tuple[int, float, dict | None]]]) -> list:
        """Hits for ``(id, score, found_by)`` lists: only the rows shown are read from the store."""
        wanted = sorted({i for row in ranked_ids for i, _, _ in row})
        if target == "captions":
            rows = self._db.caption_rows(wanted)
            return [[CaptionHit(c, rows[c][0], rows[c][1], rows[c][2], s, found) for c, s, found in row if c in rows]
                    for row in ranked_ids]
        items = self._db.items(wanted)
        return [[ImageHit(i, items[i].uri, s, items[i].captions, found) for i, s, found in row if i in items]
                for row in ranked_ids]

    def text_mode(self, mode: str) -> str:
        """``mode`` checked, ``auto`` resolved: ``hybrid`` when the collection holds text, else ``vector``."""
        check_mode(mode)
        generation = self._db.generation()
        if self._text_facts is None or self._text_facts[0] != generation:  # two queries per write, not per search
            self._text_facts = (generation, self._db.has_keyword_index(), self._db.counts()["captions"] > 0)
        _, has_index, has_text = self._text_facts
        if mode == "auto":
            return "hybrid" if has_index and has_text else "vector"
        if mode != "vector" and not has_index:
            raise ConfigError(f"collection {self.path} predates keyword search; run 'ravl index' on it once (any "
                              "source) to build its keyword index, or use --mode vector")
        return mode

    def search_text(self, texts: Sequence[str], *, target: Target = "images", k: int = 10, mode: str = "auto",
                    fusion: Fusion = Fusion(), ef_search: int | None = None, nprobe: int | None = None):
        """Text -> images or captions by ``mode``: ``vector`` (shared space), ``keyword`` (BM25 over
        captions, sidecar and OCR text), ``hybrid`` (both, reciprocal rank fusion) or ``auto``
        (hybrid when the collection holds text, else vector). Each hit's ``found_by`` gives the rank
        each signal gave it."""
        check_target(target)
        check_k(k)
        check_texts(texts)
        vectors = None if check_mode(mode) == "keyword" else self.encoder.encode_texts(list(texts))
        return self.search_text_vectors(texts, vectors, target=target, k=k, mode=mode, fusion=fusion,
                                        ef_search=ef_search, nprobe=nprobe)

    @translating_sqlite_errors
    def search_text_vectors(self, texts: Sequence[str], vectors: np.ndarray | None, *, target: Target = "images",
                            k: int = 10, mode: str = "vector", fusion: Fusion = Fusion(),
                            ef_search: int | None = None, nprobe: int | None = None):
        """:meth:`search_text` with the texts' vectors already computed (e.g. by a batcher); they are
        needed unless ``mode`` is ``keyword`` (``auto`` never resolves to it)."""
        check_target(target)
        check_k(k)
        mode = self.text_mode(mode)
        depth = k if mode == "vector" else min(MAX_K, max(50, 3 * k))
        nearest: list[list[tuple[int, float]]] = [[] for _ in texts]
        if mode != "keyword":
            if vectors is None:
                raise ConfigError(f"search mode {mode!r} needs the texts' vectors")
            nearest = self._nearest(vectors, target, depth, ef_search=ef_search, nprobe=nprobe)
        if mode == "vector":
            return self._hits(target, [ranked(row, "vector") for row in nearest])
        return self._hits(target, [fuse(row, self._keyword_ids(text, target, depth), mode, fusion, k)
                                   for text, row in zip(texts, nearest)])

    def _keyword_ids(self, text: str, target: str, depth: int) -> list[tuple[int, float]]:
        """(caption or item id, BM25 score) best first: an item ranks by its best caption."""
        terms = fts_terms(text)
        if not terms:
            return []
        rows = self._db.keyword_search(terms, depth if target == "captions" else depth * 4)
        if target == "captions":
            return [(cid, score) for cid, _, score in rows]
        best: dict[int, float] = {}
        for _, item_id, score in rows:
            best.setdefault(item_id, score)
        return list(best.items())[:depth]

    def search_image(self, images: Sequence[Image.Image], *, target: Target = "images", k: int = 10,
                     exclude_items: Iterable[int] = (), ef_search: int | None = None, nprobe: int | None = None):
        """Image -> similar images (image features) or image -> captions (shared space)."""
        check_target(target)
        vecs = self.base_encoder.embed_images([im.convert("RGB") for im in images])
        return self.search_image_vectors(vecs, target=target, k=k, exclude_items=exclude_items,
                                         ef_search=ef_search, nprobe=nprobe)

    def search_image_vectors(self, vecs: ImageVectors, *, target: Target = "images", k: int = 10,
                             exclude_items: Iterable[int] = (), ef_search: int | None = None,
                             nprobe: int | None = None):
        """:meth:`search_image` with the images' vectors already computed by the base encoder (e.g.
        by a batcher); the tuned bridge, if any, is applied here."""
        check_target(target)
        if target == "captions":  # the shared-space embedding; image features never go through the bridge
            vecs = self.bridged(vecs)
        if target == "images":
            return self.search_vectors(vecs.features, index="features", k=k, exclude_items=exclude_items,
                                       ef_search=ef_search, nprobe=nprobe)
        return self.search_vectors(vecs.embedding, index="captions", k=k, exclude_items=exclude_items,
                                   ef_search=ef_search, nprobe=nprobe)

    @translating_sqlite_errors
    def search_item(self, item_id: int, *, target: Target = "images", k: int = 10, include_self: bool = False,
                    ef_search: int | None = None, nprobe: int | None = None):
        """Search with a stored item's own vectors (no image decoding or model call)."""
        check_target(target)
        self.get_item(item_id)
        if target == "images":
            _, vecs = self._db.item_vectors([item_id], which="feat")
        else:
            _, vecs = self.item_embeddings([item_id])
        exclude = () if include_self else (item_id,)
        index = "features" if target == "images" else "captions"
        return self.search_vectors(vecs, index=index, k=k, exclude_items=exclude, ef_search=ef_search,
                                   nprobe=nprobe)[0]


def _valid_id(item_id) -> bool:
    """Ids are SQLite integers: anything outside int64 (or not an int) names no item."""
    return isinstance(item_id, int) and not isinstance(item_id, bool) and 0 <= item_id < 2**63


def check_fingerprint(path: Path, stored: str, encoder: Encoder) -> None:
    if encoder.fingerprint != stored:
        raise EncoderMismatchError(
            f"collection {path} was built with encoder {stored!r}, but {encoder.fingerprint!r} is loaded; "
            "re-index into a new --collection folder to use this encoder"
        )
