"""A collection: a folder holding the SQLite database and FAISS index caches, plus the encoder
that made its vectors. Search across modalities lives here; ingest lives in :mod:`ravl.ingest`."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__
from .encoders.base import Encoder, ImageVectors, load_encoder
from .errors import CollectionError, CollectionNotFoundError, ConfigError, EncoderMismatchError, ItemNotFoundError
from .fsutil import WriterLock
from .hits import MAX_K, TARGETS, CaptionHit, CaptionSet, ImageHit, Target, check_k, check_target, check_texts
from .store.db import DB_NAME, OCR_SOURCE, Database, ItemRow, NewItem, sqlite_errors, translating_sqlite_errors
from .store.integrity import STALE_TMP_SECONDS, clean_stale_tmp
from .store.vectors import VectorIndex, load_or_build

__all__ = ["MAX_K", "STALE_TMP_SECONDS", "TARGETS", "CaptionHit", "CaptionSet", "Collection", "ImageHit", "NewItem",
           "OCR_SOURCE", "Target", "check_k", "check_target", "check_texts", "open_collection",
           "translating_sqlite_errors"]


class Collection:
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
        self._indexes: dict[str, tuple[int, VectorIndex]] = {}
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
    def encoder(self) -> Encoder:
        """The collection's encoder, loaded on first use and checked against the stored fingerprint."""
        with self._lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.encoder_spec)
            _check_fingerprint(self.path, self.fingerprint, self._encoder)
            return self._encoder

    # --- facts --------------------------------------------------------------------------------
    @translating_sqlite_errors
    def info(self) -> dict:
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        meta = self._db.get_meta()
        return {"path": str(self.path), **self._db.counts(), "encoder": self.encoder_spec,
                "fingerprint": self.fingerprint, "dim": self.dim, "feature_dim": self.feature_dim,
                "created_at": meta.get("created_at"), "ravl_version": meta.get("ravl_version"),
                "generation": self._db.generation(), "size_bytes": size}

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
        return self._db.export_rows(chunk)

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
    def _index(self, name: str) -> VectorIndex:
        generation = self._db.generation()
        with self._lock:
            cached = self._indexes.get(name)
            if cached and cached[0] == generation:
                return cached[1]
            if name == "captions":
                fetch: Callable[[], tuple[np.ndarray, np.ndarray]]
                fetch, dim = self._db.caption_vectors, self.dim
            elif name == "features":
                fetch, dim = (lambda: self._db.item_vectors(which="feat")), self.feature_dim
            else:
                fetch, dim = (lambda: self._db.item_vectors(which="emb")), self.dim
            with self._db.snapshot():  # the binding and a rebuild see the same database state
                binding = {**self._db.index_binding(name), "dim": dim}
                index = load_or_build(self.path / "index", name, binding, dim, fetch)
            built_at = binding["generation"]
            assert isinstance(built_at, int)
            self._indexes[name] = (built_at, index)
            return index

    def index_binding(self, name: str) -> dict:
        """What the ``name`` index cache must be sealed to now (collection id, generation, count, dim)."""
        dim = self.feature_dim if name == "features" else self.dim
        with self._db.snapshot():
            return {**self._db.index_binding(name), "dim": dim}

    @translating_sqlite_errors
    def clean_stale_index_files(self) -> int:
        """Remove index ``*.tmp`` files a killed writer left (older than ``STALE_TMP_SECONDS``)."""
        return clean_stale_tmp(self.path / "index")

    def refresh_indexes(self) -> None:
        """Bring every index cache file up to date (called at the end of ingest)."""
        for name in ("images", "features", "captions"):
            self._index(name)

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
    def search_vectors(self, queries: np.ndarray, *, index: str, k: int,
                       exclude_items: Iterable[int] = ()) -> list[list[ImageHit] | list[CaptionHit]]:
        """Search the ``images``, ``features`` or ``captions`` index with raw query vectors."""
        check_k(k)
        excluded = list(exclude_items)
        if index == "captions":
            excl = [c for ids in self._db.caption_ids_for_items(excluded).values() for c in ids]
            raw = self._index("captions").search(queries, k, excl)
            rows = self._db.caption_rows(sorted({i for hits in raw for i, _ in hits}))
            return [[CaptionHit(cid, rows[cid][0], rows[cid][1], rows[cid][2], score) for cid, score in hits
                     if cid in rows] for hits in raw]
        raw = self._index(index).search(queries, k, excluded)
        items = self._db.items(sorted({i for hits in raw for i, _ in hits}))
        return [[ImageHit(i, items[i].uri, score, items[i].captions) for i, score in hits if i in items]
                for hits in raw]

    def search_text(self, texts: Sequence[str], *, target: Target = "images", k: int = 10):
        """Text -> images (shared space) or text -> captions."""
        check_target(target)
        check_texts(texts)
        queries = self.encoder.encode_texts(list(texts))
        return self.search_vectors(queries, index=target, k=k)

    def search_image(self, images: Sequence[Image.Image], *, target: Target = "images", k: int = 10,
                     exclude_items: Iterable[int] = ()):
        """Image -> similar images (image features) or image -> captions (shared space)."""
        check_target(target)
        vecs = self.encoder.embed_images([im.convert("RGB") for im in images])
        return self.search_image_vectors(vecs, target=target, k=k, exclude_items=exclude_items)

    def search_image_vectors(self, vecs: ImageVectors, *, target: Target = "images", k: int = 10,
                             exclude_items: Iterable[int] = ()):
        """:meth:`search_image` with the images' vectors already computed (e.g. by a batcher)."""
        check_target(target)
        if target == "images":
            return self.search_vectors(vecs.features, index="features", k=k, exclude_items=exclude_items)
        return self.search_vectors(vecs.embedding, index="captions", k=k, exclude_items=exclude_items)

    @translating_sqlite_errors
    def search_item(self, item_id: int, *, target: Target = "images", k: int = 10, include_self: bool = False):
        """Search with a stored item's own vectors (no image decoding or model call)."""
        check_target(target)
        self.get_item(item_id)
        which = "feat" if target == "images" else "emb"
        _, vecs = self._db.item_vectors([item_id], which=which)
        exclude = () if include_self else (item_id,)
        index = "features" if target == "images" else "captions"
        return self.search_vectors(vecs, index=index, k=k, exclude_items=exclude)[0]


