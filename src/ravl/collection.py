"""A collection: a folder holding the SQLite database and FAISS index caches, plus the encoder
that made its vectors. Search across modalities lives here; ingest lives in :mod:`ravl.ingest`."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from . import __version__
from .encoders.base import Encoder, ImageVectors, load_encoder
from .errors import CollectionError, CollectionNotFoundError, ConfigError, EncoderMismatchError, ItemNotFoundError
from .fsutil import WriterLock
from .store.db import DB_NAME, Database, ItemRow, sqlite_errors, translating_sqlite_errors
from .store.vectors import VectorIndex, load_or_build

Target = Literal["images", "captions"]
TARGETS = ("images", "captions")
MAX_K = 1000


@dataclass(frozen=True)
class ImageHit:
    id: int
    uri: str
    score: float
    captions: tuple[str, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["captions"] = list(self.captions)
        return d


@dataclass(frozen=True)
class CaptionHit:
    id: int
    caption: str
    image_id: int
    uri: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def check_k(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    return k


def check_texts(texts: Sequence[str]) -> None:
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ConfigError("a text query must be a non-empty string")
    for t in texts:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError("a text query holds bytes that are not UTF-8; pass UTF-8 text") from None


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


class Collection:
    """Open with :func:`open_collection`."""

    def __init__(self, path: Path, db: Database, *, encoder: Encoder | None = None):
        self.path = path
        self.db = db
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
        self.db.close()
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
        meta = self.db.get_meta()
        return {"path": str(self.path), **self.db.counts(), "encoder": self.encoder_spec,
                "fingerprint": self.fingerprint, "dim": self.dim, "feature_dim": self.feature_dim,
                "created_at": meta.get("created_at"), "ravl_version": meta.get("ravl_version"),
                "generation": self.db.generation(), "size_bytes": size}

    @translating_sqlite_errors
    def get_item(self, item_id: int) -> ItemRow:
        row = self.db.items([item_id]).get(item_id) if _valid_id(item_id) else None
        if row is None:
            raise ItemNotFoundError(f"no item with id {item_id} in {self.path}; list ids with 'ravl search'")
        return row

    @translating_sqlite_errors
    def delete(self, item_ids: Sequence[int]) -> int:
        return self.db.delete_items([i for i in item_ids if _valid_id(i)])

    # --- indexes ------------------------------------------------------------------------------
    def _index(self, name: str) -> VectorIndex:
        generation = self.db.generation()
        with self._lock:
            cached = self._indexes.get(name)
            if cached and cached[0] == generation:
                return cached[1]
            if name == "captions":
                fetch: Callable[[], tuple[np.ndarray, np.ndarray]]
                fetch, dim = self.db.caption_vectors, self.dim
            elif name == "features":
                fetch, dim = (lambda: self.db.item_vectors(which="feat")), self.feature_dim
            else:
                fetch, dim = (lambda: self.db.item_vectors(which="emb")), self.dim
            with self.db.snapshot():  # the binding and a rebuild see the same database state
                binding = {**self.db.index_binding(name), "dim": dim}
                index = load_or_build(self.path / "index", name, binding, dim, fetch)
            built_at = binding["generation"]
            assert isinstance(built_at, int)
            self._indexes[name] = (built_at, index)
            return index

    @translating_sqlite_errors
    def refresh_indexes(self) -> None:
        """Bring every index cache file up to date (called at the end of ingest)."""
        for name in ("images", "features", "captions"):
            self._index(name)

    # --- search -------------------------------------------------------------------------------
    @translating_sqlite_errors
    def search_vectors(self, queries: np.ndarray, *, index: str, k: int,
                       exclude_items: Iterable[int] = ()) -> list[list[ImageHit] | list[CaptionHit]]:
        """Search the ``images``, ``features`` or ``captions`` index with raw query vectors."""
        check_k(k)
        excluded = list(exclude_items)
        if index == "captions":
            excl = [c for ids in self.db.caption_ids_for_items(excluded).values() for c in ids]
            raw = self._index("captions").search(queries, k, excl)
            rows = self.db.caption_rows(sorted({i for hits in raw for i, _ in hits}))
            return [[CaptionHit(cid, rows[cid][0], rows[cid][1], rows[cid][2], score) for cid, score in hits
                     if cid in rows] for hits in raw]
        raw = self._index(index).search(queries, k, excluded)
        items = self.db.items(sorted({i for hits in raw for i, _ in hits}))
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
        _, vecs = self.db.item_vectors([item_id], which=which)
        exclude = () if include_self else (item_id,)
        index = "features" if target == "images" else "captions"
        return self.search_vectors(vecs, index=index, k=k, exclude_items=exclude)[0]


def _valid_id(item_id) -> bool:
    """Ids are SQLite integers: anything outside int64 (or not an int) names no item."""
    return isinstance(item_id, int) and not isinstance(item_id, bool) and 0 <= item_id < 2**63


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
            with db.transaction() as c:
                if "encoder_spec" not in dict(c.execute("SELECT key, value FROM meta").fetchall()):
                    db.set_meta(_initial_meta(enc_obj), c)
                meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
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