def _valid_id(item_id) -> bool:
    """Ids are SQLite integers: anything outside int64 (or not an int) names no item."""
    return isinstance(item_id, int) and not isinstance(item_id, bool) and 0 <= item_id < 2**63


def _same_vectors(a: str, b: str) -> bool:
    """True when specs ``a`` and ``b`` differ only in options their family declares runtime-only."""
    from . import registry
    from .errors import RavlError
    from .specs import fingerprint_spec, parse_spec

    try:
        pa, pb = parse_spec(a), parse_spec(b)
        if pa.family != pb.family:
            return False
        options = registry.declaration(registry.factory_for("encoders", pa)).options
    except (RavlError, ImportError, AttributeError):
        return False
    return bool(options) and fingerprint_spec(pa, options) == fingerprint_spec(pb, options)


def _check_fingerprint(path: Path, stored: str, encoder: Encoder) -> None:
    if encoder.fingerprint != stored:
        raise EncoderMismatchError(
            f"collection {path} was built with encoder {stored!r}, but {encoder.fingerprint!r} is loaded; "
            "re-index into a new --collection folder to use this encoder"
        )


LOCK_NAME = "ravl.lock"
log = logging.getLogger("ravl")


def _initial_meta(enc: Encoder) -> dict[str, object]:
    return {"encoder_spec": enc.spec, "encoder_fingerprint": enc.fingerprint, "dim": enc.dim,
            "feature_dim": enc.feature_dim, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "ravl_version": __version__, "generation": 0}


def open_collection(path: str | Path, *, encoder: str | Encoder | None = None, create: bool = False,
                    readonly: bool = False) -> Collection:
    """Open the collection in folder ``path``.

    ``encoder`` (a spec or an :class:`Encoder`) is used to create a new collection; for an existing
    one it must match what the collection was built with. ``create=True`` makes the folder and
    database when missing (schema and metadata in one transaction), finishes a collection whose
    creation was interrupted, and holds the collection's writer lock until :meth:`Collection.close`:
    a second process opening it with ``create=True`` waits (and logs that it waits).
    """
    path = Path(path).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--collection {path} is a file; give a folder path")
    lock = None
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = WriterLock(path / LOCK_NAME, on_wait=lambda: log.warning(
                "ravl: another process is writing to %s; waiting for it to finish (Ctrl-C to stop)", path))
        except OSError as exc:
            raise CollectionError(f"cannot write to collection folder {path} ({exc.strerror or exc}); "
                                  "choose a folder you can write to") from None
    try:
        coll = _open(path, encoder, create, readonly)
    except BaseException:
        if lock:
            lock.release()
        raise
    coll._writer_lock = lock
    return coll


def _open(path: Path, encoder: str | Encoder | None, create: bool, readonly: bool) -> Collection:
    db_path = path / DB_NAME
    enc_obj = encoder if isinstance(encoder, Encoder) else None
    initial = None
    if not db_path.exists():
        if not create:
            raise CollectionNotFoundError(
                f"no collection at {path}; build one with 'ravl index SOURCE --collection {path}'")
        enc_obj = enc_obj or load_encoder(str(encoder or "default"))
        initial = _initial_meta(enc_obj)
    db = Database(db_path, readonly=readonly and not create, initial_meta=initial)
    try:
        with sqlite_errors(db_path):
            meta = db.get_meta()
        if "encoder_spec" not in meta:  # creation interrupted (or made by an older ravl): finish it
            if not create:
                raise CollectionNotFoundError(
                    f"{path} holds an unfinished collection (its creation was interrupted); run 'ravl index "
                    f"SOURCE --collection {path}' to finish creating it")
            enc_obj = enc_obj or load_encoder(str(encoder or "default"))
            meta = db.finish_meta(_initial_meta(enc_obj))
        if enc_obj is None and encoder is not None and str(encoder).strip() != meta["encoder_spec"]:
            if _same_vectors(str(encoder), meta["encoder_spec"]):  # differs only in runtime options (threads, ...)
                enc_obj = load_encoder(str(encoder))
        if enc_obj is None and encoder is not None and str(encoder).strip() != meta["encoder_spec"]:
            raise EncoderMismatchError(
                f"collection {path} was built with encoder {meta['encoder_spec']!r}, not {encoder!r}; omit "
                "--encoder to use the collection's own, or index into a new --collection folder")
        coll = Collection(path, db, encoder=enc_obj)
        if enc_obj is not None:
            _check_fingerprint(path, coll.fingerprint, enc_obj)
        return coll
    except BaseException:
        db.close()
        raise
